"""From a result and a :class:`~lens.records.View` to pixels and files: which volume a view means, the
overlay and the all-stages strip, the overlay frame rate, and the figures shown after a comparison."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import mvt
import viz

from . import methods as M
from .records import DEFAULT_VIEW, LensError, ModelResult, View, Volume, VolumeKey

STRIP_KINDS = ("attention", "rollout", "gradient")
"""Method kinds drawn in the all-stages strip (a row each); captum attributions get their own strip."""


def overlay_fps(result: ModelResult) -> float:
    """The frame rate of every overlay video (app and export): the rate of the frames the model saw,
    kept between 2 and 30 fps so short samples stay watchable and long strides do not flicker."""
    return max(2.0, min(float(result.fps), 30.0))


def resolve(result: ModelResult, view: View) -> tuple[VolumeKey, Volume]:
    """The volume ``view`` asks for in ``result``: a :class:`LensError` saying what to do if it cannot be
    drawn (not computed, or heads the map does not have)."""
    method = M.get(view.method)
    keys = [k for k in result.volumes if k.method == method.name]
    if not keys:
        raise LensError(f"{method.label} was not computed for {result.name}: tick it and press Compare.")
    key = keys[-1] if view.stage is None else keys[min(max(int(view.stage), 0), len(keys) - 1)]
    if view.head == "mean" or not method.heads:
        return key, result.volumes[key]
    inputs = M.Inputs(None, None, result.output, result.target, options={"head": view.head})
    try:
        return key, method.compute(inputs)[key]
    except ValueError as e:  # e.g. per-head maps of a model without a CLS token
        raise LensError(f"{result.name}: {e}") from None


def frame_volume(result: ModelResult, volume: Volume) -> np.ndarray:
    """``volume`` painted onto the frames the model saw: float32 (T, S, S)."""
    shape = result.frames.shape[:3]
    if volume.values.shape == shape:
        return volume.values.astype(np.float32, copy=False)
    return viz.to_frames(volume.values, shape, footprint=volume.footprint)


def render_overlay(result: ModelResult, volume: Volume, view: View = DEFAULT_VIEW) -> np.ndarray:
    """Heat overlay of ``volume`` on the frames the model saw: uint8 (T, S, S, 3)."""
    vals = frame_volume(result, volume)
    return viz.overlay(result.frames, vals, alpha=view.opacity, cmap=view.colormap)


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


def volume_strip(result: ModelResult, keys: Sequence[VolumeKey], view: View = DEFAULT_VIEW, columns: int = 8):
    """One image: a row per volume of ``keys`` (labelled), ``columns`` evenly spaced frames each."""
    rows = [render_overlay(result, result.volumes[k], view) for k in keys]
    return viz.strip(rows, labels=[M.volume_label(k) for k in keys], max_frames=columns)


def stage_strip(
    result: ModelResult, view: View = DEFAULT_VIEW, columns: int = 8, *, ready_only: bool = False
) -> np.ndarray:
    """The all-stages strip: a row per stage (attention), then rollout (and gradient rollout) if computed
    (``ready_only``: only rows that need no waiting)."""
    return volume_strip(result, strip_keys(result, ready_only=ready_only), view, columns)


def _atomic(path: Path, write) -> Path:
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
    return _atomic(path, lambda p: mvt.write_video(frames, p, fps=overlay_fps(result)))


def write_png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    return _atomic(path, lambda p: Image.fromarray(image).save(p, format="PNG", compress_level=1))


def token_grid_figures(results: Sequence[ModelResult]) -> list:
    """A plotly token-grid figure per result (its stages' grids over the clip, coloured by attention)."""
    figs = []
    for r in results:
        fig = viz.token_grid_figure(r.output)
        fig.update_layout(title=f"{r.name}: token grids per stage, coloured by the stage's attention")
        figs.append(fig)
    return figs


def stats_figure(results: Sequence[ModelResult]):
    """Attention entropy and mean distance per stage for every result, in one plotly figure."""
    return viz.stats_figure({r.name: viz.attention_stats(r.output) for r in results})
