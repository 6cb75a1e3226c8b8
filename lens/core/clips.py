"""Clips as the service sees them: who they are (name, SHA-256, what the container says) and the frames each
model samples from them, decoded once per sampling and file version (:class:`ClipCache`, one per service)."""

from __future__ import annotations

import os
from pathlib import Path

import mvt

from .cache import ResultCache
from .request import ClipInfo
from .storage import file_sha256, identity


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


def _read_as(spec: mvt.ModelSpec) -> tuple:
    """(frames, frame stride, resize size): what ``mvt.read_clip`` needs of a model's sampling."""
    return spec.num_frames, spec.frame_stride, spec.resize_size


def read_clip(path: str | os.PathLike, spec: mvt.ModelSpec, start_s: float | None) -> mvt.Clip:
    """``mvt.read_clip`` with ``spec``'s sampling (no cache: :class:`ClipCache` keeps recent ones)."""
    frames, stride, size = _read_as(spec)
    return mvt.read_clip(path, num_frames=frames, stride=stride, size=size, start_s=start_s)


class ClipCache:
    """The last ``max_items`` decodes, by file version, sampling and start: models that sample a clip the same
    way decode it once, and a re-run (another class, another method) decodes nothing."""

    def __init__(self, max_items: int = 8) -> None:
        self._items: ResultCache[tuple, mvt.Clip] = ResultCache(max_items)

    def read(self, path: str | os.PathLike, spec: mvt.ModelSpec, start_s: float | None) -> mvt.Clip:
        key = (identity(path), _read_as(spec), start_s)
        clip = self._items.get(key)
        if clip is None:
            clip = read_clip(path, spec, start_s)
            self._items.put(key, clip)
        return clip

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
