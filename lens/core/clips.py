"""Clips as the service sees them: who they are (name, SHA-256, what the container says) and the frames each
model samples from them — its windows (:func:`read_windows`) — decoded once per sampling and file version
(:class:`ClipCache`, one per service)."""

from __future__ import annotations

import os
from pathlib import Path

import mvt

from .cache import ResultCache
from .request import ClipInfo
from .storage import file_sha256, identity
from .windows import count_for


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


def read_windows(
    path: str | os.PathLike, spec: mvt.ModelSpec, start_s: float | None, windows: int | None = None
) -> list[mvt.Clip]:
    """The windows a model sees of a clip: one from ``start_s``, else evenly spaced ones over the clip
    (``windows``: :func:`lens.core.windows.count_for`), each as ``mvt.read_clip`` reads one."""
    if start_s is not None or not spec.frame_stride:
        return [read_clip(path, spec, start_s)]
    frames, stride, size = _read_as(spec)
    count = count_for(spec, windows)
    return mvt.read_windows(path, num_frames=frames, stride=stride, size=size, count=count)


class ClipCache:
    """The last ``max_items`` decodes, by file version, sampling and start: models that sample a clip the same
    way decode it once, and a re-run (another class, another method) decodes nothing."""

    def __init__(self, max_items: int = 8) -> None:
        self._items: ResultCache[tuple, mvt.Clip] = ResultCache(max_items)

    def read(self, path: str | os.PathLike, spec: mvt.ModelSpec, start_s: float | None) -> mvt.Clip:
        """One window (:func:`read_clip`)."""
        key = (identity(path), _read_as(spec), start_s)
        clip = self._items.get(key)
        if clip is None:
            clip = read_clip(path, spec, start_s)
            self._items.put(key, clip)
        return clip

    def _windows_key(self, path, spec: mvt.ModelSpec, start_s: float | None, windows: int | None) -> tuple:
        return (identity(path), _read_as(spec), start_s, count_for(spec, windows) if start_s is None else 1)

    def windows(
        self, path: str | os.PathLike, spec: mvt.ModelSpec, start_s: float | None, windows: int | None
    ) -> list[mvt.Clip]:
        """A model's windows (:func:`read_windows`)."""
        key = self._windows_key(path, spec, start_s, windows)
        clips = self._items.get(key)
        if clips is None:
            clips = read_windows(path, spec, start_s, windows)
            self._items.put(key, clips)
        return clips

    def keep(
        self, path: str | os.PathLike, spec: mvt.ModelSpec, start_s: float | None, windows: int | None, clips
    ) -> None:
        """Keep ``clips``, decoded elsewhere (ZeroGPU's worker gets them from the main process), as
        :meth:`windows` of these arguments."""
        self._items.put(self._windows_key(path, spec, start_s, windows), list(clips))

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def bytes(self) -> int:
        """The decoded frames held, in bytes."""
        return self._items.bytes()
