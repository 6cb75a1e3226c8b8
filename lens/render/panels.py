"""One model's panel for one display: the files it shows (overlay mp4, frames sprite, all-stages strip) and the
numbers beside them (clip times, per-frame weights, captions) — or, in place of the picture, why not."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import viz

from ..core.records import ModelResult, VolumeKey
from ..core.request import ResultKey
from .captions import captions
from .display import Display
from .overlays import (
    NORM,
    frame_volume,
    overlay_fps,
    render_overlay,
    resolve,
    sink_keys,
    stage_strip,
    strip_keys,
    write_jpeg,
    write_png,
    write_video_frames,
)
from .timeline import Mark, frame_weights, sprite_grid, tile


@dataclass(frozen=True)
class Panel:
    """What one model's panel shows for a display: its result, the volume drawn and the files — or, in place
    of the picture, why it cannot be drawn (``error``; ``result`` is still there when the model ran)."""

    name: str
    result: ModelResult | None
    error: str | None = None
    key: VolumeKey | None = None
    overlay: Path | None = None
    """The overlay video (mp4) of the display: what a person downloads."""
    strip: Path | None = None
    """Every stage's attention (and the rollout) over eight frames, one row each (PNG)."""
    frames: Path | None = None
    """The overlay frames of every window tiled into one JPEG (``grid`` columns × rows, in order): what the
    timeline shows."""
    grid: tuple[int, int] = (1, 1)
    times: tuple[float, ...] = ()
    """The clip time (seconds) of each frame the model saw."""
    weights: tuple[float, ...] = ()
    """How much of the explanation falls on each frame (shares summing to 1): the importance curve."""
    captions: tuple[str, ...] = ()
    """Sentences about this display, shown under the picture (see :data:`lens.render.captions.CAPTIONERS`)."""
    display: Display | None = None
    pending: bool = False
    """The model has not finished yet (see :class:`~lens.core.records.ModelError`)."""
    scale: tuple[float, float] | None = None
    """The values drawn darkest and brightest (:data:`lens.render.overlays.NORM`): the colour bar's ends."""
    sinks: tuple[int, ...] = ()
    """Sink keys of the map shown (hidden unless the display shows them)."""
    windows: tuple[Mark, ...] = ()
    """Each window the model saw (span, its own top-1 class), in time order."""
    window_of: tuple[int, ...] = ()
    """The window of each frame of :attr:`times`."""


def _marks(entry: ModelResult) -> tuple[Mark, ...]:
    """Each window the model saw: its span and its own top-1 class."""
    cov = entry.coverage
    out = []
    for i, w in enumerate(entry.seen):
        start, end = cov.spans[i] if cov is not None else (float(w.times[0]), float(w.times[-1]))
        label, prob = w.top5[0] if w.top5 else ("", 0.0)
        out.append(Mark(i, start, end, label, float(prob)))
    return tuple(out)


def draw(
    entry: ModelResult, key: ResultKey | None, display: Display, out: Path, ready_only: bool = False
) -> Panel:
    """Write ``entry``'s files for ``display`` into ``out`` (named by what they show, so each is written
    once) and return its panel; a :class:`~lens.core.request.LensError` when the display cannot be drawn.
    Every window the model saw is drawn, one after the other (the overlay video and the frames sprite);
    the all-stages strip and the captions are of its primary window."""
    shown = [resolve(w, display) for w in entry.seen]  # (key, volume) per window
    vkey, volume = shown[entry.primary]
    tag = hashlib.sha1(repr((key, display)).encode()).hexdigest()[:12]
    safe = entry.name.replace(".", "_")
    video = out / f"overlay_{safe}_{vkey.slug}_{tag}.mp4"
    frames = out / f"frames_{safe}_{vkey.slug}_{tag}.jpg"
    if not (video.exists() and frames.exists()):
        pictures = np.concatenate([render_overlay(w, v, display) for w, (_, v) in zip(entry.seen, shown)])
        if not video.exists():
            write_video_frames(pictures, video, overlay_fps(entry))
        if not frames.exists():
            write_jpeg(tile(pictures), frames)
    count = sum(int(w.frames.shape[0]) for w in entry.seen)
    rows = tuple(strip_keys(entry, ready_only=ready_only))
    stag = hashlib.sha1(repr((key, display.colormap, display.opacity, rows)).encode()).hexdigest()[:12]
    strip = out / f"strip_{safe}_{stag}.png"
    if not strip.exists():
        write_png(stage_strip(entry, display, ready_only=ready_only), strip)
    k = len(entry.seen)
    weights = np.concatenate([frame_weights(w, v) / k for w, (_, v) in zip(entry.seen, shown)])
    return Panel(
        entry.name,
        entry,
        key=vkey,
        overlay=video,
        strip=strip,
        frames=frames,
        grid=sprite_grid(count),
        times=tuple(float(t) for w in entry.seen for t in w.times),
        weights=tuple(float(w) for w in weights),
        captions=captions(entry, display, vkey, volume),
        display=display,
        scale=viz.value_range(frame_volume(entry, volume), NORM),
        sinks=sink_keys(entry, vkey) if vkey.method == "attention" else (),
        windows=_marks(entry),
        window_of=tuple(i for i, w in enumerate(entry.seen) for _ in range(int(w.frames.shape[0]))),
    )
