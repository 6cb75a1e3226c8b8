"""Sink keys (:mod:`mvt.sinks`): probed on a model, read from the shipped evaluation, marked, put in words.

A sink is a key position that takes attention whatever the clip shows. :func:`model_sinks` probes a trained
model for them (``python -m mvt evaluate`` and ``analyse-dataset --sinks``); the shipped evaluation of the
SynthMotion models, ``mvt/assets/evaluation.synth.json`` (package data, written by ``python -m mvt evaluate --n
200 --seed 7 --write mvt/assets/evaluation.synth.json``, :func:`evaluation`), records what was found, so every output of
those models is marked (:func:`mark`) and a stage map whose peak is a sink gets a sentence
(:func:`sink_caption`; ``exclude_sinks`` can leave it out). Models the file does not cover (Kinetics
weights, untrained ones) get no such notes: nothing was measured.
"""

from __future__ import annotations

import json
import logging
import weakref
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from torch import nn

from mvt import assets, synth
from mvt.outputs import AttentionMap, ModelOutput
from mvt.sinks import Sink, find_sinks, mark_sinks

log = logging.getLogger("mvt-lens")

SINK_PROBES, SINK_STREAM = 16, 1_000_003
"""Clips (and the SynthMotion stream) the sink detector probes each trained model with, once per process."""

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


def sink_caption(output: ModelOutput, amap: AttentionMap, name: str, path: Path | None = None) -> str | None:
    """A sentence about the sink keys of ``output``'s map ``amap`` (``None`` if it has none)."""
    sinks = output.sinks_of(amap)
    if not sinks:
        return None
    found = [s for s in sinks_of(name, path) if s.block == amap.block and s.view == amap.view]
    parts = []
    for s in found:
        if s.key not in sinks:
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


# -- probing a model -----------------------------------------------------------------------------------------


_SINKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_sinks(model: nn.Module, seed: int = SINK_STREAM) -> list[Sink]:
    """The sink keys of a trained model (:func:`mvt.sinks.find_sinks` on :data:`SINK_PROBES` SynthMotion
    clips of stream ``seed``); probed once per model and seed in a process, and deterministic, so every
    engine and worker marks the same keys. Untrained models get none (nothing was learned)."""
    spec = model.spec
    if not spec.trained:
        return []
    cache = _SINKS.setdefault(model, {})
    if seed not in cache:
        from mvt.train import to_input

        clips = synth.generate(SINK_PROBES, seed, frames=spec.num_frames, size=spec.crop_size).clips
        device = next(model.parameters()).device
        cache[seed] = find_sinks(model, to_input(clips, spec).to(device))
    return cache[seed]


def sink_record(s: Sink) -> dict[str, Any]:
    """A sink as the ``sinks`` column holds it (and ``lens.explain.sinks`` reads it back)."""
    d = asdict(s)
    d["cell"] = list(d["cell"]) if d["cell"] is not None else None
    return d
