"""The explanation methods, in one registry: name → label, kind, function, and what each needs.

The service, the app (its choices), ``evaluate`` and the report all read :data:`METHODS`; nothing else
lists methods or dispatches on their names. A method's ``compute(inputs)`` returns the volumes it makes,
keyed by :class:`~lens.core.records.VolumeKey` (per-stage methods give one per stage).

Kinds: ``attention`` (a stage's CLS row on its pooled key grid), ``rollout`` (attention rollout through the
pooling), ``gradient`` (gradient-weighted rollout; token flow, the conservative relevance of the tokens of
:func:`mvt.token_flow`), ``captum`` (attributions, :mod:`lens.explain.attribution`),
``baseline`` (random, centre and, where a ground-truth mask is known, the mask itself).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

import mvt
import viz
from mvt.outputs import ModelOutput

from ..core.records import Volume, VolumeKey, Volumes
from ..core.request import LensError
from . import attribution as A

KINDS = ("attention", "rollout", "gradient", "captum", "baseline")


@dataclass
class Inputs:
    """What a method may use: the model and its input, the captured output, the class to explain, this
    method's options, a progress callback (fraction), a seed (random baseline) and a mask (oracle)."""

    model: nn.Module | None
    x: torch.Tensor | None
    output: ModelOutput | None
    target: int
    options: Mapping[str, Any] = field(default_factory=dict)
    progress: Callable[[float], None] | None = None
    seed: int = 0
    mask: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T, S, S) of the model input."""
        if self.x is None:
            return tuple(int(s) for s in _output(self).input_shape)  # type: ignore[return-value]
        return tuple(int(s) for s in self.x.shape[2:])  # type: ignore[return-value]


Compute = Callable[[Inputs], dict[VolumeKey, Volume]]


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    kind: str
    compute: Compute
    needs_gradients: bool = False
    """Runs autograd or captum hooks on the shared model (the service holds the model's lock for it)."""
    per_stage: bool = False
    """Gives one volume per stage (keys carry the stage)."""
    heads: bool = False
    """Takes ``options["head"]`` (``"mean"``, ``"max"`` or a head index; with ``options["stage"]`` only that
    stage's volume); results keep the head mean."""
    needs_mask: bool = False
    """Needs a ground-truth mask (only where one is known: SynthMotion)."""
    attribution: A.Attribution | None = None
    """For captum methods: the function of :mod:`lens.explain.attribution` (see :func:`attribute`)."""
    needs_matrices: bool = False
    """Reads every map's full head-mean matrix (not only CLS rows): with ``compute(..., defer=True)`` its
    volumes are pending until first read (see :class:`lens.core.records.Volumes`)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Method.kind must be one of {KINDS}, got {self.kind!r}")


def _output(inp: Inputs) -> ModelOutput:
    if inp.output is None:
        raise ValueError("this method needs the model's captured attention (forward_with_attention)")
    return inp.output


def _rollout_view(output: ModelOutput) -> int | str:
    """Multiview models (MMViT) roll out onto every view (painted as a density); others onto their grid."""
    return "all" if len(output.extras.get("view_embeds", {})) > 1 else 0


def _attention(inp: Inputs) -> dict[VolumeKey, Volume]:
    out = _output(inp)
    head = inp.options.get("head", "mean")
    drop = bool(inp.options.get("exclude_sinks", False))
    stages = [int(inp.options["stage"])] if inp.options.get("stage") is not None else viz.stages(out)
    return {
        VolumeKey("attention", s): Volume(*viz.stage_volume(out, s, head=head, exclude_sinks=drop))
        for s in stages
    }


def _rollout(inp: Inputs) -> dict[VolumeKey, Volume]:
    out = _output(inp)
    view = inp.options.get("view", _rollout_view(out))
    drop = bool(inp.options.get("exclude_sinks", False))
    return {
        VolumeKey("rollout"): Volume(
            *viz.rollout_volume(out, mode="attention", view=view, exclude_sinks=drop)
        )
    }


def _grad_rollout(inp: Inputs) -> dict[VolumeKey, Volume]:
    grad_out = mvt.attention_gradients(inp.model, inp.x, inp.target)
    view = inp.options.get("view", _rollout_view(grad_out))
    return {VolumeKey("grad_rollout"): Volume(*viz.rollout_volume(grad_out, mode="grad", view=view))}


def _token_flow(inp: Inputs) -> dict[VolumeKey, Volume]:
    """Conservative relevance of the input tokens (``options["stage"]``: of the tokens a stage reads last;
    ``options["stages"]``: also one volume per stage, keyed with the stage, from the same backward pass)."""
    flow = mvt.token_flow(inp.model, inp.x, inp.target)
    out = {VolumeKey("token_flow"): Volume(*viz.flow_volume(flow, stage=inp.options.get("stage")))}
    if inp.options.get("stages"):
        stages = sorted(
            {m.stage for i, m in enumerate(flow.attentions) if i in flow.relevance and (m.view or 0) == 0}
        )
        out.update({VolumeKey("token_flow", s): Volume(*viz.flow_volume(flow, stage=s)) for s in stages})
    return out


def _captum(name: str, label: str, fn: A.Attribution, needs_gradients: bool = True) -> Method:
    def compute(inp: Inputs) -> dict[VolumeKey, Volume]:
        vol = A.run(fn, inp.model, inp.x, inp.target, progress=inp.progress, **inp.options)
        return {VolumeKey(name): Volume(np.asarray(vol, dtype=np.float32))}

    return Method(name, label, "captum", compute, needs_gradients=needs_gradients, attribution=fn)


def _random(inp: Inputs) -> dict[VolumeKey, Volume]:
    return {VolumeKey("random"): Volume(viz.random_explanation(inp.shape, seed=inp.seed))}


def _center(inp: Inputs) -> dict[VolumeKey, Volume]:
    return {VolumeKey("center"): Volume(viz.center_bias(inp.shape))}


def _oracle(inp: Inputs) -> dict[VolumeKey, Volume]:
    if inp.mask is None:
        raise ValueError("the oracle baseline needs a ground-truth mask")
    return {VolumeKey("oracle"): Volume(viz.oracle(inp.mask))}


_ALL = (
    Method(
        "attention", "Attention (CLS row of a stage)", "attention", _attention, per_stage=True, heads=True
    ),
    Method("rollout", "Attention rollout through pooling", "rollout", _rollout, needs_matrices=True),
    Method("grad_rollout", "Gradient-weighted rollout", "gradient", _grad_rollout, needs_gradients=True),
    Method(
        "token_flow",
        "Token flow (conservative relevance of the tokens)",
        "gradient",
        _token_flow,
        needs_gradients=True,
    ),
    _captum("saliency", "Saliency (captum)", A.saliency),
    _captum("input_x_gradient", "Input × gradient (captum)", A.input_x_gradient),
    _captum("integrated_gradients", "Integrated gradients (captum)", A.integrated_gradients),
    _captum("gradcam", "Grad-CAM on a stage output (captum)", A.gradcam),
    _captum("occlusion", "Occlusion, tubelet windows (captum)", A.occlusion, needs_gradients=False),
    _captum("feature_ablation", "Feature ablation over token cells (captum)", A.feature_ablation, False),
    Method("random", "random", "baseline", _random),
    Method("center", "center", "baseline", _center),
    Method("oracle", "oracle", "baseline", _oracle, needs_mask=True),
)

METHODS: dict[str, Method] = {m.name: m for m in _ALL}
"""Every explanation method by name, in display order."""

ALIASES = {"ig": "integrated_gradients", "ixg": "input_x_gradient", "ablation": "feature_ablation"}

BASELINES = ("random", "center")
"""The baselines every faithfulness score is compared with (the oracle needs a mask)."""

DEFAULT_METHODS = ("attention", "rollout")


def get(name: str) -> Method:
    """The method called ``name`` (or one of its :data:`ALIASES`); a :class:`LensError` if unknown."""
    method = METHODS.get(ALIASES.get(name, name))
    if method is None:
        raise LensError(f"unknown explanation method {name!r}; known: {', '.join(METHODS)}")
    return method


def names(kinds: Iterable[str] | None = None) -> list[str]:
    """Method names, in display order, optionally only of some ``kinds``."""
    wanted = set(KINDS if kinds is None else kinds)
    return [m.name for m in METHODS.values() if m.kind in wanted]


EXPLANATION_KINDS = ("attention", "rollout", "gradient", "captum")
"""The kinds a user picks from (baselines are added where scores are compared)."""


def choices(kinds: Iterable[str] | None = EXPLANATION_KINDS) -> list[tuple[str, str]]:
    """``(label, name)`` pairs for a UI control (by default the explanations, not the baselines)."""
    return [(METHODS[n].label, n) for n in names(kinds)]


def choices_of(methods: Iterable[str]) -> list[tuple[str, str]]:
    """:func:`choices` restricted to ``methods`` (e.g. those an analysis computed)."""
    wanted = {get(m).name for m in methods}
    return [c for c in choices() if c[1] in wanted]


def normalise(methods: Iterable[str]) -> tuple[str, ...]:
    """Known names in display order, without duplicates. Asking for any explanation brings the per-stage
    attention along (it comes from the same forward); asking for none means predictions only."""
    wanted = {get(m).name for m in methods}
    if wanted:
        wanted.add("attention")
    return tuple(n for n in METHODS if n in wanted)


def volume_label(key: VolumeKey) -> str:
    """How a volume is named to a person: ``stage 3`` for a per-stage method, else the method's label."""
    method = get(key.method)
    if method.per_stage and key.stage is not None:
        return f"stage {key.stage + 1}"
    return method.label


def attribute(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    target: int | None = None,
    *,
    progress: Callable[[float], None] | None = None,
    **options,
) -> np.ndarray:
    """The captum attribution ``method`` of ``target`` (default: the prediction) for one clip ``x``
    ``(1, 3, T, H, W)``: float32 ``(T, H, W)`` at the input's resolution (see :mod:`lens.explain.attribution`)."""
    m = get(method)
    if m.attribution is None:
        raise LensError(f"{method!r} is not a captum attribution; those are {names(['captum'])}")
    return A.run(m.attribution, model, x, target, progress=progress, **options)


def compute(
    model: nn.Module | None,
    x: torch.Tensor,
    output: ModelOutput | None,
    methods: Sequence[str],
    *,
    target: int,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    lock: contextlib.AbstractContextManager | None = None,
    progress: Callable[[float, str], None] | None = None,
    seed: int = 0,
    mask: np.ndarray | None = None,
    defer: bool = False,
) -> tuple[Volumes, dict[str, float]]:
    """Every volume of ``methods`` for one clip ``x`` (and its captured ``output``), and the seconds each
    method took (by label). ``options`` maps a method name to its keyword options; ``lock`` is held while a
    method that needs gradients runs; ``progress(fraction, what)`` is called as methods start and finish.

    ``defer=True``: methods that read every full attention matrix (:attr:`Method.needs_matrices`, i.e.
    rollout) or run autograd (:attr:`Method.needs_gradients`: token flow, gradient rollout, captum) are not
    run now; their keys are named as pending volumes, computed on first read, holding ``lock`` where they
    need gradients (their time is then reported to the result holding them, not in the returned timings)."""
    volumes = Volumes()
    timings: dict[str, float] = {}
    todo = [get(m) for m in methods]
    for i, m in enumerate(todo):

        def step(frac: float, i: int = i, label: str = m.label) -> None:
            if progress is not None:
                progress((i + frac) / len(todo), label)

        opts = (options or {}).get(m.name, {})
        if defer and output is not None and (m.needs_matrices or m.needs_gradients):  # later, on first read
            later = Inputs(model, x, output, target, opts, None, seed, mask)
            volumes.defer(m.label, pending_keys(m, output), _later(m, later, lock))
            continue
        inputs = Inputs(model, x, output, target, opts, step, seed, mask)
        step(0.0)
        t = time.perf_counter()
        with lock if (m.needs_gradients and lock is not None) else contextlib.nullcontext():
            volumes.update(m.compute(inputs))
        timings[m.label] = time.perf_counter() - t
    if progress is not None and todo:
        progress(1.0, "explanations done")
    return volumes, timings


def _later(
    method: Method, inputs: Inputs, lock: contextlib.AbstractContextManager | None
) -> Callable[[], dict[VolumeKey, Volume]]:
    """``method.compute(inputs)`` to run later (holding ``lock`` if it runs autograd on the shared model)."""

    def make() -> dict[VolumeKey, Volume]:
        with lock if (method.needs_gradients and lock is not None) else contextlib.nullcontext():
            return method.compute(inputs)

    return make


def pending_keys(method: Method, output: ModelOutput) -> tuple[VolumeKey, ...]:
    """The keys ``method`` will make for ``output``, known without computing it (one per stage or one)."""
    if method.per_stage:
        return tuple(VolumeKey(method.name, s) for s in viz.stages(output))
    return (VolumeKey(method.name),)
