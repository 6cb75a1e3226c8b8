"""The sentences under a panel's picture: what it is, and what the shipped evaluation says about it.

:data:`CAPTIONERS` lists every function that may caption a panel; :func:`captions` asks each. The first says
how the method shown scored against the model with random weights (:mod:`lens.explain.evidence`). The evaluation's
notes (:func:`notes`) name a sink key where a stage map peaks on one (:mod:`lens.explain.sinks`) and say when a
method points at the actor less often than a centred blob (its ``loses_to_center`` flags: token pointing game
on SynthMotion).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import viz

from ..core.records import ModelResult, Volume, VolumeKey
from ..core.request import LensError
from ..explain import methods as M
from ..explain.evidence import evidence, lead
from ..explain.sinks import evaluation, sink_caption
from .display import Display


def _row(key: VolumeKey, result: ModelResult) -> str | None:
    """The evaluation's row for a volume (the ``attention`` method is scored at its last stage only)."""
    if key.method == "attention":
        last = max(viz.stages(result.output)) if result.output is not None else None
        return "last_stage" if key.stage == last else None
    return key.method


def notes(result: ModelResult, key: VolumeKey, path: Path | None = None) -> list[str]:
    """What the panel showing ``key`` of ``result`` should say (sinks, a lost baseline), in order."""
    out: list[str] = []
    if result.output is not None and key.method == "attention" and key.stage is not None:
        caption = sink_caption(result.output, viz.stage_map(result.output, key.stage), result.name, path)
        if caption:
            out.append(caption)
    if result.output is not None and key.method in ("rollout", "grad_rollout"):
        sunk = [k for k in result.output.sinks.values() if k]
        if sunk:
            out.append(
                f"{len(sunk)} of this model's maps have a sink key (a fixed position that takes attention "
                "whatever the clip shows); the rollout passes through them (exclude_sinks leaves them out)."
            )
    row = _row(key, result)
    r = evaluation(path).get(result.name, {})
    if row and r.get("loses_to_center", {}).get(row):
        mine, centre = r["token_pointing_game"][row], r["token_pointing_game"]["center"]
        what = "the last stage's attention" if row == "last_stage" else M.get(key.method).label.lower()
        out.append(
            f"On SynthMotion ({r['n']} clips) {what} points at the actor less often "
            f"than a centred blob: token pointing game {mine:.2f} vs the centre baseline's {centre:.2f}."
        )
    return out


Captioner = Callable[[ModelResult, Display, VolumeKey, Volume], "str | None"]
"""Says something about one panel's picture (or ``None``); see :data:`CAPTIONERS`."""


def describe(result: ModelResult, display: Display, key: VolumeKey, volume: Volume) -> str | None:
    """What the picture is: which query, which keys, which heads."""
    method = M.get(key.method)
    if key.method != "attention" or result.output is None or key.stage is None:
        return f"{method.label}."
    amap = viz.stage_map(result.output, key.stage)
    heads = {"mean": f"mean of {amap.heads} heads", "max": f"max over {amap.heads} heads"}.get(
        str(display.head),
        f"head {int(display.head) + 1} of {amap.heads}" if isinstance(display.head, int) else "",
    )
    if amap.cls_row is not None and amap.kind != "cross":
        return f"Stage {key.stage + 1}: where the CLS token looks ({heads})."
    if amap.num_prefix == 0:
        return f"Stage {key.stage + 1}: how much attention each token receives (this model has no CLS token)."
    return f"Stage {key.stage + 1}: {amap.kind} attention, each group's CLS row laid onto the clip."


def evaluated(result: ModelResult, display: Display, key: VolumeKey, volume: Volume) -> str | None:
    """What the shipped evaluation says about this picture (:func:`notes`): a sink key named where the map
    peaks on one, and a method that points at the actor less often than the centre baseline."""
    return " ".join(notes(result, key)) or None


def evidenced(result: ModelResult, display: Display, key: VolumeKey, volume: Volume) -> str | None:
    """How the method shown scored in the shipped evaluation (:mod:`lens.explain.evidence`): the token pointing
    game trained, with random weights and the centre baseline's, for this model or its family's evaluated
    model; a method that scores as well with random weights is said to show the input, not the model."""
    if _row(key, result) is None:  # an earlier stage's attention: the evaluation scores the last one
        return None
    e = evidence(result.name, key.method)
    first = lead(result.name)
    if e is None:
        if first is None and key.method == "attention":
            return "Not measured for this model: no model of its family is in the evaluation (attention is shown)."
        return None
    lines = [
        ("Most faithful measured here: " if first is not None and first.method == e.method else "") + e.line()
    ]
    return " ".join([*lines, *([e.input_line()] if e.input_line() else [])])


CAPTIONERS: list[Captioner] = [evidenced, describe, evaluated]
"""Every function that may caption a panel, in order. Add one here (e.g. a note that a map's mass sits on a
padding sink) and the app shows its sentence under the picture: no app change needed."""


def captions(result: ModelResult, display: Display, key: VolumeKey, volume: Volume) -> tuple[str, ...]:
    """The sentences :data:`CAPTIONERS` give for one panel (a captioner that fails is skipped)."""
    out = []
    for fn in CAPTIONERS:
        try:
            text = fn(result, display, key, volume)
        except (ValueError, KeyError, IndexError, LensError):
            continue
        if text:
            out.append(str(text))
    return tuple(out)
