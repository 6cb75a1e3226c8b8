"""Score models on fresh SynthMotion clips: accuracy, and whether their explanations point at the actor.

    python -m mvt evaluate --n 200 --seed 7 [--models hvt_t.synth ...] [--json] [--write PATH]

For every model (default: every registered ``*.synth`` model whose weights are here) and every clip of
``mvt.synth.generate(n, seed)``, these methods of the registry (:mod:`lens.methods`), computed exactly as the
app computes them, for the true class: ``rollout`` (onto view 0 for multiview models), ``grad_rollout``,
``token_flow`` (conservative relevance of the input tokens), ``last_stage`` (the ``attention`` method's last
stage), ``saliency`` and ``gradcam`` (captum), and the ``center`` and ``random`` baselines. Per method:

* **pointing game, pixel** (:func:`viz.faithfulness.pointing_game`): the maximum of the map painted onto the
  clip lies on the actor's mask; **token** (:func:`viz.pointing.token_pointing_game`): the cell of the map's
  maximum token touches the mask (pixel maps: the same as pixel); **ceiling** (token and pixel): the scores of
  the best possible map on the same token grid (each token's actor coverage), and **chance** (a random token).
  A method whose token pointing game is below ``center``'s is flagged (``loses_to_center``).
* **deletion / insertion AUC** on the first ``--faithfulness-n`` clips (:func:`lens.faithfulness.score_model`,
  fill :data:`viz.faithfulness.DEFAULT_SUBSTRATE`), with the ``oracle`` (the actor's mask) and the baselines.
  The metric checks itself per model: deleting the actor must hurt more than deleting random cells
  (``deletion_valid``: oracle deletion AUC < random's; likewise ``insertion_valid``). Where it does not, that
  model's numbers measure the perturbation, not the explanations: the table marks them and they are left out
  of any comparison.
* **flow correlation**: the Spearman rank correlation, per clip, of rollout and gradient rollout with token
  flow on the input tokens, and of last-stage attention with token flow on the tokens the last stage reads
  (``flow_correlation``; signed relevance, and ``flow_correlation_abs`` with its magnitude), averaged.
* **seconds** per clip of each method (and ``seconds_per_clip`` for all of them).

Sinks: each model is probed once (:func:`mvt.sinks.find_sinks` on 16 clips of another stream); ``sinks``
lists what was found, and ``sink_excluded`` gives the pointing games of ``last_stage`` and ``rollout`` with the
sink keys left out. ``--write PATH`` also saves the JSON (the app reads ``assets/evaluation.synth.json`` for
its sink captions and its "loses to the centre baseline" notes).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

import viz
from mvt import synth
from mvt.sinks import Sink, find_sinks, mark_sinks
from mvt.train import evaluate as accuracy_on
from mvt.train import to_input
from mvt.zoo import create_model, get_spec, list_models
from viz.faithfulness import DEFAULT_SUBSTRATE, aggregate
from viz.pointing import ceilings, token_chance, token_pointing_game

from . import methods as M
from .faithfulness import score_model
from .records import Volume, VolumeKey

EVALUATED = ("rollout", "grad_rollout", "token_flow", "attention", "saliency", "gradcam", "center", "random")
"""The registry's methods this evaluation scores (``attention``: only its last stage)."""
OPTIONS = {"rollout": {"view": 0}, "grad_rollout": {"view": 0}, "token_flow": {"stages": True}}
"""Rollouts onto the first view (MMViT: the full-resolution tower); token flow also per stage."""
METHODS = ("rollout", "grad_rollout", "token_flow", "last_stage", "saliency", "gradcam", "center", "random")
"""The rows of the table, in order (``last_stage``: the ``attention`` method's last stage)."""
FLOW_COMPARED = ("rollout", "grad_rollout", "last_stage")
SINK_PROBES, SINK_STREAM = 16, 1_000_003
"""Clips (and the SynthMotion stream offset from ``--seed``) the sink detector probes each model with."""


def row_name(key: VolumeKey, last_stage: int) -> str | None:
    """The table's name of a volume (``None``: not a row)."""
    if key.method == "attention":
        return "last_stage" if key.stage == last_stage else None
    return key.method if key.stage is None else None


def synth_models() -> list[str]:
    """Registered ``*.synth`` models (their weights ship in ``assets/weights``)."""
    return list_models("*.synth", available_only=True)


def probe_sinks(model: torch.nn.Module, seed: int) -> list[Sink]:
    """The model's sink keys, probed with :data:`SINK_PROBES` clips of stream ``seed + SINK_STREAM``."""
    spec = model.spec
    clips = synth.generate(SINK_PROBES, seed + SINK_STREAM, frames=spec.num_frames, size=spec.crop_size).clips
    return find_sinks(model, to_input(clips, spec))


def _explain(model, x, label: int, seed: int, sinks: list[Sink]):
    """(prediction, output, {row: Volume}, {row: seconds}, token flow per stage) of one clip."""
    with torch.inference_mode():
        out = mark_sinks(model.forward_with_attention(x), sinks)
    volumes, timings = M.compute(model, x, out, EVALUATED, target=label, options=OPTIONS, seed=seed)
    last = max(viz.stages(out))
    rows = {row_name(k, last): v for k, v in volumes.items()}
    rows.pop(None, None)
    flows = {k.stage: v for k, v in volumes.items() if k.method == "token_flow" and k.stage is not None}
    seconds = {n: timings[M.get("attention" if n == "last_stage" else n).label] for n in METHODS}
    return int(out.logits.argmax(-1)[0]), out, {m: rows[m] for m in METHODS}, seconds, flows


def _corr(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    if np.size(a) != np.size(b):
        return float("nan"), float("nan")
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    return viz.spearman(a, b), viz.spearman(a, np.abs(b))


def score_clips(
    model: torch.nn.Module,
    batch: synth.SynthBatch,
    *,
    seed: int = 0,
    faithfulness_n: int = 0,
    steps: int = 8,
    sinks: list[Sink] | None = None,
    substrate: str = DEFAULT_SUBSTRATE,
) -> dict:
    """Explain every clip of ``batch`` once and score the explanations (see the module docstring).

    Returns ``{"hits": {measure: {method: [per clip]}}, "preds", "faithfulness", "seconds": {method: total}}``
    where the measures are ``pixel``, ``token``, ``ceiling_token``, ``ceiling_pixel``, ``chance``, the flow
    correlations ``flow`` / ``flow_abs`` (methods of :data:`FLOW_COMPARED`) and ``sink_pixel`` /
    ``sink_token`` (``last_stage`` and ``rollout`` with sink keys left out)."""
    sinks = sinks or []
    measures = ("pixel", "token", "ceiling_token", "ceiling_pixel", "chance", "flow", "flow_abs")
    hits: dict[str, dict[str, list[float]]] = {k: {} for k in (*measures, "sink_pixel", "sink_token")}
    preds, per_clip, seconds = [], [], dict.fromkeys(METHODS, 0.0)
    for i, (clip, mask, label) in enumerate(zip(batch.clips, batch.masks, batch.labels)):
        x = to_input(clip[None], model.spec)
        pred, out, rows, secs, flows = _explain(model, x, int(label), seed * 100_003 + i, sinks)
        preds.append(pred)
        for n, s in secs.items():
            seconds[n] += s
        cache: dict = {}
        painted = {}
        for name, vol in rows.items():
            frames = viz.to_frames(vol.values, mask.shape, vol.footprint, dtype=np.float64)
            painted[name] = frames.astype(np.float32)
            key = (vol.footprint, tuple(vol.values.shape))
            if key not in cache:
                c = ceilings(mask, vol.footprint, vol.values.shape)
                cache[key] = (c["token"], c["pixel"], token_chance(mask, vol.footprint, vol.values.shape))
            row = {
                "pixel": viz.pointing_game(frames, mask),
                "token": token_pointing_game(vol.values, vol.footprint, mask),
                "ceiling_token": cache[key][0],
                "ceiling_pixel": cache[key][1],
                "chance": cache[key][2],
            }
            for measure, v in row.items():
                hits[measure].setdefault(name, []).append(v)
        flow_in = rows["token_flow"].values
        for name in FLOW_COMPARED:
            target = flows[max(flows)].values if name == "last_stage" else flow_in
            r, r_abs = _corr(rows[name].values, target)
            hits["flow"].setdefault(name, []).append(r)
            hits["flow_abs"].setdefault(name, []).append(r_abs)
        if any(m.sinks for m in out.attentions):
            last = max(viz.stages(out))
            for name, vol in (
                ("last_stage", Volume(*viz.stage_volume(out, last, exclude_sinks=True))),
                ("rollout", Volume(*viz.rollout_volume(out, view=0, exclude_sinks=True))),
            ):
                frames = viz.to_frames(vol.values, mask.shape, vol.footprint, dtype=np.float64)
                hits["sink_pixel"].setdefault(name, []).append(viz.pointing_game(frames, mask))
                hits["sink_token"].setdefault(name, []).append(
                    token_pointing_game(vol.values, vol.footprint, mask)
                )
        if i < faithfulness_n:
            painted["oracle"] = mask.astype(np.float32)
            with torch.inference_mode():
                per_clip.append(
                    score_model(model, x, painted, target=int(label), steps=steps, substrate=substrate)
                )
    faith = {}
    if per_clip:
        agg = aggregate(per_clip)
        faith = {"deletion_auc": agg["deletion_auc"], "insertion_auc": agg["insertion_auc"]}
    return {
        "hits": hits,
        "preds": np.asarray(preds, dtype=np.int64),
        "faithfulness": faith,
        "seconds": seconds,
    }


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def summarise(scores: dict, n: int) -> dict:
    """The JSON numbers of one model from :func:`score_clips`'s per-clip results."""
    h = {k: {m: _nanmean(v) for m, v in per.items()} for k, per in scores["hits"].items()}
    r: dict = {
        "pointing_game": h["pixel"],
        "token_pointing_game": h["token"],
        "ceiling": {m: {"token": h["ceiling_token"][m], "pixel": h["ceiling_pixel"][m]} for m in METHODS},
        "chance": h["chance"],
        "flow_correlation": h["flow"],
        "flow_correlation_abs": h["flow_abs"],
        "seconds": {m: s / max(1, n) for m, s in scores["seconds"].items()},
        "seconds_per_clip": sum(scores["seconds"].values()) / max(1, n),
    }
    if h["sink_pixel"]:
        r["sink_excluded"] = {
            m: {"pixel": h["sink_pixel"][m], "token": h["sink_token"][m]} for m in h["sink_pixel"]
        }
    faith = scores["faithfulness"]
    r.update(faith)
    if faith:
        d, i = faith["deletion_auc"], faith["insertion_auc"]
        r["deletion_gap"] = d["random"] - d["oracle"]
        r["deletion_valid"] = bool(d["oracle"] < d["random"])
        r["insertion_valid"] = bool(i["oracle"] > i["random"])
    centre = h["token"]["center"]
    r["loses_to_center"] = {m: h["token"][m] < centre for m in METHODS if m not in ("center", "random")}
    return r


def evaluate_models(
    names: Sequence[str] | None = None,
    *,
    n: int = 200,
    seed: int = 7,
    faithfulness_n: int = 20,
    steps: int = 8,
    substrate: str = DEFAULT_SUBSTRATE,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """``{model: {...}}`` as the module docstring describes (plus ``accuracy``, ``shuffled_accuracy``, ``n``,
    ``seed``, ``faithfulness_n``, ``substrate``, ``sinks``)."""
    names = list(names) if names else synth_models()
    results: dict[str, dict] = {}
    for name in names:
        spec = get_spec(name)
        if spec.label_set != "synthmotion":
            raise ValueError(f"{name} predicts {spec.label_set} classes, not SynthMotion's")
        model = create_model(name)
        t0 = time.perf_counter()
        sinks = probe_sinks(model, seed) if spec.trained else []
        probe_s = time.perf_counter() - t0
        batch = synth.generate(n, seed, frames=spec.num_frames, size=spec.crop_size)
        k = min(faithfulness_n, n)
        scores = score_clips(
            model, batch, seed=seed, faithfulness_n=k, steps=steps, sinks=sinks, substrate=substrate
        )
        preds = scores["preds"]
        results[name] = {
            "accuracy": float((preds == batch.labels).mean()) if n else float("nan"),
            "shuffled_accuracy": accuracy_on(model, spec, n=n, seed=seed, shuffle_frames=True),
            **summarise(scores, n),
            "sinks": [asdict(s) for s in sinks],
            "sink_probe_seconds": probe_s,
            "faithfulness_n": k,
            "substrate": substrate,
            "n": n,
            "seed": seed,
        }
        if log:
            log(f"{name}: top-1 {results[name]['accuracy']:.3f}")
    return results


def _f(v, fmt: str = ".3f") -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _sink_label(s: dict) -> str:
    view = "" if s.get("view") is None else f" (view {s['view']})"
    return f"block {s['block']}{view} key {tuple(s['cell'] or ())}"


def format_table(results: dict[str, dict]) -> str:
    """A plain-text table: a header line per model (accuracy, whether deletion measures it, sinks), then one
    row per method: pointing game pixel / token / token ceiling, deletion and insertion AUC, flow ρ, s/clip
    and flags (``<center``: token pointing game below the centre baseline)."""
    head = [
        "model / method",
        "PG pixel",
        "PG token",
        "ceiling",
        "chance",
        "del AUC",
        "ins AUC",
        "flow ρ",
        "s/clip",
        "",
    ]
    rows = [head]
    for name, r in results.items():
        valid = r.get("deletion_valid")
        check = "" if valid is None else ("deletion valid" if valid else "DELETION INVALID: oracle ≥ random")
        gap = f" (random − oracle {r['deletion_gap']:+.3f})" if "deletion_gap" in r else ""
        sinks = ", ".join(_sink_label(s) for s in r.get("sinks", []))
        rows.append(
            [
                f"{name}  top-1 {r['accuracy']:.3f}  shuffled {r['shuffled_accuracy']:.3f}  {check}{gap}"
                + (f"  sinks: {sinks}" if sinks else ""),
                *[""] * (len(head) - 1),
            ]
        )
        d, ins = r.get("deletion_auc", {}), r.get("insertion_auc", {})
        for m in [*METHODS, *(["oracle"] if "oracle" in d else [])]:
            flag = "<center" if r.get("loses_to_center", {}).get(m) else ""
            mark = "" if valid is not False else "*"
            rows.append(
                [
                    f"  {m}",
                    _f(r["pointing_game"].get(m)),
                    _f(r["token_pointing_game"].get(m)),
                    _f(r["ceiling"].get(m, {}).get("token")),
                    _f(r["chance"].get(m)),
                    _f(d.get(m)) + (mark if m in d else ""),
                    _f(ins.get(m)),
                    _f(r["flow_correlation"].get(m), "+.2f"),
                    _f(r["seconds"].get(m), ".3f"),
                    flag,
                ]
            )
    widths = [
        max(len(row[i]) for row in rows if row[1:] != [""] * (len(head) - 1) or i) for i in range(len(head))
    ]
    lines = []
    for row in rows:
        if row[1:] == [""] * (len(head) - 1) and row is not head:
            lines.append(row[0])
        else:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(r.get("deletion_valid") is False for r in results.values()):
        lines.append(
            "* deletion does not separate the actor from random cells on this model: not a measure of the explanations"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mvt evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=None, help="model names (default: every *.synth model)")
    p.add_argument("--n", type=int, default=200, help="number of fresh clips")
    p.add_argument("--seed", type=int, default=7, help="SynthMotion stream of the clips")
    p.add_argument("--faithfulness-n", type=int, default=20, help="clips scored by deletion/insertion")
    p.add_argument("--steps", type=int, default=8, help="points per deletion/insertion curve")
    p.add_argument("--substrate", default=DEFAULT_SUBSTRATE, help="fill of deleted cells (viz.perturb)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--write", type=Path, default=None, help="also write the JSON to this file")
    args = p.parse_args(argv)
    names = args.models or synth_models()
    if not names:
        print(
            "no SynthMotion models are registered (train one: python -m mvt.train --model hvt_t --out assets/weights)"
        )
        return 1
    results = evaluate_models(
        names,
        n=args.n,
        seed=args.seed,
        faithfulness_n=args.faithfulness_n,
        steps=args.steps,
        substrate=args.substrate,
    )
    text = json.dumps(results, indent=2)
    if args.write is not None:
        args.write.write_text(text + "\n")
    print(text if args.json else format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
