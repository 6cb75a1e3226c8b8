"""What a panel says beside its overlay: sinks named, and methods that lose to the centre baseline.

Both come from the shipped evaluation of the SynthMotion models, ``mvt/assets/evaluation.synth.json`` (written by
``python -m mvt evaluate --n 200 --seed 7 --write mvt/assets/evaluation.synth.json``):

* its ``sinks`` (:mod:`mvt.sinks`) are marked on every output of that model (:func:`mark`), so a stage map
  whose peak is a sink gets a caption (:func:`sink_caption`) and ``exclude_sinks`` can leave it out;
* its ``loses_to_center`` flags say which methods point at the actor less often than a centred Gaussian
  (token pointing game, 200 clips); a panel showing such a method says so, with the numbers.

Models the file does not cover (Kinetics weights, untrained ones) get no such notes: nothing was measured.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

import viz
from mvt import assets
from mvt.outputs import AttentionMap, ModelOutput
from mvt.sinks import Sink, mark_sinks

from . import methods as M
from .records import ModelResult, VolumeKey

log = logging.getLogger("mvt-lens")

EVALUATION = assets.EVALUATION
"""The shipped evaluation the notes come from (package data: ``mvt/assets/evaluation.synth.json``)."""


@lru_cache(maxsize=4)
def _read(path: str, mtime: float) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        log.warning("could not read %s (%s): no sink captions or baseline notes", path, e)
        return {}


def evaluation(path: Path | None = None) -> dict:
    """The shipped evaluation (``{model: {...}}``), or ``{}`` if there is none."""
    p = Path(path or EVALUATION)
    if not p.is_file():
        return {}
    return _read(str(p), p.stat().st_mtime)


def sinks_of(name: str, path: Path | None = None) -> list[Sink]:
    """The sinks measured for model ``name`` (empty if it was not probed)."""
    rows = evaluation(path).get(name, {}).get("sinks", [])
    return [Sink(**{**r, "cell": tuple(r["cell"]) if r.get("cell") is not None else None}) for r in rows]


def mark(output: ModelOutput | None, name: str, path: Path | None = None) -> None:
    """Mark ``output``'s maps with the sinks measured for ``name`` (in place)."""
    if output is not None:
        mark_sinks(output, sinks_of(name, path))


def _where(cell: tuple[int, int, int], grid: tuple[int, int, int]) -> str:
    """A position in words: ``the bottom-right corner of the last time step``."""
    t, h, w = cell
    nt, nh, nw = grid
    when = "the first time step" if t == 0 else "the last time step" if t == nt - 1 else f"time step {t + 1}"
    if nh == 1 and nw == 1:
        return when
    rows = "top" if h == 0 else "bottom" if h == nh - 1 else ""
    cols = "left" if w == 0 else "right" if w == nw - 1 else ""
    if rows and cols:
        return f"the {rows}-{cols} corner of {when}"
    if rows or cols:
        return f"the {rows or cols} edge of {when}"
    return f"row {h + 1}, column {w + 1} of {when}"


def sink_caption(amap: AttentionMap, name: str, path: Path | None = None) -> str | None:
    """A sentence about ``amap``'s sink keys (``None`` if it has none)."""
    if not amap.sinks:
        return None
    found = [s for s in sinks_of(name, path) if s.block == amap.block and s.view == amap.view]
    parts = []
    for s in found:
        if s.key not in amap.sinks:
            continue
        where = _where(s.cell, amap.k_grid) if s.cell is not None else f"key {s.key}"
        what = (
            "the zero-padded corner of the key pooling"
            if s.padded and "corner" in where
            else "a fixed position"
        )
        kind = "a padding sink" if s.padded else "a position sink"
        parts.append(
            f"This peak sits at {where} ({what}) on {s.rate:.0%} of clips, on a flat grey clip and after flips "
            f"and time reversal, taking {s.share / s.uniform:.1f}× a uniform share of the attention: {kind}, "
            "not the content."
        )
    return " ".join(parts) or None


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
        caption = sink_caption(viz.stage_map(result.output, key.stage), result.name, path)
        if caption:
            out.append(caption)
    if result.output is not None and key.method in ("rollout", "grad_rollout"):
        sunk = [m for m in result.output.attentions if m.sinks]
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
