"""Ask a point, in the app: a click on a picture becomes a clip position, every panel shows where that point
looks (or says its model did not see it), the clip's own frames show every model's crop, and the frame × frame
tab shows each model's matrix for the panel's stage.

A click arrives as the JSON ``assets/ui/timeline.js`` writes: ``{"model", "time", "u", "v"}`` (``u``, ``v``:
fractions of the picture clicked; ``model`` is the panel's model, ``"clip"`` for the clip's own frames or
``"ground truth"``, whose pictures are the whole frame), or ``{"clear": 1}`` for the way back to the CLS view.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

import mvt

from ..core.records import Analysis, ModelResult
from ..core.request import ClipInfo, LensError
from ..explain.query import ModelQuery, Query, frame_matrix, sampling, windows
from ..render.display import Display
from ..render.overlays import stage_choices
from ..render.panels import Panel
from ..render.query import (
    clip_sprite,
    crops_html,
    frame_figure,
    mark_html,
    query_captions,
    query_label,
    query_sprite,
)
from ..render.timeline import Sprite, Url, frames_html, panel_html, sprite_grid
from ..service.service import Service
from .present import color, target_label
from .screens import KEEP, PanelScreen

FULL_FRAME = ("clip", "ground truth")
"""Pictures that show the clip's whole frame (a click there is a clip position already)."""


def parse(text: str | None) -> dict | None:
    """A click as the browser sent it (``None``: the way back, or nothing)."""
    if not text:
        return None
    try:
        click = json.loads(text)
    except ValueError:
        raise LensError("that click could not be read: click the picture again") from None
    if not isinstance(click, dict) or click.get("clear"):
        return None
    try:
        values = [float(click[k]) for k in ("time", "u", "v")]
    except (KeyError, TypeError, ValueError):
        raise LensError("that click could not be read: click the picture again") from None
    if not all(math.isfinite(v) for v in values) or not all(0 <= v <= 1 for v in values[1:]):
        raise LensError("that click is not on the picture: click inside it")
    return click


def _result(analysis: Analysis, name: str) -> ModelResult:
    for r in analysis.results:
        if r.name == name:
            return r
    raise LensError(f"{name} is not in this comparison any more: press Compare again")


def clip_point(click: dict, analysis: Analysis) -> tuple[float, float, float]:
    """The clip position ``(t, x, y)`` of a click: on the clip's own frames directly; on a model's picture
    back through that model's crop and resize (the frame shown at the click's time)."""
    t, u, v = float(click["time"]), float(click["u"]), float(click["v"])
    clip = analysis.clip
    if click.get("model") in FULL_FRAME:
        return t, u * clip.width, v * clip.height
    result = _result(analysis, str(click.get("model")))
    window = min(windows(result), key=lambda w: float(np.abs(np.asarray(w.times) - t).min()))
    s = sampling(window, clip)
    k = int(np.abs(np.asarray(window.times) - t).argmin())
    _, x, y = s.to_clip((k + 0.5, v * s.crop, u * s.crop))
    return float(window.times[k]), x, y


# -- the panels, queried -------------------------------------------------------------------------------------------


def _queried(
    i: int, screen: PanelScreen, panel: Panel, answer, display: Display, out: Path, url: Url, labels
):
    r = panel.result
    window = windows(r)[answer.window]
    image = query_sprite(window, answer, display, out, (r.name, r.times.tobytes()))
    sprite = Sprite(
        r.name, image, sprite_grid(len(window.times)), tuple(float(t) for t in window.times), color(i),
        query_label(answer), mark=mark_html(answer),
    )  # fmt: skip
    body = panel_html(
        r.name, frames=sprite, error=None, top5=r.top5, target_label=target_label(r, labels) if labels else None,
        captions=query_captions(answer), url=url, color=color(i),
    )  # fmt: skip
    return replace(screen, html=body, stages=stage_choices(r, "attention"), stage=answer.stage + 1)


def queried(
    service: Service,
    analysis: Analysis,
    query: Query,
    panels: Sequence[Panel | None],
    shown: Sequence[PanelScreen],
    displays: Sequence[Display],
    out: Path,
    url: Url,
) -> list[PanelScreen]:
    """Every panel that has a picture, showing ``query``'s answer for its model instead (its stage
    control offering the attention stages); panels without one (``None``: still running) stay as they are."""
    out_screens = list(shown)
    for i, (panel, answer) in enumerate(zip(panels, query.answers)):
        if (
            panel is None
            or panel.result is None
            or panel.error is not None
            or not isinstance(answer, ModelQuery)
        ):
            continue
        labels = service.labels(panel.name)
        out_screens[i] = _queried(i, shown[i], panel, answer, displays[i], out, url, labels)
    return out_screens


def ask(service: Service, analysis: Analysis, point, displays: Sequence[Display]) -> Query:
    """``service.query`` at each panel's stage (the last where the panel shows no stage) and heads."""
    return service.query(
        analysis, *point, stage=[d.stage for d in displays], head=displays[0].head if displays else "mean"
    )


# -- the clip's own frames -----------------------------------------------------------------------------------------


def _common(frames: list[np.ndarray], height: int) -> np.ndarray:
    from PIL import Image

    out = []
    for f in frames:
        h, w = f.shape[:2]
        size = (max(1, round(w * height / h)), height)
        out.append(f if (h, w) == (size[1], size[0]) else np.asarray(Image.fromarray(f).resize(size)))
    width = min(o.shape[1] for o in out)
    return np.stack([o[:, :width] for o in out])


def clip_frames(service: Service, analysis: Analysis) -> tuple[list[float], np.ndarray]:
    """The clip's whole frames at every time a model saw (from the service's decodes, before each model's
    crop), at the smallest height any model read them, ``(times, uint8 (N, H, W, 3))``."""
    seen: dict[float, np.ndarray] = {}
    for r in analysis.results:
        spec = mvt.get_spec(r.name)
        for w in windows(r):
            start = analysis.start_s if len(windows(r)) == 1 else float(w.times[0])
            clip = service.clips.read(analysis.clip.path, spec, start)
            for t, f in zip(clip.times, clip.frames):
                seen.setdefault(round(float(t), 4), f)
    if not seen:
        raise LensError("no model saw any frame of this clip")
    times = sorted(seen)
    height = min(f.shape[0] for f in seen.values())
    return times, _common([seen[t] for t in times], height)


def clip_html(sprite: Sprite, url: Url, clip: ClipInfo, marks: str, note: str) -> str:
    """The clip's frames (timeline-driven like the panels) at the clip's own aspect, the marks over them and
    a line under them."""
    body = frames_html(replace(sprite, mark=marks), url, f'<p class="mvt-clip-note">{note}</p>')
    return f'<div class="mvt-clipview" style="--aspect:{clip.width} / {clip.height}">{body}</div>'


def clip_view(service: Service, analysis: Analysis, point, out: Path, url: Url) -> str | None:
    """The clip column: the whole frame at the shared time with each model's crop outlined in its panel's
    colour and the asked point marked; a click there asks that point."""
    if not analysis.results:
        return None
    times, frames = clip_frames(service, analysis)
    sprite = clip_sprite(times, frames, out, analysis.clip.sha256)
    boxes = []
    for i, e in enumerate(analysis.entries):
        if isinstance(e, ModelResult):
            boxes.append((e.name, color(i), sampling(e, analysis.clip).crop_box()))
    c = analysis.clip
    xy = None if point is None else (point[1] / c.width, point[2] / c.height)
    note = "Click a point (here or in any panel) to see where it looks in every model; outlines: each model's crop."
    if point is not None:
        note = f"Asked: ({point[1]:.0f}, {point[2]:.0f}) px at {point[0]:.2f} s. " + note
    return clip_html(sprite, url, c, crops_html(boxes, xy), note)


# -- frame × frame -------------------------------------------------------------------------------------------------


def matrices(service: Service, analysis: Analysis, displays: Sequence[Display], *, wait: bool) -> list:
    """A frame × frame figure per entry at its panel's stage (``None``: a model that failed); without
    ``wait``, a model whose matrices are not computed yet keeps its figure (:data:`KEEP`)."""
    figs: list = []
    for e, d in zip(analysis.entries, displays):
        if not isinstance(e, ModelResult) or e.output is None:
            figs.append(None)
            continue
        geo = service.geometry(e)
        stage = geo.stages[-1] if d.stage is None else geo.stages[min(int(d.stage), len(geo.stages) - 1)]
        amap = geo.frame_map(stage)
        ready = getattr(amap, "probs_ready", True)
        if not wait and not ready:
            figs.append(KEEP)
            continue
        figs.append(frame_figure(e, frame_matrix(e, service.geometry, d.stage)))
    return figs
