"""A point asked of the clip, drawn: each model's frames with the query token's attention row and the point
marked (or the frames dimmed, and why the model did not see it), the clip's own frames with every model's
crop outlined (where a person clicks), and the frame × frame figures.

The files are JPEG sprites like the panels' (:mod:`lens.render.timeline`), so the shared slider moves them
the same way; the marks are HTML over the picture (``assets/ui/timeline.js`` shows the point's mark on the
frames the query token covers). Nothing here imports gradio.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import viz
from viz.query import FrameMatrix

from ..core.records import ModelResult
from ..explain.query import ModelQuery
from .display import Display
from .overlays import render_overlay, write_jpeg
from .timeline import Sprite, sprite_grid, tile

CLEAR = '<button class="mvt-query-clear" type="button" title="Show the CLS view again">✕ CLS view</button>'
"""The way back: a button on each queried picture (``timeline.js`` clears the point)."""


def _tag(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


def query_sprite(window: ModelResult, answer: ModelQuery, display: Display, out: Path, key: object) -> Path:
    """``answer``'s row over the frames ``window`` saw, tiled into one JPEG in ``out`` (written once per
    result, point, stage and colours); the frames dimmed when the model did not see the point."""
    safe = window.name.replace(".", "_")
    if answer.volume is None:
        path = out / f"unseen_{safe}_{_tag(key, answer.window)}.jpg"
        if not path.exists():
            write_jpeg(tile((window.frames.astype(np.float32) * 0.45).astype(np.uint8)), path)
        return path
    p = answer.point
    what = (key, answer.window, answer.stage, p.t, p.x, p.y, display.colormap, display.opacity)
    path = out / f"query_{safe}_{_tag(*what)}.jpg"
    if not path.exists():
        write_jpeg(tile(render_overlay(window, answer.volume, display)), path)
    return path


def mark_html(answer: ModelQuery) -> str:
    """The point and its token's footprint over a model's picture (percentages of the crop): the mark is
    solid on the frames the token covers (``data-frames``), faint on the others."""
    if not answer.seen:
        why = {"cropped": "cropped away", "window": "outside its window", "pooled": "pooled away"}
        text = f"did not see this point: {why.get(answer.reason or '', '')}"
        return f'<span class="mvt-query-out" data-testid="query-unseen">{text}</span>{CLEAR}'
    parts = []
    if answer.box is not None:
        x0, y0, x1, y1 = (100 * v for v in answer.box)
        parts.append(
            f'<span class="mvt-qbox" style="left:{x0:.2f}%;top:{y0:.2f}%;width:{x1 - x0:.2f}%;'
            f'height:{y1 - y0:.2f}%"></span>'
        )
    u, v = (100 * c for c in answer.mark or (0.5, 0.5))
    frames = ",".join(str(f) for f in answer.frames)
    parts.append(
        f'<span class="mvt-qmark" data-testid="query-mark" data-frames="{frames}" '
        f'style="left:{u:.2f}%;top:{v:.2f}%"></span>'
    )
    return "".join(parts) + CLEAR


def query_label(answer: ModelQuery) -> str:
    """What a queried panel's picture is, for screen readers and the caption line."""
    p = answer.point
    where = f"the point ({p.x:.0f}, {p.y:.0f}) at {p.t:.2f} s"
    return f"where {where} looks, stage {answer.stage + 1}" if answer.seen else f"{where}: not seen"


def query_captions(answer: ModelQuery) -> list[str]:
    """The sentences under a queried panel: the token named (or why the model did not see the point)."""
    return [answer.caption, *answer.notes]


# -- the clip itself: where a person clicks ----------------------------------------------------------------------


def clip_sprite(times: Sequence[float], frames: np.ndarray, out: Path, sha256: str) -> Sprite:
    """The clip's frames at ``times`` (uint8 ``(N, H, W, 3)``, uncropped) tiled into one JPEG."""
    path = out / f"clip_{sha256[:16]}_{_tag(tuple(round(float(t), 4) for t in times))}.jpg"
    if not path.exists():
        write_jpeg(tile(frames), path)
    return Sprite("clip", path, sprite_grid(len(times)), tuple(float(t) for t in times), "#444", "the clip")


def crops_html(boxes: Sequence[tuple[str, str, tuple[float, float, float, float]]], answer_xy=None) -> str:
    """Each model's crop outlined in its colour over the clip (``(name, colour, (x0, y0, x1, y1))``, fractions
    of the clip), and the asked point (fractions) when there is one."""
    parts = []
    for name, color, (x0, y0, x1, y1) in boxes:
        parts.append(
            f'<span class="mvt-crop" title="{html.escape(name)} sees this square" style="border-color:{color};'
            f'left:{100 * x0:.2f}%;top:{100 * y0:.2f}%;width:{100 * (x1 - x0):.2f}%;height:{100 * (y1 - y0):.2f}%">'
            "</span>"
        )
    if answer_xy is not None:
        u, v = answer_xy
        mark = (
            f'<span class="mvt-qmark" data-frames="" style="left:{100 * u:.2f}%;top:{100 * v:.2f}%"></span>'
        )
        parts.append(mark + CLEAR)
    return "".join(parts)


# -- frame × frame ------------------------------------------------------------------------------------------------


def _labels(frames: Sequence[tuple[int, int]], times: np.ndarray) -> list[str]:
    out = []
    for a, b in frames:
        a, b = min(a, len(times) - 1), min(max(b - 1, a), len(times) - 1)
        span = f"{a + 1}" if a == b else f"{a + 1}–{b + 1}"
        out.append(f"f{span} · {times[a]:.2f}s")
    return out


def frame_figure(result: ModelResult, fm: FrameMatrix):
    """A small plotly heatmap of ``result``'s :class:`~viz.query.FrameMatrix`, its axes the frames (and clip
    times) each time slot covers."""
    times = np.asarray(result.times, dtype=np.float64)
    kind = {"temporal": "temporal map", "spatial": "spatial map (within each frame)"}.get(fm.kind, "")
    title = f"{result.name} · stage {fm.stage + 1}" + (f" · {kind}" if kind else "")
    return viz.frame_matrix_figure(
        fm.values, _labels(fm.q_frames, times), _labels(fm.k_frames, times), fm.mass, title=title
    )
