"""The synced timeline: every model's overlay frames at one clip time, and how much each frame weighs.

Each panel's overlay frames are tiled into one JPEG (:func:`write_sprite`), so moving the shared slider only
moves a background in the browser — no request, no decode, the same cost for every model. The clip time of
each frame (each model samples the clip its own way, in one or more windows) travels with it, so every panel
shows the frame it saw nearest to the slider's time — the explanation of the window under the slider; each
model's windows and their top-1 classes are bars under the curves (:func:`windows_html`).
:func:`frame_weights` is the per-frame importance curve. The markup is plain
HTML with ``data-`` attributes (:func:`panel_html`, :func:`timeline_html`); ``assets/ui/timeline.js`` moves
it. Nothing here imports gradio.
"""

from __future__ import annotations

import html
import math
import re
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


@dataclass(frozen=True)
class Mark:
    """One window a model saw, on the timeline: its index, span (clip seconds) and its own top-1 class."""

    index: int
    start: float
    end: float
    label: str
    prob: float


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

_MARKDOWN_SPECIALS = re.compile(r"[\\`*\[\]#|~$]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
"""What makes Markdown (or Gradio's LaTeX) out of text: emphasis, code, links, headings, tables, strike-through,
math; ``_`` only at a word's edge (``mvit_v2_s`` and ``MVT_OFFLINE`` are never emphasis)."""


def markdown_text(text: str) -> str:
    """``text`` as literal Markdown: HTML escaped (Gradio's Markdown would render a tag, sanitised) and
    Markdown punctuation backslash-escaped."""
    return _MARKDOWN_SPECIALS.sub(lambda m: "\\" + m.group(0), html.escape(str(text), quote=False))


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
    """The first caption on one line (cut with an ellipsis, whole in its tooltip), the others behind a
    disclosure."""
    if not lines:
        return ""
    first, rest = lines[0], lines[1:]
    out = (
        f'<div class="mvt-captions"><p class="mvt-cap" title="{html.escape(first)}">{html.escape(first)}</p>'
    )
    if rest:
        items = "".join(f"<li>{html.escape(c)}</li>" for c in rest)
        out += f'<details class="mvt-more"><summary>details ({len(rest)})</summary><ul>{items}</ul></details>'
    return out + "</div>"


@dataclass(frozen=True)
class Colorbar:
    """A heat map's colour bar: the gradient's colours (``#rrggbbaa``, as the overlay blends them), the values
    at its ends, what the values are and how they were scaled."""

    stops: tuple[str, ...]
    lo: float
    hi: float
    what: str
    scaling: str


def colorbar_html(bar: Colorbar | None) -> str:
    """One line under a heat map: ``lo [gradient] hi · what, scaling``."""
    if bar is None:
        return ""
    grad = ", ".join(bar.stops)
    about = f"{bar.what}; {bar.scaling}"
    return (
        f'<div class="mvt-colorbar" title="{html.escape(about)}" data-lo="{bar.lo:.6g}" data-hi="{bar.hi:.6g}">'
        f'<span class="mvt-cb-v">{bar.lo:.2g}</span>'
        f'<i class="mvt-cb-bar" style="background:linear-gradient(to right, {grad})"></i>'
        f'<span class="mvt-cb-v">{bar.hi:.2g}</span>'
        f'<span class="mvt-cb-what">{html.escape(about)}</span></div>'
    )


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
    window_of: tuple[int, ...] = ()
    """The window of each frame (empty: one window)."""
    windows: tuple[Mark, ...] = ()
    method: str = ""
    """The explanation method drawn (registry name; empty for the ground truth)."""
    mark: str = ""
    """Markup drawn over the picture (an asked point and its token: :func:`lens.render.query.mark_html`)."""


def _windows_attr(sprite: Sprite) -> str:
    if len(sprite.windows) < 2:
        return ""
    spans = ";".join(f"{m.start:.4f},{m.end:.4f}" for m in sprite.windows)
    return f' data-window-of="{",".join(map(str, sprite.window_of))}" data-spans="{spans}"'


def frames_html(sprite: Sprite, url: Url, extra: str = "") -> str:
    """The picture part of a panel: ``sprite``'s frames, one at a time, driven by the timeline."""
    cols, rows = sprite.grid
    method = f' data-method="{html.escape(sprite.method)}"' if sprite.method else ""
    return (
        f'<div class="mvt-view" data-testid="model-view" data-model="{html.escape(sprite.name)}"{method} '
        f'data-times="{_times_attr(sprite.times)}" data-cols="{cols}" data-rows="{rows}"{_windows_attr(sprite)}>'
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
    colorbar: Colorbar | None = None,
    prediction: str = "",
) -> str:
    """A model's panel: its frames on the timeline (or its error, in place), its colour bar, captions, and its
    top-5 (headed by ``prediction``: how it was made, e.g. ``average of 4 windows over 0.00–10.00 s``)."""
    head = f'<p class="mvt-pred">Prediction: {html.escape(prediction)}</p>' if prediction and top5 else ""
    body = colorbar_html(colorbar) + _captions(captions) + head + (_top5(top5, target_label) if top5 else "")
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
    windows: tuple[Mark, ...] = ()


def span(tracks: Sequence[Track], fps: float) -> tuple[float, float]:
    """(first, last) clip time the slider covers: every frame any model saw (plus one clip frame)."""
    times = [t for tr in tracks for t in tr.times]
    if not times:
        return 0.0, 0.0
    step = 1.0 / fps if fps and fps > 0 else 0.04
    return float(min(times)), float(max(times)) + step


def timeline_html(
    tracks: Sequence[Track], *, fps: float, duration: float, clip: str = "", height: int = 40
) -> str:
    """The shared slider, play/pause, and the importance curves (a line per model, 1 = an even share) with a
    row of ticks per model at the frames it saw; empty when there is nothing to show. Compact (one row of
    controls, the curves ``height`` px of the SVG's coordinates, a one-line legend) and foldable: the curves
    and legend hide behind the ``curves`` button, so the sticky bar never covers what it moves. When a model
    saw several windows, each model's windows (:func:`windows_html`) show under the controls and the curves
    start folded: within 90 px at any number of models."""
    if not tracks:
        return ""
    lo, hi = span(tracks, fps)
    width = 1000.0
    length = max(hi - lo, 1e-6)
    tick_h = max(2, min(4, (height // 3) // max(1, len(tracks))))
    plot_h = height - tick_h * len(tracks) - 2
    peak = max([1.5] + [w * len(tr.weights) for tr in tracks for w in tr.weights])

    def x(t: float) -> float:
        return (t - lo) / length * width

    def y(share: float, n: int) -> float:
        return plot_h - (share * n) / peak * (plot_h - 2)

    parts = [f'<line class="mvt-even" x1="0" x2="{width}" y1="{y(1, 1):.1f}" y2="{y(1, 1):.1f}"/>']
    for k, tr in enumerate(tracks):
        n = len(tr.weights)
        for piece in _pieces(tr):  # one line per window: no line across the parts a model did not see
            pts = " ".join(f"{x(tr.times[i]):.1f},{y(tr.weights[i], n):.1f}" for i in piece)
            parts.append(f'<polyline points="{pts}" stroke="{tr.color}"/>')
        top = plot_h + 2 + k * tick_h
        ticks = "".join(f"M{x(t):.1f} {top}v{tick_h}" for t in tr.times)
        parts.append(f'<path class="mvt-ticks" d="{ticks}" stroke="{tr.color}"/>')
    parts.append(f'<line class="mvt-cursor" x1="0" x2="0" y1="0" y2="{height}"/>')
    legend = "".join(
        f'<span><i style="background:{tr.color}"></i>{html.escape(tr.name)} · {_seen(tr)}</span>'
        for tr in tracks
        if tr.times
    )
    about = (
        "line: share of the explanation on each frame (dashed = even share); ticks: the frames each model saw; "
        f"bars: its windows and the top-1 class of each; clip {clip} {duration:.2f} s"
    )
    step = 1.0 / fps if fps and fps > 0 else 0.04
    lanes = windows_html(tracks, lo, hi)
    folded, arrow = (" mvt-folded", "▾") if lanes else ("", "▴")
    return (
        f'<div class="mvt-timeline{folded}" data-testid="timeline" data-start="{lo:.4f}" data-end="{hi:.4f}" '
        f'data-fps="{fps:.4f}">'
        '<div class="mvt-controls">'
        '<button class="mvt-play" type="button" aria-label="Play" aria-pressed="false" '
        'title="Play / pause (all panels)">▶</button>'
        f'<input class="mvt-slider" type="range" min="{lo:.4f}" max="{hi:.4f}" step="{step:.4f}" '
        f'value="{lo:.4f}" aria-label="Clip time in seconds, shared by every panel">'
        f'<output class="mvt-time">{lo:.2f} s</output>'
        f'<button class="mvt-fold" type="button" aria-expanded="{"false" if lanes else "true"}" '
        f'title="Show or hide the importance curves">curves {arrow}</button></div>{lanes}'
        '<div class="mvt-fold-body">'
        f'<svg class="mvt-curves" viewBox="0 0 {width:.0f} {height}" preserveAspectRatio="none" '
        f'role="img" aria-label="How much each model\'s explanation weighs each frame">{"".join(parts)}</svg>'
        f'<div class="mvt-legend" title="{html.escape(about)}">{legend}'
        f'<span class="mvt-note">{html.escape(about)}</span></div></div></div>'
    )


def _pieces(tr: Track) -> list[list[int]]:
    """Indices of ``tr``'s frames, window by window (one piece without windows)."""
    if len(tr.windows) < 2:
        return [list(range(len(tr.times)))]
    return [[i for i, t in enumerate(tr.times) if m.start <= t < m.end] for m in tr.windows]


def _seen(tr: Track) -> str:
    if len(tr.windows) > 1:
        per = len(tr.times) // len(tr.windows)
        return f"{len(tr.windows)} windows × {per} frames"
    return f"{len(tr.times)} frames, {tr.times[0]:.2f}–{tr.times[-1]:.2f} s"


WINDOW_LANES_PX = 44
"""The height every model's row of windows shares (a row at most 10 px: four models fill it; more get thinner
rows, their class names on hover), so that the sticky bar stays within 90 px whatever the number of models."""


def lane_px(models: int) -> int:
    """The height of one model's row of windows when ``models`` rows share :data:`WINDOW_LANES_PX`."""
    n = max(models, 1)
    return max(3, min(10, (WINDOW_LANES_PX - (n - 1)) // n))


def windowed(tracks: Sequence[Track]) -> bool:
    """Whether some model saw more than one window of the clip."""
    return any(len(tr.windows) > 1 for tr in tracks)


def windows_html(tracks: Sequence[Track], lo: float, hi: float) -> str:
    """A row per model: a bar for each window it saw, spanning its clip time, labelled with that window's own
    top-1 class (the class strip over time; past four models the rows get thinner and the names move to the
    hover text); nothing when every model saw one window (its top-1 is its panel's)."""
    if not windowed(tracks):
        return ""
    length = max(hi - lo, 1e-6)
    lane = lane_px(len(tracks))
    rows = []
    for tr in tracks:
        bars = "".join(
            f'<span class="mvt-win" data-window="{m.index}" data-start="{m.start:.4f}" data-end="{m.end:.4f}" '
            f'style="left:{100 * (m.start - lo) / length:.3f}%;width:{100 * (m.end - m.start) / length:.3f}%;'
            f'--accent:{tr.color}" title="{html.escape(tr.name)}, window {m.index + 1}: {m.start:.2f}–{m.end:.2f} s, '
            f'top-1 {html.escape(m.label)} {100 * m.prob:.0f}%">{html.escape(m.label) if lane >= 8 else ""}</span>'
            for m in tr.windows
        )
        rows.append(
            f'<div class="mvt-winrow" data-model="{html.escape(tr.name)}" '
            f'title="{html.escape(tr.name)} · {_seen(tr)}">{bars}</div>'
        )
    return (
        f'<div class="mvt-windows" style="--lane:{lane}px" aria-label="windows each model saw">'
        f"{''.join(rows)}</div>"
    )
