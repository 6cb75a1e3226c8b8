"""From a result and a :class:`~lens.render.display.Display` to pixels and files: which volume a display
means, the controls a model can give, the overlay and the all-stages strip, the overlay frame rate, and the
figures shown after a comparison."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

import mvt
import viz

from ..core.records import ModelResult, Volume, VolumeKey
from ..core.request import LensError
from ..core.storage import atomic_write
from ..explain import methods as M
from .display import DEFAULT_DISPLAY, Display

STRIP_KINDS = ("attention", "rollout", "gradient")
"""Method kinds drawn in the all-stages strip (a row each); captum attributions get their own strip."""

NORM = "contrast"
"""How a panel's values map to colours (:data:`viz.NORMS`): one scale for the whole clip, from its 2nd to its
99.5th percentile, so frames compare and one hot token does not wash out the rest; its colour bar says so."""
NORM_WORDS = "one scale for the clip, its 2nd–99.5th percentile (beyond: saturated); fainter = lower"


def overlay_fps(result: ModelResult) -> float:
    """The frame rate of every overlay video (app and export): the rate of the frames the model saw,
    kept between 2 and 30 fps so short samples stay watchable and long strides do not flicker."""
    return max(2.0, min(float(result.fps), 30.0))


def resolve(result: ModelResult, display: Display) -> tuple[VolumeKey, Volume]:
    """The volume ``display`` asks for in ``result``: a :class:`LensError` saying what to do if it cannot be
    drawn (not computed, heads the map does not have — numbered from 1, as the app shows them — or values
    that are not numbers)."""
    key, volume = _resolve(result, display)
    if not np.isfinite(volume.values).all():
        raise LensError(
            f"{result.name}: its {M.volume_label(key)} map holds values that are not numbers (NaN or infinity), "
            "so it cannot be drawn; the model's arithmetic broke down on this clip. Try another method or clip."
        )
    return key, volume


def canonical(result: ModelResult, display: Display) -> Display:
    """``display`` with what cannot change ``result``'s picture left out: the stage of a method computed once
    (not per stage) or asked past the last, the heads of a method without heads, sink keys outside attention.
    Two displays that draw the same picture are then one (one panel cached, one set of files)."""
    method = M.get(display.method)
    stages = sum(1 for k in result.volumes if k.method == method.name)
    stage = display.stage
    if stage is not None and (stages <= 1 or int(stage) >= stages - 1):
        stage = None
    head = display.head if method.heads else "mean"
    sinks = display.sinks if method.name == "attention" else False
    if (stage, head, sinks) == (display.stage, display.head, display.sinks):
        return display
    return replace(display, stage=stage, head=head, sinks=sinks)


def _resolve(result: ModelResult, display: Display) -> tuple[VolumeKey, Volume]:
    method = M.get(display.method)
    keys = [k for k in result.volumes if k.method == method.name]
    if not keys:
        raise LensError(f"{method.label} was not computed for {result.name}: tick it and press Compare.")
    key = keys[-1] if display.stage is None else keys[min(max(int(display.stage), 0), len(keys) - 1)]
    hide = method.name == "attention" and not display.sinks and bool(sink_keys(result, key))
    if (display.head == "mean" or not method.heads) and not hide:
        return key, result.volumes[key]
    head = display.head if method.heads else "mean"
    if head != "mean":
        offered = head_choices(result, display.method, key.stage)
        label = head if isinstance(head, str) else f"head {int(head) + 1}"
        if label not in offered:
            where = f"stage {key.stage + 1}" if key.stage is not None else method.label
            have = ", ".join(offered)
            raise LensError(f"{result.name} has no {label} at {where}: it offers {have}.")
    options = {"head": head, "stage": key.stage, "exclude_sinks": hide}
    inputs = M.Inputs(None, None, result.output, result.target, options=options)
    try:
        return key, method.compute(inputs)[key]
    except ValueError as e:  # e.g. per-head maps of a model without a CLS token
        raise LensError(f"{result.name}: {e}") from None


def sink_keys(result: ModelResult, key: VolumeKey) -> tuple[int, ...]:
    """The sink keys (:mod:`lens.explain.sinks`) of the map a per-stage volume shows (none for other volumes)."""
    if result.output is None or key.stage is None:
        return ()
    try:
        return tuple(result.output.sinks_of(viz.stage_map(result.output, key.stage)) or ())
    except (ValueError, IndexError, KeyError):
        return ()


# -- controls that fit the model ----------------------------------------------------------------------------


def _grid_text(grid: Sequence[int]) -> str:
    t, h, w = (int(g) for g in grid)
    if t == 1 and h == 1:
        return f"{w} keys (1-D)"  # 1-D pooled tokens (HVT)
    return f"{t}×{h}×{w} keys"


def stage_choices(result: ModelResult, method: str = "attention") -> list[tuple[str, int]]:
    """``(label, stage as shown, from 1)`` for every stage ``method`` has a volume of in ``result``, labelled
    by the grid of keys its map attends over: ``("stage 2 · 8×7×7 keys", 2)`` (T×H×W). Empty for methods
    that are not per stage."""
    m = M.get(method)
    if not m.per_stage or result.output is None:
        return []
    stages = [k.stage for k in result.volumes if k.method == m.name and k.stage is not None]
    out = []
    for s in stages:
        amap = viz.stage_map(result.output, s)
        grid = tuple(g * k for g, k in zip(amap.group_grid, amap.k_grid))
        out.append((f"stage {s + 1} · {_grid_text(grid)}", s + 1))
    return out


def head_choices(result: ModelResult, method: str = "attention", stage: int | None = None) -> list[str]:
    """The head choices a map can give for ``method`` at ``stage`` (0-based; ``None``: the last stage):
    ``mean``, and ``max`` plus ``head 1 … head H`` only where the map has a per-head CLS row. Methods that
    do not take heads offer ``mean`` only."""
    m = M.get(method)
    if not m.heads or result.output is None:
        return ["mean"]
    stages = viz.stages(result.output)
    if not stages:
        return ["mean"]
    s = stages[-1] if stage is None else stages[min(max(int(stage), 0), len(stages) - 1)]
    amap = viz.stage_map(result.output, s)
    if amap.cls_row is None or amap.kind == "cross":
        return ["mean"]
    return ["mean", "max", *(f"head {i}" for i in range(1, int(amap.cls_row.shape[1]) + 1))]


def frame_volume(result: ModelResult, volume: Volume) -> np.ndarray:
    """``volume`` painted onto the frames the model saw: float32 (T, S, S)."""
    return volume.painted(result.frames.shape[:3])


def render_overlay(result: ModelResult, volume: Volume, display: Display = DEFAULT_DISPLAY) -> np.ndarray:
    """Heat overlay of ``volume`` on the frames the model saw: uint8 (T, S, S, 3); each pixel's opacity grows
    with its value (``viz.overlay(weighted=True)``), so the frame stays readable where the heat is low."""
    vals = frame_volume(result, volume)
    return viz.overlay(
        result.frames, vals, alpha=display.opacity, cmap=display.colormap, weighted=True, norm=NORM
    )


def strip_keys(
    result: ModelResult, kinds: Sequence[str] = STRIP_KINDS, *, ready_only: bool = False
) -> list[VolumeKey]:
    """The result's volumes of method ``kinds``, in registry order (stages in order); ``ready_only`` leaves
    out volumes still pending (e.g. rollout before the attention matrices are computed)."""
    return [
        k
        for k in result.volumes
        if M.get(k.method).kind in kinds and (not ready_only or result.volumes.ready(k))
    ]


def volume_strip(
    result: ModelResult,
    keys: Sequence[VolumeKey],
    display: Display = DEFAULT_DISPLAY,
    columns: int = 8,
    title: str | None = None,
):
    """One image: a row per volume of ``keys`` (labelled), ``columns`` evenly spaced frames each. Labels are
    sized to the frames (an eighth of their height, at least 12 px), so they stay readable when the strip is
    shown smaller than it is."""
    rows = [render_overlay(result, result.volumes[k], display) for k in keys]
    size = max(12, int(result.frames.shape[1]) // 8)
    return viz.strip(
        rows,
        labels=[M.volume_label(k) for k in keys],
        max_frames=columns,
        font_size=size,
        label_width=8 * size,
        title=title,
    )


def stage_strip(
    result: ModelResult, display: Display = DEFAULT_DISPLAY, columns: int = 8, *, ready_only: bool = False
) -> np.ndarray:
    """The all-stages strip: a row per stage (attention), then rollout (and gradient rollout) if computed,
    under the model's name (``ready_only``: only rows that need no waiting)."""
    return volume_strip(
        result,
        strip_keys(result, ready_only=ready_only),
        display,
        columns,
        title=f"{result.name}: {result.description}",
    )


def write_overlay(
    result: ModelResult, volume: Volume, path: Path, display: Display = DEFAULT_DISPLAY
) -> Path:
    """The overlay of ``volume`` as an H.264 mp4 at :func:`overlay_fps`."""
    return write_video_frames(render_overlay(result, volume, display), path, overlay_fps(result))


def write_video_frames(frames: np.ndarray, path: Path, fps: float) -> Path:
    """uint8 ``(T, H, W, 3)`` frames as an H.264 mp4 (written atomically)."""
    return atomic_write(path, lambda p: mvt.write_video(frames, p, fps=fps))


def write_png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    return atomic_write(path, lambda p: Image.fromarray(image).save(p, format="PNG", compress_level=1))


def write_jpeg(image: np.ndarray, path: Path, quality: int = 88) -> Path:
    from PIL import Image

    return atomic_write(path, lambda p: Image.fromarray(image).save(p, format="JPEG", quality=quality))


def token_grid_figures(results: Sequence[ModelResult]) -> list:
    """A plotly token-grid figure per result (its stages' grids over the clip, coloured by attention)."""
    figs = []
    for r in results:
        fig = viz.token_grid_figure(r.output)
        fig.update_layout(title=f"{r.name}: token grid per stage")
        figs.append(fig)
    return figs


def stats_figure(results: Sequence[ModelResult]):
    """Attention entropy and mean distance per stage for every result, in one plotly figure."""
    return viz.stats_figure({r.name: viz.attention_stats(r.output) for r in results})
