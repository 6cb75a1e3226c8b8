"""Which explanation of a model has the best evidence that it follows the model, and how to say so.

The shipped evaluation (``assets/evaluation.synth.json``, :func:`lens.explain.sinks.evaluation`; written by
``python -m mvt evaluate``) scores every method of every SynthMotion model against the actor's mask, and
again with the model's weights randomised (:mod:`lens.explain.randomise`). The pointing game alone is
confounded by how visible the actor is (a random network's token flow already points at it on most clips),
so the evidence that a method follows the *model* is its gap over the randomised model: :func:`lead` picks,
per model, the method with the largest token pointing-game gap (whole model randomised) among those that
also beat the random baseline at deletion and the centre baseline at pointing, and :meth:`Evidence.line`
says how it scored. A model the evaluation does not cover (Kinetics weights, untrained ones) is read from
its family's evaluated model and says so ("not measured for this model"). A method whose randomised score
is within the trained one's interval :meth:`Evidence.input_line` captions as showing the input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import mvt

from . import methods as M
from .sinks import evaluation

FAITHFUL = "faithful"
"""The Show choice that shows each model's :func:`lead` method."""
FAITHFUL_LABEL = "Most faithful for each model (measured)"
BASELINES = ("center", "random", "oracle")
TWINS = {
    "vivit_b_16x2": "vivit_t1.synth",
    "vivit_b_16x2_fe": "vivit_t2.synth",
    "vivit_b_16x2_fsa": "vivit_t3.synth",
    "vivit_b_16x2_fdp": "vivit_t4.synth",
}
"""Kinetics-size architectures whose evaluated SynthMotion model is a particular variant of the family (the
ViViT factorisations); other architectures are read from the family's evaluated model."""


def measured_as(name: str, path: Path | None = None) -> str | None:
    """The evaluated model whose numbers stand for ``name``: itself, else the same architecture's evaluated
    model, else its family's (:data:`TWINS` for ViViT's variants); ``None`` when the family is not covered."""
    table = evaluation(path)
    if name in table:
        return name
    try:
        spec = mvt.get_spec(name)
    except KeyError:
        return None
    same = sorted(m for m in table if m.split(".")[0] == spec.arch)
    if same:
        return same[0]
    if TWINS.get(spec.arch) in table:
        return TWINS[spec.arch]
    family = sorted(m for m in table if _family(m) == spec.family)
    return family[0] if family else None


def _family(name: str) -> str | None:
    try:
        return mvt.get_spec(name).family
    except KeyError:
        return None


def method_of(row: str) -> str:
    """The registry method of an evaluation row (``last_stage`` is the ``attention`` method's last stage)."""
    return "attention" if row == "last_stage" else row


def row_of(method: str) -> str:
    return "last_stage" if M.get(method).per_stage else M.get(method).name


def _num(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


@dataclass(frozen=True)
class Evidence:
    """What the evaluation says about one method of one model (read from ``measured``'s numbers)."""

    model: str
    measured: str
    method: str
    trained: float
    """Token pointing game (share of SynthMotion clips whose top token touches the actor)."""
    randomised: float | None
    """The same with every weight randomised (``None``: not measured)."""
    centre: float
    n: int
    deletion_vs_random: float | None
    """Random baseline's deletion AUC − the method's (positive: deleting what it points at hurts more)."""
    shows_input: bool
    loses_to_center: bool

    @property
    def same_model(self) -> bool:
        return self.model == self.measured

    @property
    def gap(self) -> float | None:
        return None if self.randomised is None else self.trained - self.randomised

    @property
    def label(self) -> str:
        return M.get(self.method).label.split(" (")[0]

    def line(self) -> str:
        """One sentence: how this method scored (trained vs random weights vs the centre baseline)."""
        scored = f"points at the actor on {self.trained:.0%} of SynthMotion clips"
        if self.randomised is not None:
            scored += f", {self.randomised:.0%} with random weights"
        scored += f"; centre baseline {self.centre:.0%} (n = {self.n})"
        if self.same_model:
            return f"{self.label} {scored}."
        return f"Not measured for this model; on {self.measured} (same family) {self.label.lower()} {scored}."

    def input_line(self) -> str | None:
        """A caption when the method scores the same with random weights: it shows the input, not the model."""
        if not self.shows_input or self.randomised is None:
            return None
        where = "" if self.same_model else f" (measured on {self.measured})"
        return (
            f"With random weights {self.label.lower()} points at the actor as often ({self.randomised:.0%} vs "
            f"{self.trained:.0%}){where}: it shows the input, not the model."
        )


def evidence(name: str, method: str, path: Path | None = None) -> Evidence | None:
    """What the evaluation says about ``method`` for model ``name`` (``None``: not evaluated)."""
    measured = measured_as(name, path)
    if measured is None:
        return None
    r, row = evaluation(path)[measured], row_of(method)
    trained = _num((r.get("token_pointing_game") or {}).get(row))
    if trained is None:
        return None
    whole = (r.get("randomised") or {}).get("whole") or {}
    deletion = r.get("deletion_auc") or {}
    valid = r.get("deletion_valid") is not False and row in deletion and "random" in deletion
    return Evidence(
        model=name,
        measured=measured,
        method=M.get(method).name,
        trained=trained,
        randomised=_num((whole.get("token_pointing_game") or {}).get(row)),
        centre=float(r["token_pointing_game"].get("center", math.nan)),
        n=int(r.get("n", 0)),
        deletion_vs_random=float(deletion["random"] - deletion[row]) if valid else None,
        shows_input=bool((r.get("shows_input") or {}).get(row, False)),
        loses_to_center=bool((r.get("loses_to_center") or {}).get(row, False)),
    )


def _rank(e: Evidence) -> tuple:
    """Best first: passes the checks, then the largest gap over the randomised model, then the trained score."""
    passes = not e.shows_input and not e.loses_to_center and (e.deletion_vs_random or 0.0) >= 0.0
    return (passes, e.gap if e.gap is not None else -math.inf, e.trained)


def lead(name: str, path: Path | None = None) -> Evidence | None:
    """The method with the best evidence that it follows model ``name`` (see the module docstring); ``None``
    when the evaluation covers neither the model nor its family."""
    measured = measured_as(name, path)
    if measured is None:
        return None
    rows = [m for m in evaluation(path)[measured].get("token_pointing_game", {}) if m not in BASELINES]
    found = [e for e in (evidence(name, method_of(m), path) for m in rows if method_of(m) in M.METHODS) if e]
    return max(found, key=_rank) if found else None


def lead_method(name: str, path: Path | None = None) -> str:
    """:func:`lead`'s method, or ``attention`` (the fast view) when nothing was measured for the family."""
    found = lead(name, path)
    return found.method if found is not None else "attention"
