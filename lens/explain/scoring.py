"""Faithfulness scores that run models: the metrics of :mod:`viz.faithfulness` with a model's class
probability as the score, for one clip's explanations or for every volume of a result (plus baselines)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

import mvt
import viz
from mvt.outputs import Footprint
from viz.faithfulness import DEFAULT_SUBSTRATE

from ..core.records import ModelResult, VolumeKey
from . import methods as M

Cells = tuple[int, int, int] | Footprint | None


def class_probability(model: nn.Module, target: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The scoring callable of :mod:`viz.faithfulness`: a batch of clips → softmax probability of ``target``."""

    def score(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(batch).float().softmax(-1)[:, target]

    return score


def score_model(
    model: nn.Module,
    x: torch.Tensor,
    explanations: Mapping[Hashable, np.ndarray],
    *,
    target: int | None = None,
    mask: np.ndarray | None = None,
    cells: Cells = None,
    steps: int = 16,
    substrate: str = DEFAULT_SUBSTRATE,
    batch_size: int = 8,
    progress: Callable[[float, str], None] | None = None,
) -> dict:
    """:func:`viz.faithfulness.score_clip` of ``explanations`` (each (T, H, W) at the clip's resolution) for
    clip ``x`` (1, 3, T, H, W), scored by ``model``'s probability of ``target`` (default: its prediction).

    The model is put in eval mode for the call (and restored). Returns, per explanation,
    ``{"curves": Curves (with .target), "pointing_game": float, "mask_iou": float}``.
    """
    was_training = model.training
    model.eval()
    try:
        if target is None:
            with torch.no_grad():
                target = int(model(x.detach())[0].argmax())
        scores = viz.faithfulness.score_clip(
            class_probability(model, target),
            x,
            explanations,
            mask=mask,
            cells=cells,
            steps=steps,
            substrate=substrate,
            batch_size=batch_size,
            progress=progress,
        )
    finally:
        model.train(was_training)
    for s in scores.values():
        s["curves"] = replace(s["curves"], target=int(target))
    return scores


def score_result(
    model: nn.Module,
    result: ModelResult,
    keys: Sequence[VolumeKey] | None = None,
    *,
    baselines: Sequence[str] = M.BASELINES,
    mask: np.ndarray | None = None,
    target: int | None = None,
    **options: Any,
) -> dict[VolumeKey, dict]:
    """:func:`score_model` for the volumes of a result (``keys``, default: all), each painted onto the frames
    with its footprint, plus the ``baselines`` methods (random and centre by default; ``"oracle"`` with a
    ``mask``). The clip is ``mvt.normalise(result.frames, model.spec)`` (the frames are already the crop the model saw) on the model's device; ``target``
    defaults to the class the result explained; ``options`` (cells, steps, substrate, batch_size, progress)
    go to :func:`score_model`."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = mvt.normalise(result.frames, model.spec, device=device)
    target = result.target if target is None else target
    shape = result.frames.shape[:3]
    vols = {k: result.volumes[k].painted(shape) for k in (result.volumes if keys is None else keys)}
    extra, _ = M.compute(None, x, None, baselines, target=target, mask=mask)
    vols.update({k: v.values for k, v in extra.items()})
    return score_model(model, x, vols, target=target, mask=mask, **options)


def by_label(scores: Mapping[VolumeKey, Mapping]) -> dict[str, viz.Curves]:
    """The curves of :func:`score_result`, named as a person reads them (``stage 3``, ``random``, …)."""
    return {M.volume_label(k): s["curves"] for k, s in scores.items()}


def table(scores: Mapping[str, Mapping[VolumeKey, Mapping]], digits: int = 4) -> list[list]:
    """Rows ``[model, explanation, deletion AUC, insertion AUC]`` of several models' scores."""
    return [
        [name, label, round(c.deletion_auc, digits), round(c.insertion_auc, digits)]
        for name, per in scores.items()
        for label, c in by_label(per).items()
    ]


def figure(name: str, scores: Mapping[VolumeKey, Mapping]):
    """One model's deletion and insertion curves (plotly), baselines dashed."""
    return viz.curves_figure(by_label(scores), title=name)


def summary(scores: Mapping[VolumeKey, Mapping]) -> dict[str, dict[str, float]]:
    """JSON-ready numbers of :func:`score_result`: ``{volume slug: {deletion_auc, insertion_auc,
    pointing_game, mask_iou}}`` (NaN becomes ``None``), rounded to 6 decimals."""

    def num(v: float) -> float | None:
        v = float(v)
        return None if np.isnan(v) else round(v, 6)

    return {
        k.slug: {
            "deletion_auc": num(s["curves"].deletion_auc),
            "insertion_auc": num(s["curves"].insertion_auc),
            "pointing_game": num(s.get("pointing_game", float("nan"))),
            "mask_iou": num(s.get("mask_iou", float("nan"))),
        }
        for k, s in scores.items()
    }
