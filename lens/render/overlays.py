"""From a result and a :class:`~lens.records.View` to pixels and files: which volume a view means, the
overlay and the all-stages strip, the overlay frame rate, and the figures shown after a comparison."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import mvt
import viz

from ..core.records import DEFAULT_VIEW, LensError, ModelResult, View, Volume, VolumeKey
from ..explain import methods as M

STRIP_KINDS = ("attention", "rollout", "gradient")
"""Method kinds drawn in the all-stages strip (a row each); captum attributions get their own strip."""


def overlay_fps(result: ModelResult) -> float:
    """The frame rate of every overlay video (app and export): the rate of the frames the model saw,
    kept between 2 and 30 fps so short samples stay watchable and long strides do not flicker."""
    return max(2.0, min(float(result.fps), 30.0))


def resolve(result: ModelResult, view: View) -> tuple[VolumeKey, Volume]:
    """The volume ``view`` asks for in ``result``: a :class:`LensError` saying what to do if it cannot be
    drawn (not computed, or heads the map does not have; heads are numbered from 1, as the app shows them)."""
    method = M.get(view.method)
    keys = [k for k in result.volumes if k.method == method.name]
    if not keys:
        raise LensError(f"{method.label} was not computed for {result.name}: tick it and press Compare.")
    key = keys[-1] if view.stage is None else keys[min(max(int(view.stage), 0), len(keys) - 1)]
    if view.head == "mean" or not method.heads:
        return key, result.volumes[key]
    offered = head_choices(result, view.method, key.stage)
    label = view.head if isinstance(view.head, str) else f"head {int(view.head) + 1}"
    if label not in offered:
        where = f"stage {key.stage + 1}" if key.stage is not None else method.label
        have = ", ".join(offered)
        raise LensError(f"{result.name} has no {label} at {where}: it offers {have}.")
    inputs = M.Inputs(
        None, None, result.output, result.target, options={"head": view.head, "stage": key.stage}
    )
    try:
        return key, method.compute(inputs)[key]
    except ValueError as e:  # e.g. per-head maps of a model without a CLS token
        raise LensError(f"{result.name}: {e}") from None


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


# -- captions ----------------------------------------------------------------------------------------------

Captioner = Callable[[ModelResult, View, VolumeKey, Volume], "str | None"]
"""Says something about one panel's picture (or ``None``); see :data:`CAPTIONERS`."""


def describe(result: ModelResult, view: View, key: VolumeKey, volume: Volume) -> str | None:
    """What the picture is: which query, which keys, which heads."""
    method = M.get(key.method)
    if key.method != "attention" or result.output is None or key.stage is None:
        return f"{method.label}."
    amap = viz.stage_map(result.output, key.stage)
    heads = {"mean": f"mean of {amap.heads} heads", "max": f"max over {amap.heads} heads"}.get(
        str(view.head), f"head {int(view.head) + 1} of {amap.heads}" if isinstance(view.head, int) else ""
    )
    if amap.cls_row is not None and amap.kind != "cross":
        return f"Stage {key.stage + 1}: where the CLS token looks ({heads})."
    if amap.num_prefix == 0:
        return f"Stage {key.stage + 1}: how much attention each token receives (this model has no CLS token)."
    return f"Stage {key.stage + 1}: {amap.kind} attention, each group's CLS row laid onto the clip."


def evaluated(result: ModelResult, view: View, key: VolumeKey, volume: Volume) -> str | None:
    """What the shipped evaluation says about this picture (:func:`lens.notes.notes`): a sink key named where
    the map peaks on one, and a method that points at the actor less often than the centre baseline."""
    from ..explain.sinks import notes

    return " ".join(notes(result, key)) or None


CAPTIONERS: list[Captioner] = [describe, evaluated]
"""Every function that may caption a panel, in order. Add one here (e.g. a note that a map's mass sits on a
padding sink) and the app shows its sentence under the picture: no app change needed."""


def captions(result: ModelResult, view: View, key: VolumeKey, volume: Volume) -> tuple[str, ...]:
    """The sentences :data:`CAPTIONERS` give for one panel (a captioner that fails is skipped)."""
    out = []
    for fn in CAPTIONERS:
        try:
            text = fn(result, view, key, volume)
        except (ValueError, KeyError, IndexError, LensError):
            continue
        if text:
            out.append(str(text))
    return tuple(out)


def frame_volume(result: ModelResult, volume: Volume) -> np.ndarray:
    """``volume`` painted onto the frames the model saw: float32 (T, S, S)."""
    shape = result.frames.shape[:3]
    if volume.values.shape == shape:
        return volume.values.astype(np.float32, copy=False)
    return viz.to_frames(volume.values, shape, footprint=volume.footprint)


def render_overlay(result: ModelResult, volume: Volume, view: View = DEFAULT_VIEW) -> np.ndarray:
    """Heat overlay of ``volume`` on the frames the model saw: uint8 (T, S, S, 3); each pixel's opacity grows
    with its value (``viz.overlay(weighted=True)``), so the frame stays readable where the heat is low."""
    vals = frame_volume(result, volume)
    return viz.overlay(result.frames, vals, alpha=view.opacity, cmap=view.colormap, weighted=True)


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
    view: View = DEFAULT_VIEW,
    columns: int = 8,
    title: str | None = None,
):
    """One image: a row per volume of ``keys`` (labelled), ``columns`` evenly spaced frames each. Labels are
    sized to the frames (an eighth of their height, at least 12 px), so they stay readable when the strip is
    shown smaller than it is."""
    rows = [render_overlay(result, result.volumes[k], view) for k in keys]
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
    result: ModelResult, view: View = DEFAULT_VIEW, columns: int = 8, *, ready_only: bool = False
) -> np.ndarray:
    """The all-stages strip: a row per stage (attention), then rollout (and gradient rollout) if computed,
    under the model's name (``ready_only``: only rows that need no waiting)."""
    return volume_strip(
        result,
        strip_keys(result, ready_only=ready_only),
        view,
        columns,
        title=f"{result.name}: {result.description}",
    )


def atomic_write(path: Path, write) -> Path:
    """Write through a temporary file in the same folder and rename it: readers never see half a file."""
    tmp = path.with_name(f".{uuid.uuid4().hex}.{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_overlay(result: ModelResult, volume: Volume, path: Path, view: View = DEFAULT_VIEW) -> Path:
    """The overlay of ``volume`` as an H.264 mp4 at :func:`overlay_fps`."""
    frames = render_overlay(result, volume, view)
    return atomic_write(path, lambda p: mvt.write_video(frames, p, fps=overlay_fps(result)))


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
