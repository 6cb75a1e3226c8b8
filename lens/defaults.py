"""Which models a comparison starts with, and how models are offered: policy as data plus one function.

The default comparison is one model per family (families in :data:`FAMILY_ORDER` first, then any other
registered family by name), each the first available tag of :data:`TAG_PREFERENCE`; a family with none of
those falls back to its small untrained SynthMotion-size config (fast, and labelled untrained). Nothing
outside the registry names a family: a new family is picked up here by registering it.
"""

from __future__ import annotations

import mvt

from .service import MAX_MODELS

FAMILY_ORDER = ("mvit", "mmvit", "vivit", "hvt")
"""The order families appear in (others follow, by name)."""

TAG_PREFERENCE = ("synth", "k400", "k400init", "in1k")
"""Trained weights first, the SynthMotion demo weights before the large public checkpoints (they run in
well under a second on a CPU and were trained on the examples' kind of clip)."""

FALLBACK = ("untrained", "synthmotion")
"""(tag, label set) of the fallback: the untrained small config."""


def _families(names: list[str]) -> list[str]:
    found = {mvt.get_spec(n).family for n in names}
    known = [f for f in FAMILY_ORDER if f in found]
    return known + sorted(found - set(known))


def default_models(available: list[str] | None = None, max_models: int = MAX_MODELS) -> list[str]:
    """One model per family from ``available`` (default: every model whose weights load offline)."""
    names = mvt.list_models(available_only=True) if available is None else list(available)
    picked: list[str] = []
    for family in _families(names):
        fam = [n for n in names if mvt.get_spec(n).family == family]
        hit = next((n for tag in TAG_PREFERENCE for n in fam if n.endswith("." + tag)), None)
        if hit is None:
            tag, label_set = FALLBACK
            hit = next(
                (n for n in fam if n.endswith("." + tag) and mvt.get_spec(n).label_set == label_set), None
            )
        if hit is not None:
            picked.append(hit)
    return picked[:max_models]


def model_label(name: str) -> str:
    """How a model is offered: ``name — what its weights are``."""
    return f"{name} — {mvt.get_spec(name).description}"


def model_choices() -> list[tuple[str, str]]:
    """``(label, name)`` of every model whose weights load without network access (shipped, cached or
    untrained)."""
    return [(model_label(n), n) for n in mvt.list_models(available_only=True)]
