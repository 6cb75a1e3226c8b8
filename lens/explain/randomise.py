"""The model-randomisation sanity check (Adebayo et al., *Sanity Checks for Saliency Maps*, NeurIPS 2018).

An explanation that follows the model must change when the model's weights do. :func:`randomised` returns a
copy of a model with some of its weights re-drawn from the family's own initialiser (the architecture's
builder under a fixed seed: with seed 0 the whole-model copy is exactly ``<arch>.untrained``), so the same
methods can be scored on it and the scores compared (``python -m mvt evaluate``, ``analyse-dataset
--randomise``). :data:`LEVELS`:

* ``top_block`` — cascading from the top, first step: the classifier, the final norm and the last block;
* ``top_half`` — the cascade half-way down: the top half of the blocks and everything after them;
* ``whole`` — every weight, embeddings included (Adebayo's "full randomisation").

Why these three: each level costs one more pass of every method (and of deletion / insertion where computed)
per clip; the top block tests whether the map depends on where the class is read out, the half whether the
mid-level features matter, and the whole model is the test the paper's headline figure is about. A method
scoring the same on the randomised model shows the input (where the actor is easy to see), not the model.

"Blocks" are the elements of the model's innermost ``nn.ModuleList``s (transformer blocks, MMViT's cross-view
blocks); "top" is execution order: the order in which a forward pass first reaches each parameter's module,
found once per model by a forward pass with pre-hooks (a measurement of the module graph, not a capture of
attention).
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Iterable

import torch
from torch import nn

from mvt.zoo import get_arch

from ..core.request import LensError

LEVELS = ("top_block", "top_half", "whole")
"""The randomisation levels, from the least to the most randomised."""
LEVEL_TEXT = {
    "top_block": "classifier and last block randomised",
    "top_half": "top half of the blocks randomised",
    "whole": "all weights randomised",
}

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _leaf_lists(model: nn.Module) -> set[str]:
    """Paths of the ``nn.ModuleList``s that hold no further ``ModuleList`` (their elements are blocks)."""
    lists = {n for n, m in model.named_modules() if isinstance(m, nn.ModuleList)}
    return {n for n in lists if not any(o != n and o.startswith(f"{n}.") for o in lists)}


def _unit(owner: str, leaves: set[str]) -> tuple[str, bool]:
    """The unit a parameter of module ``owner`` belongs to, and whether that unit is a block: the element of
    a leaf ``ModuleList`` it lies in, else its own module."""
    parts = owner.split(".") if owner else []
    for i in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:i]) in leaves and parts[i].isdigit():
            return ".".join(parts[: i + 1]), True
    return owner, False


Unit = tuple[str, float, bool, list[str]]
"""``(name, when first reached, is a block, parameter names)``."""


def execution_order(model: nn.Module, x: torch.Tensor) -> list[Unit]:
    """The model's parameters grouped into units, in the order a forward pass on ``x`` first reaches them.
    A unit whose module is never called directly (its parameters used through a method) takes the time of
    its first called descendant, else of its nearest called ancestor; units reached at the same time (the views of one cross-view block) are
    one step of the cascade."""
    order: dict[str, int] = {}

    def seen(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            order.setdefault(name, len(order))

        return hook

    handles = [m.register_forward_pre_hook(seen(name)) for name, m in model.named_modules()]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    leaves = _leaf_lists(model)
    units: dict[str, tuple[bool, list[str]]] = {}
    first: dict[str, float] = {}
    for pname, _ in model.named_parameters():
        owner = pname.rpartition(".")[0]
        unit, block = _unit(owner, leaves)
        units.setdefault(unit, (block, []))[1].append(pname)
        first[unit] = min(first.get(unit, math.inf), _called(owner, order))
    ranked = sorted(units, key=lambda u: (first[u], u))
    return [(u, first[u], units[u][0], units[u][1]) for u in ranked]


def _called(owner: str, order: dict[str, int]) -> float:
    """When ``owner`` was first called; if never (a container whose forward is not its ``__call__``), its
    first called descendant; else its nearest called ancestor."""
    if owner in order:
        return order[owner]
    below = [t for name, t in order.items() if name.startswith(f"{owner}.")] if owner else []
    if below:
        return min(below)
    parts = owner.split(".") if owner else []
    for i in range(len(parts), -1, -1):
        path = ".".join(parts[:i])
        if path in order:
            return order[path]
    return math.inf


def chosen(units: list[Unit], level: str) -> list[str]:
    """The parameter names ``level`` re-draws, given :func:`execution_order`'s units."""
    if level not in LEVELS:
        raise LensError(f"unknown randomisation level {level!r}; use one of {', '.join(LEVELS)}")
    if level == "whole":
        return [p for *_, params in units for p in params]
    steps = sorted({when for _, when, block, _ in units if block})
    if not steps:
        raise LensError("this model has no blocks (no nn.ModuleList) to randomise from the top")
    k = 1 if level == "top_block" else math.ceil(len(steps) / 2)
    return [p for _, when, _, params in units if when >= steps[-k] for p in params]


def _fresh(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The family's own initialisation of ``model``'s architecture under ``seed`` (a state dict)."""
    spec = model.spec
    classes = int(spec.num_classes or len(spec.labels))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        twin = get_arch(spec.arch).builder(num_classes=classes)
    return twin.state_dict()


def randomised(model: nn.Module, level: str, x: torch.Tensor, *, seed: int = 0) -> nn.Module:
    """A copy of ``model`` (eval mode, same device, ``spec`` kept) with the weights of ``level`` re-drawn
    from the architecture's initialiser under ``seed``; buffers are kept. Built once per model, level and
    seed (``x``: an input the model accepts, for :func:`execution_order`)."""
    cache = _CACHE.setdefault(model, {})
    if (level, seed) in cache:
        return cache[(level, seed)]
    names = chosen(execution_order(model, x), level)
    fresh = _fresh(model, seed)
    own = dict(model.named_parameters())
    wrong = [n for n in names if n not in fresh or fresh[n].shape != own[n].shape]
    if wrong:
        raise LensError(f"{model.spec.name}: cannot re-draw {wrong[:3]}: its builder makes other shapes")
    twin = copy.deepcopy(model).eval()
    params = dict(twin.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n].copy_(fresh[n].to(params[n].device, params[n].dtype))
    twin.spec = model.spec
    cache[(level, seed)] = twin
    return twin


def changed(model: nn.Module, other: nn.Module) -> list[str]:
    """Names of the parameters that differ between two copies of one architecture (for tests and notes)."""
    theirs = dict(other.named_parameters())
    return [n for n, p in model.named_parameters() if not torch.equal(p, theirs[n])]


def levels(names: Iterable[str]) -> tuple[str, ...]:
    """Levels as asked (``"none"``: none; ``"all"``: every level), checked, in :data:`LEVELS` order."""
    wanted = set()
    for n in names:
        if n == "all":
            wanted |= set(LEVELS)
        elif n != "none":
            chosen([("b", 0.0, True, [])], n)  # raises for an unknown level
            wanted.add(n)
    return tuple(lv for lv in LEVELS if lv in wanted)
