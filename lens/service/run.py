"""The one run path: a model on a clip's frames → output, volumes and timings.

:func:`run_windows` is what :class:`lens.Service` calls for a model's windows of a clip and :func:`run_model`
(one window) what :mod:`lens.dataset.rows` calls: a forward per window (the fused fast path, or with
attention capture when anything is to be explained), the sinks marked, the class to explain chosen (the
windows' mean prediction, :func:`mean_probs`), and the explanation methods of the registry computed in every
window. :func:`capture` is the one place
``lens`` asks a model for its attention. :func:`labels` and :func:`top_k` name what the logits predict.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

import mvt
from mvt.layers import Capture, supported
from mvt.outputs import ModelOutput
from mvt.sinks import Sink, mark_sinks

from ..core.records import Volumes
from ..core.request import LensError
from ..explain import methods as M

Progress = Callable[[float, str], None]


def _quiet(frac: float, what: str) -> None:
    return None


def capture(model: nn.Module, x: torch.Tensor, *, lazy: bool = False) -> ModelOutput:
    """``model.forward_with_attention(x)``: every map's head mean now, or (``lazy``, where the family offers
    it) every map's CLS rows now and the head-mean matrices on first read."""
    if lazy and Capture.LAZY in supported(model):
        return model.forward_with_attention(x, capture=Capture.LAZY)
    return model.forward_with_attention(x)


def labels(spec: mvt.ModelSpec) -> tuple[str, ...]:
    """The class names of a model (``class N`` where its label set cannot be had)."""
    try:
        return tuple(spec.labels)
    except (KeyError, ImportError):
        return tuple(f"class {i}" for i in range(spec.num_classes or 0))


def top_k(
    logits: torch.Tensor, names: Sequence[str], k: int = 5, *, probs: bool = False
) -> list[tuple[str, float]]:
    """The ``k`` most probable classes of ``logits`` (1, classes) as ``(name, probability)`` (``probs``: the
    values are probabilities already, e.g. :func:`mean_probs`)."""
    probs = logits.float()[0] if probs else logits.float().softmax(-1)[0]
    vals, idx = probs.topk(min(k, probs.numel()))
    return [
        (names[i] if i < len(names) else f"class {i}", float(v)) for v, i in zip(vals.tolist(), idx.tolist())
    ]


@dataclass
class Run:
    """One model on one clip (or one window of it): its logits (1, classes), the captured output (``None`` on
    the fast path), the class explained, the explanation volumes and the seconds each step took (by label)."""

    logits: torch.Tensor
    output: ModelOutput | None
    target: int
    volumes: Volumes
    timings: dict[str, float] = field(default_factory=dict)


def mean_probs(runs: Sequence[Run]) -> torch.Tensor:
    """The prediction of several windows: the mean of their softmax probabilities, ``(1, classes)`` (as
    Kinetics models are evaluated on several clips of a video)."""
    return torch.stack([r.logits.float().softmax(-1)[0] for r in runs]).mean(0, keepdim=True)


def _forward(
    model: nn.Module, x: torch.Tensor, attention: bool, lazy: bool, sinks: Sequence[Sink], report: Progress
) -> tuple[torch.Tensor, ModelOutput | None, dict[str, float]]:
    """Logits, the captured output (``attention``) and the forward's timings."""
    t = time.perf_counter()
    output = None
    with torch.inference_mode():
        if attention:
            report(0.3, "forward, CLS rows of every map" if lazy else "forward with attention")
            output = mark_sinks(capture(model, x, lazy=lazy), list(sinks))
            logits = output.logits
        else:
            report(0.3, "forward")
            logits = model(x)
    timings = {"forward + capture" if attention else "forward": time.perf_counter() - t}
    for key, value in (output.extras.get("stage_seconds", {}) if output is not None else {}).items():
        timings[f"  {key}"] = value
    return logits, output, timings


def run_windows(
    model: nn.Module,
    xs: Sequence[torch.Tensor],
    methods: Sequence[str] = (),
    *,
    target: int | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    attention: bool | None = None,
    lazy: bool = False,
    sinks: Sequence[Sink] = (),
    lock: contextlib.AbstractContextManager | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    mask: np.ndarray | None = None,
) -> list[Run]:
    """Run ``model`` on each window ``xs[k]`` (1, 3, T, S, S) and explain, in every window, class ``target``
    (``None``: the prediction of all windows together, :func:`mean_probs`) with ``methods``. ``attention``:
    capture the maps (default: when there is a method to compute); ``lazy``: capture CLS rows now, matrices
    on first read, and leave the methods that read every matrix or run autograd pending (see
    :func:`lens.explain.methods.compute`). ``sinks`` are marked on the maps. ``lock`` is held while a method
    runs autograd on the shared model; ``seed`` and ``mask`` go to the baselines. A :class:`LensError` when
    ``target`` is not one of the model's classes, or the scores are not numbers."""
    report = progress or _quiet
    attention = bool(methods) if attention is None else attention
    k = len(xs)

    def part(i: int, lo: float, hi: float) -> Progress:
        where = f"window {i + 1} of {k}: " if k > 1 else ""
        return lambda f, what: report((i + lo + (hi - lo) * f) / k, where + what)

    passes = [_forward(model, x, attention, lazy, sinks, part(i, 0.0, 0.5)) for i, x in enumerate(xs)]
    classes = int(passes[0][0].shape[-1])
    name = getattr(getattr(model, "spec", None), "name", "this model")
    if not all(bool(torch.isfinite(p[0]).all()) for p in passes):
        raise LensError(
            f"{name} gave scores that are not numbers (NaN or infinity) on this clip, so it has no prediction "
            "or explanation to show; its weights or its arithmetic broke down."
        )
    if target is not None and not 0 <= int(target) < classes:
        raise LensError(f"class {target} does not exist for {name}: it has classes 0 to {classes - 1}")
    probs = torch.stack([p[0].float().softmax(-1)[0] for p in passes]).mean(0)
    chosen = int(probs.argmax()) if target is None else int(target)
    runs = []
    for i, (x, (logits, output, timings)) in enumerate(zip(xs, passes)):
        volumes, method_times = M.compute(
            model, x, output, methods, target=chosen, options=options, lock=lock,
            progress=part(i, 0.5, 1.0), seed=seed, mask=mask, defer=lazy,
        )  # fmt: skip
        runs.append(Run(logits.float(), output, chosen, volumes, {**timings, **method_times}))
    return runs


def run_model(
    model: nn.Module,
    x: torch.Tensor,
    methods: Sequence[str] = (),
    **kwargs: Any,
) -> Run:
    """:func:`run_windows` on one window ``x``: its arguments, one :class:`Run`."""
    return run_windows(model, [x], methods, **kwargs)[0]
