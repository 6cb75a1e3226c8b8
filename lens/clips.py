"""Clips as the service sees them: who they are (name, SHA-256, what the container says) and the frames each
model samples from them, decoded once per sampling and file version."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

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
    )


def read_clip(path: str | os.PathLike, spec: mvt.ModelSpec, start_s: float | None) -> mvt.Clip:
    """``mvt.read_clip`` with ``spec``'s sampling, shared by models that sample a clip the same way."""
    return _read_clip(*_identity(path), spec.num_frames, spec.frame_stride, spec.resize_size, start_s)


@lru_cache(maxsize=8)
def _read_clip(path, _size, _mtime, num_frames, stride, size, start_s) -> mvt.Clip:
    return mvt.read_clip(path, num_frames=num_frames, stride=stride, size=size, start_s=start_s)


def center_crop_uint8(frames: np.ndarray, spec: mvt.ModelSpec) -> np.ndarray:
    """The uint8 frames the model sees: short side to ``resize_size`` then the centre crop (T, S, S, 3).

    (To be replaced by ``mvt.preprocess.resize_and_crop``, which has the same semantics.)
    """
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    h, w = x.shape[-2:]
    if min(h, w) != spec.resize_size:
        scale = spec.resize_size / min(h, w)
        size = (max(spec.crop_size, round(h * scale)), max(spec.crop_size, round(w * scale)))
        x = torch.nn.functional.interpolate(
            x, size=size, mode="bilinear", align_corners=False, antialias=True
        )
    h, w = x.shape[-2:]
    top, left = (h - spec.crop_size) // 2, (w - spec.crop_size) // 2
    x = x[:, :, top : top + spec.crop_size, left : left + spec.crop_size]  # (T, 3, S, S)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
