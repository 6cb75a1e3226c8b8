"""Clips as the service sees them: who they are (name, SHA-256, what the container says) and the frames each
model samples from them, decoded once per sampling and file version."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import mvt

from .records import ClipInfo


def _identity(path: str | os.PathLike) -> tuple[str, int, int]:
    """(absolute path, size, mtime) — a file edited in place gets a new identity."""
    p = os.path.abspath(path)
    st = os.stat(p)
    return p, st.st_size, st.st_mtime_ns


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, computed once per file version."""
    return _sha256(*_identity(path))


@lru_cache(maxsize=64)
def _sha256(path: str, _size: int, _mtime: int, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def clip_info(path: str | os.PathLike) -> ClipInfo:
    """Probe the clip (a :class:`mvt.VideoError` with an actionable sentence if it is not a usable video)
    and hash it."""
    info = mvt.probe(path)
    return ClipInfo(
        name=Path(path).name,
        sha256=file_sha256(path),
        duration_s=float(info.duration_s or 0.0),
        fps=float(info.fps or 0.0),
        width=int(info.width),
        height=int(info.height),
        path=os.fspath(path),
    )


def read_clip(path: str | os.PathLike, spec: mvt.ModelSpec, start_s: float | None) -> mvt.Clip:
    """``mvt.read_clip`` with ``spec``'s sampling, shared by models that sample a clip the same way."""
    return _read_clip(*_identity(path), spec.num_frames, spec.frame_stride, spec.resize_size, start_s)


@lru_cache(maxsize=8)
def _read_clip(path, _size, _mtime, num_frames, stride, size, start_s) -> mvt.Clip:
    return mvt.read_clip(path, num_frames=num_frames, stride=stride, size=size, start_s=start_s)
