"""The synced timeline: every model's overlay frames at one clip time, and how much each frame weighs.

Each panel's overlay frames are tiled into one JPEG (:func:`write_sprite`), so moving the shared slider only
moves a background in the browser — no request, no decode, the same cost for every model. The clip time of
each frame (each model samples the clip its own way) travels with it, so every panel shows the frame it saw
nearest to the slider's time. :func:`frame_weights` is the per-frame importance curve. The markup is plain
HTML with ``data-`` attributes (:func:`panel_html`, :func:`timeline_html`); ``assets/ui/timeline.js`` moves
it. Nothing here imports gradio.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import viz

from ..core.records import ModelResult, Volume
from .display import Display
from .overlays import frame_volume, render_overlay, write_jpeg

COLORS = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#D55E00", "#0072B2")
"""One colour per panel (Okabe & Ito's colour-blind-safe set), in the order of the request."""
TRUTH_COLOR = "#F0E442"
SPRITE_COLUMNS = 8

Url = Callable[[Path], str]
"""Turns a file the service wrote into the URL the browser loads it from."""


def sprite_grid(count: int, columns: int = SPRITE_COLUMNS) -> tuple[int, int]:
    """(columns, rows) of a sprite of ``count`` frames."""
    cols = max(1, min(count, columns))
    return cols, max(1, math.ceil(count / cols))


def tile(frames: np.ndarray, columns: int = SPRITE_COLUMNS) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` frames → one ``(rows·H, cols·W, 3)`` image, row by row (empty cells black)."""
    t, h, w, c = frames.shape
    cols, rows = sprite_grid(t, columns)
    out = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i, f in enumerate(frames):
        r, k = divmod(i, cols)
        out[r * h : (r + 1) * h, k * w : (k + 1) * w] = f
    return out


def write_sprite(result: ModelResult, volume: Volume, path: Path, display: Display) -> tuple[int, int]:
    """The overlay frames of ``volume`` tiled into the JPEG ``path`` (kept if it exists); (columns, rows)."""
    grid = sprite_grid(int(result.frames.shape[0]))
    if not path.exists():
        write_jpeg(tile(render_overlay(result, volume, display)), path)
    return grid


def frame_weights(result: ModelResult, volume: Volume) -> np.ndarray:
    """How much of the explanation falls on each frame the model saw: float64 ``(T,)`` summing to 1.

    The explanation is painted onto the frames and scaled to [0, 1] over the clip, exactly as the overlay
    colours it; a frame's weight is its share of the total. All frames weigh the same (``1/T``) when the
    explanation is constant."""
    heat = viz.normalize(frame_volume(result, volume), "clip")  # (T, S, S) in [0, 1]
    per_frame = heat.reshape(heat.shape[0], -1).mean(axis=1).astype(np.float64)  # (T,)
    total = per_frame.sum()
    if not np.isfinite(total) or total <= 0:
        return np.full(heat.shape[0], 1.0 / heat.shape[0])
    return per_frame / total


# -- markup ----------------------------------------------------------------------------------------------------


def _times_attr(times: Sequence[float]) -> str:
    return ",".join(f"{float(t):.4f}" for t in times)


def _top5(top5: Sequence[tuple[str, float]], target_label: str | None) -> str:
    rows = []
    for label, p in top5:
        mark = ' class="mvt-target" title="the class being explained"' if label == target_label else ""
        rows.append(
            f'<li{mark}><span class="mvt-lab">{html.escape(label)}</span>'
            f'<span class="mvt-bar"><i style="width:{100 * float(p):.1f}%"></i></span>'
            f'<span class="mvt-p">{100 * float(p):.0f}%</span></li>'
        )
    return f'<ol class="mvt-top5" aria-label="top-5 predictions">{"".join(rows)}</ol>'


def _captions(lines: Sequence[str]) -> str:
    if not lines:
        return ""
    return '<ul class="mvt-captions">' + "".join(f"<li>{html.escape(c)}</li>" for c in lines) + "</ul>"


def placeholder_html(name: str, text: str, color: str) -> str:
    """A panel whose model has not finished yet."""
    return (
        f'<div class="mvt-view mvt-pending" data-testid="model-view" data-model="{html.escape(name)}">'
        f'<div class="mvt-frame mvt-wait" style="--accent:{color}"><span>{html.escape(text)}</span></div></div>'
    )


@dataclass(frozen=True)
class Sprite:
    """What one panel of the timeline shows: a model's (or the ground truth's) frames tiled into one image,
    with the clip time of each."""

    name: str
    image: Path
    grid: tuple[int, int]
    times: tuple[float, ...]
    color: str
    label: str
    """What the picture is (``attention · stage 3``), for screen readers and the caption."""
    mark: str = ""
    """Markup drawn over the picture (an asked point and its token: :func:`lens.render.query.mark_html`)."""


def frames_html(sprite: Sprite, url: Url, extra: str = "") -> str:
    """The picture part of a panel: ``sprite``'s frames, one at a time, driven by the timeline."""
    cols, rows = sprite.grid
    return (
        f'<div class="mvt-view" data-testid="model-view" data-model="{html.escape(sprite.name)}" '
        f'data-times="{_times_attr(sprite.times)}" data-cols="{cols}" data-rows="{rows}">'
        f'<div class="mvt-frame" role="img" aria-label="{html.escape(sprite.name)}: {html.escape(sprite.label)}" '
        f"style=\"--accent:{sprite.color};background-image:url('{html.escape(url(sprite.image))}');"
        f'background-size:{cols * 100}% {rows * 100}%">{sprite.mark}</div>'
        f'<div class="mvt-when"><span class="mvt-swatch" style="background:{sprite.color}"></span>'
        f'<span class="mvt-when-text">{html.escape(sprite.label)}</span></div>{extra}</div>'
    )


def panel_html(
    name: str,
    *,
    frames: Sprite | None,
    error: str | None,
    top5: Sequence[tuple[str, float]],
    target_label: str | None,
    captions: Sequence[str],
    url: Url,
    color: str,
) -> str:
    """A model's panel: its frames on the timeline (or its error, in place), captions, and its top-5."""
    body = _captions(captions) + (_top5(top5, target_label) if top5 else "")
    if frames is not None and error is None:
        return frames_html(frames, url, body)
    return (
        f'<div class="mvt-view mvt-failed" data-testid="model-view" data-model="{html.escape(name)}" '
        f'data-error="1"><div class="mvt-frame mvt-error" role="alert" style="--accent:{color}">'
        f"<span>{html.escape(error or 'no picture')}</span></div>{body}</div>"
    )


@dataclass(frozen=True)
class Track:
    """One model on the timeline: the clip times of the frames it saw and each frame's weight."""

    name: str
    color: str
    times: tuple[float, ...]
    weights: tuple[float, ...]


def span(tracks: Sequence[Track], fps: float) -> tuple[float, float]:
    """(first, last) clip time the slider covers: every frame any model saw (plus one clip frame)."""
    times = [t for tr in tracks for t in tr.times]
    if not times:
        return 0.0, 0.0
    step = 1.0 / fps if fps and fps > 0 else 0.04
    return float(min(times)), float(max(times)) + step


def timeline_html(
    tracks: Sequence[Track], *, fps: float, duration: float, clip: str = "", height: int = 96
) -> str:
    """The shared slider, play/pause, and the importance curves (a line per model, 1 = an even share) with a
    row of ticks per model at the frames it saw; empty when there is nothing to show."""
    if not tracks:
        return ""
    lo, hi = span(tracks, fps)
    width = 1000.0
    length = max(hi - lo, 1e-6)
    tick_h = 6
    plot_h = height - tick_h * len(tracks) - 4
    peak = max([1.5] + [w * len(tr.weights) for tr in tracks for w in tr.weights])

    def x(t: float) -> float:
        return (t - lo) / length * width

    def y(share: float, n: int) -> float:
        return plot_h - (share * n) / peak * (plot_h - 4)

    parts = [f'<line class="mvt-even" x1="0" x2="{width}" y1="{y(1, 1):.1f}" y2="{y(1, 1):.1f}"/>']
    for k, tr in enumerate(tracks):
        n = len(tr.weights)
        pts = " ".join(f"{x(t):.1f},{y(w, n):.1f}" for t, w in zip(tr.times, tr.weights))
        parts.append(f'<polyline points="{pts}" stroke="{tr.color}"/>')
        top = plot_h + 4 + k * tick_h
        ticks = "".join(f"M{x(t):.1f} {top}v{tick_h - 1}" for t in tr.times)
        parts.append(f'<path class="mvt-ticks" d="{ticks}" stroke="{tr.color}"/>')
    parts.append(f'<line class="mvt-cursor" x1="0" x2="0" y1="0" y2="{height}"/>')
    legend = "".join(
        f'<span><i style="background:{tr.color}"></i>{html.escape(tr.name)} · {len(tr.times)} frames, '
        f"{tr.times[0]:.2f}–{tr.times[-1]:.2f} s</span>"
        for tr in tracks
        if tr.times
    )
    step = 1.0 / fps if fps and fps > 0 else 0.04
    return (
        f'<div class="mvt-timeline" data-testid="timeline" data-start="{lo:.4f}" data-end="{hi:.4f}">'
        '<div class="mvt-controls">'
        '<button class="mvt-play" type="button" aria-label="Play" title="Play / pause (all panels)">▶</button>'
        f'<input class="mvt-slider" type="range" min="{lo:.4f}" max="{hi:.4f}" step="{step:.4f}" '
        f'value="{lo:.4f}" aria-label="Clip time in seconds, shared by every panel">'
        f'<output class="mvt-time">{lo:.2f} s</output></div>'
        f'<svg class="mvt-curves" viewBox="0 0 {width:.0f} {height}" preserveAspectRatio="none" '
        f'role="img" aria-label="How much each model\'s explanation weighs each frame">{"".join(parts)}</svg>'
        f'<div class="mvt-legend">{legend}<span class="mvt-note">line: share of the explanation on each '
        f"frame (dashed = even share); ticks: the frames each model saw; clip {html.escape(clip)} "
        f"{duration:.2f} s</span></div></div>"
    )
