"""Score models on fresh SynthMotion clips: accuracy, and whether their explanations point at the actor.

    python -m mvt evaluate --n 200 --seed 7 [--models hvt_t.synth ...] [--json] [--write PATH]

For every model (default: every registered ``*.synth`` model whose weights are here) and every clip of
``mvt.synth.generate(n, seed)``, these methods of the registry (:mod:`lens.explain.methods`), computed exactly as the
app computes them, for the true class: ``rollout`` (onto view 0 for multiview models), ``grad_rollout``,
``token_flow`` (conservative relevance of the input tokens), ``last_stage`` (the ``attention`` method's last
stage), ``saliency`` and ``gradcam`` (captum), and the ``center`` and ``random`` baselines. Per method:

* **pointing game, pixel** (:func:`viz.faithfulness.pointing_game`): the maximum of the map painted onto the
  clip lies on the actor's mask; **token** (:func:`viz.pointing.token_pointing_game`): the cell of the map's
  maximum token touches the mask (pixel maps: the same as pixel); **ceiling** (token and pixel): the scores of
  the best possible map on the same token grid (each token's actor coverage), and **chance** (a random token).
  A method whose token pointing game is below ``center``'s is flagged (``loses_to_center``).
* **deletion / insertion AUC** on the first ``--faithfulness-n`` clips (:func:`lens.explain.scoring.score_model`,
  fill :data:`viz.faithfulness.DEFAULT_SUBSTRATE`), with the ``oracle`` (the actor's mask) and the baselines.
  The metric checks itself per model: deleting the actor must hurt more than deleting random cells
  (``deletion_valid``: oracle deletion AUC < random's; likewise ``insertion_valid``). Where it does not, that
  model's numbers measure the perturbation, not the explanations: the table marks them and they are left out
  of any comparison.
* **flow correlation**: the Spearman rank correlation, per clip, of rollout and gradient rollout with token
  flow on the input tokens, and of last-stage attention with token flow on the tokens the last stage reads
  (``flow_correlation``; signed relevance, and ``flow_correlation_abs`` with its magnitude), averaged.
* **seconds** per clip of each method (and ``seconds_per_clip``: forward + explanations).

Sinks: each trained model is probed once (:func:`mvt.sinks.find_sinks` on 16 clips of another stream); ``sinks``
lists what was found, and ``sink_excluded`` gives the pointing games of ``last_stage`` and ``rollout`` with the
sink keys left out. ``--write PATH`` also saves the JSON (the app reads ``mvt/assets/evaluation.synth.json`` for
its sink captions and its "loses to the centre baseline" notes).

It is a thin report over :mod:`lens.dataset` (the per-clip function of ``python -m mvt analyse-dataset``,
:func:`lens.dataset.rows.model_row`, run on ``synth:N:SEED`` with the actor masks): one path computes these
numbers for both. ``--engine ray --actors 2`` runs the same rows on local Ray.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from mvt.zoo import get_spec, list_models
from viz.faithfulness import DEFAULT_SUBSTRATE

from ..explain import methods as M
from ..explain.randomise import LEVELS, levels
from ..explain.sinks import SINK_STREAM
from .rows import DEFAULT_OPTIONS, RowConfig
from .run import DatasetConfig, analyse_dataset
from .schema import SCORES
from .sources import synth_refs
from .summary import model_summary

EVALUATED = ("rollout", "grad_rollout", "token_flow", "attention", "saliency", "gradcam", "center", "random")
"""The registry's methods this evaluation scores (``attention``: only its last stage)."""
OPTIONS = DEFAULT_OPTIONS
"""Rollouts onto the first view (MMViT: the full-resolution tower); token flow also per stage (the rows'
default)."""


def row_name(method: str) -> str:
    """The table's name of a method's score: ``last_stage`` for a per-stage method (the dataset rows score
    per-stage methods at their last stage), else the method's name."""
    return "last_stage" if M.get(method).per_stage else method


METHODS = tuple(row_name(n) for n in EVALUATED)
"""The rows of the table, in order: :data:`EVALUATED` named as :func:`row_name` names them."""
FLOW_COMPARED = ("rollout", "grad_rollout", "last_stage")
"""The methods whose correlation with token flow is reported."""


def synth_models() -> list[str]:
    """Every registered SynthMotion model with weights on disk."""
    return list_models("*.synth", available_only=True)


def evaluate_models(
    names: Sequence[str] | None = None,
    *,
    n: int = 200,
    seed: int = 7,
    faithfulness_n: int = 20,
    steps: int = 8,
    substrate: str = DEFAULT_SUBSTRATE,
    log: Callable[[str], None] | None = None,
    threads: int | None = None,
    engine: str = "local",
    actors: int | None = None,
    randomise: Sequence[str] = LEVELS,
) -> dict[str, dict]:
    """``{model: {...}}`` as the module docstring describes (plus ``accuracy``, ``shuffled_accuracy``, ``n``,
    ``seed``, ``faithfulness_n``, ``substrate``, ``sinks``).

    A report over :func:`lens.dataset.analyse_dataset` (rows kept in memory) on ``synth:n:seed``: the same
    per-clip function as ``python -m mvt analyse-dataset``, with the true class as the target, the
    frames-shuffled prediction, the rollouts onto view 0 and token flow per stage (:data:`OPTIONS`), the sink
    probe (stream ``seed + SINK_STREAM``), and deletion / insertion (``steps`` points per curve) on the first
    ``faithfulness_n`` clips (they cost ``2 * steps`` forwards per method and clip); ``random``, ``center``
    and ``oracle`` (the actor mask) are the baselines. ``threads``: torch threads (default: as set);
    ``engine`` / ``actors``: as :func:`~lens.dataset.analyse_dataset`; ``randomise``: the levels of the
    model-randomisation sanity check (:mod:`lens.explain.randomise`; empty: none)."""
    names = list(names) if names else synth_models()
    for name in names:
        spec = get_spec(name)
        if spec.label_set != "synthmotion":
            raise ValueError(f"{name} predicts {spec.label_set} classes, not SynthMotion's")
    k = min(faithfulness_n, n)
    rows = RowConfig(
        methods=EVALUATED,
        options=OPTIONS,
        steps=steps,
        substrate=substrate,
        target="label",
        shuffled=True,
        sinks=True,
        sink_seed=seed + SINK_STREAM,
        randomise=tuple(randomise),
    )
    config = DatasetConfig(rows, threads=threads, engine=engine, actors=actors, progress=False)
    run = analyse_dataset(synth_refs(n, seed, scored=k), names, config)
    results: dict[str, dict] = {}
    for name in names:
        rows = [r for r in run.rows if r["model"] == name]
        results[name] = report(rows, n=n, seed=seed, faithfulness_n=k, substrate=substrate)
        if log:
            log(f"{name}: top-1 {results[name]['accuracy']:.3f}")
    return results


def report(
    rows: Sequence[Mapping], *, n: int, seed: int, faithfulness_n: int, substrate: str = DEFAULT_SUBSTRATE
) -> dict:
    """One model's entry of :func:`evaluate_models` from its dataset rows (in clip order): :func:`preset` of
    the model's summary (:func:`lens.dataset.summary.model_summary`, what ``summary.json`` holds)."""
    errors = [r["error"] for r in rows if r.get("error")]
    if errors:
        raise RuntimeError(f"{rows[0]['model']}: {len(errors)} clips failed, e.g. {errors[0]}")
    return preset(model_summary(rows), n=n, seed=seed, faithfulness_n=faithfulness_n, substrate=substrate)


def _mean(ci: Mapping | None) -> float:
    """The mean of a summary number (NaN where there is none: ``summary.json`` writes it as null)."""
    return math.nan if not ci or ci.get("mean") is None else float(ci["mean"])


def preset(
    summary: Mapping, *, n: int, seed: int, faithfulness_n: int, substrate: str = DEFAULT_SUBSTRATE
) -> dict:
    """The evaluation's numbers of one model, read from its summary (``summary.json``'s entry for it): the
    same numbers, named per method as :func:`row_name` names them, without intervals."""
    named = {row_name(m): v for m, v in summary["methods"].items()}

    def col(field: str, methods: Sequence[str] = METHODS) -> dict[str, float]:
        return {m: _mean(named.get(m, {}).get(field)) for m in methods}

    token = col("token_pointing_game")
    ceiling_token, ceiling_pixel = col("ceiling_token"), col("ceiling_pixel")
    out: dict = {
        "accuracy": _mean(summary["accuracy"]),
        "shuffled_accuracy": _mean(summary["shuffled_accuracy"]),
        "pointing_game": col("pointing_game"),
        "token_pointing_game": token,
        "ceiling": {m: {"token": ceiling_token[m], "pixel": ceiling_pixel[m]} for m in METHODS},
        "chance": col("chance"),
        "flow_correlation": col("flow_correlation", FLOW_COMPARED),
        "flow_correlation_abs": col("flow_correlation_abs", FLOW_COMPARED),
        "seconds": col("seconds"),
        "seconds_per_clip": _mean(summary["seconds_per_clip"]),
    }
    sunk = {m: named.get(m, {}) for m in ("last_stage", "rollout")}
    sunk = {m: v for m, v in sunk.items() if (v.get("sink_pointing_game") or {}).get("n")}
    if sunk:
        out["sink_excluded"] = {
            m: {"pixel": _mean(v["sink_pointing_game"]), "token": _mean(v["sink_token_pointing_game"])}
            for m, v in sunk.items()
        }
    if faithfulness_n:
        faith = [*METHODS, "oracle"]
        out["deletion_auc"] = col("deletion_auc", faith)
        out["insertion_auc"] = col("insertion_auc", faith)
        out.update(
            {k: summary[k] for k in ("deletion_gap", "deletion_valid", "insertion_valid") if k in summary}
        )
    centre = token["center"]
    out["loses_to_center"] = {m: bool(token[m] < centre) for m in METHODS if m not in ("center", "random")}
    out["sinks"] = list(summary.get("sinks") or [])
    out.update(_randomisation(summary, out))
    out.update(faithfulness_n=faithfulness_n, substrate=substrate, n=n, seed=seed)
    return out


GAPS = ("pointing_game", "token_pointing_game", "deletion_vs_random", "insertion_vs_random")
"""The scores whose trained − randomised gap is reported, each signed so that higher is better: the
pointing games, and deletion / insertion as the advantage over the random baseline scored by the same
model (``random − method`` deletion AUC, ``method − random`` insertion AUC: AUCs are probabilities of one
model's class, so they compare only against that model's own baseline)."""


def _advantages(table: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """``deletion_vs_random`` and ``insertion_vs_random`` per method from mean AUCs (``{}`` without them)."""
    d, i = table.get("deletion_auc") or {}, table.get("insertion_auc") or {}
    if "random" not in d or "random" not in i:
        return {}
    skip = ("random", "center", "oracle")
    return {
        "deletion_vs_random": {m: d["random"] - v for m, v in d.items() if m not in skip},
        "insertion_vs_random": {m: v - i["random"] for m, v in i.items() if m not in skip},
    }


def _randomisation(summary: Mapping, out: Mapping) -> dict:
    """The model-randomisation sanity check of one model's summary: ``randomised`` (``{level: {score:
    {method: mean}}}``), ``randomisation_gap`` (``{level: {score: {method: trained − randomised}}}``, the
    scores of :data:`GAPS`) and ``shows_input`` (per method: the token pointing game with every weight
    randomised is within the 95 % interval of the trained one's: the map shows the input, not the model)."""
    found = summary.get("randomised") or {}
    if not found:
        return {}
    trained = {**out, **_advantages(out)}
    randomised, gaps = {}, {}
    for level, methods in found.items():
        named = {row_name(m): v for m, v in methods.items()}
        fields = ("pointing_game", "token_pointing_game", "deletion_auc", "insertion_auc", "similarity")
        table = {f: {m: _mean(v.get(f)) for m, v in named.items()} for f in fields}
        table |= _advantages(table)
        table = {f: {m: v for m, v in col.items() if m != "random"} for f, col in table.items()}
        randomised[level] = table
        gaps[level] = {
            f: {m: trained[f][m] - v for m, v in table[f].items() if m in trained.get(f, {})}
            for f in GAPS
            if f in table
        }
    result = {"randomised": randomised, "randomisation_gap": gaps}
    whole = {row_name(m): v for m, v in found.get("whole", {}).items() if m != "random"}
    if whole:
        result["shows_input"] = {
            m: _indistinguishable(
                summary["methods"][_method_of(m)]["token_pointing_game"], v["token_pointing_game"]
            )
            for m, v in whole.items()
        }
    return result


def _method_of(row: str) -> str:
    return "attention" if row == "last_stage" else row


def _indistinguishable(trained: Mapping, random: Mapping) -> bool:
    """Two rates (``{"mean", "n"}``) whose difference is within its 95 % interval of zero (normal
    approximation for two independent proportions; conservative for the paired clips here)."""
    if (
        not trained.get("n")
        or not random.get("n")
        or trained.get("mean") is None
        or random.get("mean") is None
    ):
        return False
    p, q = float(trained["mean"]), float(random["mean"])
    se = math.sqrt(p * (1 - p) / trained["n"] + q * (1 - q) / random["n"])
    return abs(p - q) <= 1.96 * se


def _f(v, fmt: str = ".3f") -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _sink_label(s: dict) -> str:
    view = "" if s.get("view") is None else f" (view {s['view']})"
    return f"block {s['block']}{view} key {tuple(s['cell'] or ())}"


def format_table(results: dict[str, dict]) -> str:
    """A plain-text table: a header line per model (accuracy, whether deletion measures it, sinks), then one
    row per method: pointing game pixel / token / token ceiling, deletion and insertion AUC, flow ρ, s/clip
    and flags (``<center``: token pointing game below the centre baseline)."""
    shown = (
        "pointing_game",
        "token_pointing_game",
        "ceiling_token",
        "chance",
        "deletion_auc",
        "insertion_auc",
    )
    head = ["model / method", *(SCORES[k].label for k in (*shown, "flow_correlation", "seconds")), ""]
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
    if any(r.get("randomised") for r in results.values()):
        lines += ["", format_randomisation(results)]
    return "\n".join(lines)


def format_randomisation(results: dict[str, dict]) -> str:
    """The model-randomisation sanity check as text: per model and method, the token pointing game trained
    and at each level, the gap to the whole-model randomisation, the deletion advantage over random
    (trained / whole), the Spearman ρ of the whole-randomised map with the trained one, and ``shows input``
    where the randomised score is within the trained one's interval."""
    head = ["model / method", "PG token", *(f"rand {lv}" for lv in LEVELS), "gap", "del vs rnd", "ρ", ""]
    rows = [head]
    for name, r in results.items():
        rand, gap = r.get("randomised") or {}, (r.get("randomisation_gap") or {}).get("whole", {})
        rows.append([name, *[""] * (len(head) - 1)])
        adv = _advantages(r).get("deletion_vs_random", {})
        for m in [m for m in METHODS if m in (rand.get("whole") or {}).get("token_pointing_game", {})]:
            whole = rand.get("whole", {})
            deletion = f"{_f(adv.get(m), '+.3f')} / {_f(whole.get('deletion_vs_random', {}).get(m), '+.3f')}"
            rows.append(
                [
                    f"  {m}",
                    _f(r["token_pointing_game"].get(m)),
                    *(_f(rand.get(lv, {}).get("token_pointing_game", {}).get(m)) for lv in LEVELS),
                    _f(gap.get("token_pointing_game", {}).get(m), "+.3f"),
                    deletion if adv else "",
                    _f(whole.get("similarity", {}).get(m), "+.2f"),
                    "shows input" if r.get("shows_input", {}).get(m) else "",
                ]
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["model randomisation (Adebayo et al. 2018): token pointing game with weights re-drawn"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(2, "  ".join("-" * w for w in widths))
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
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="lens.dataset engine")
    p.add_argument("--actors", type=int, default=None, help="ray: model actors")
    p.add_argument("--threads", type=int, default=None, help="torch threads (per actor with ray)")
    p.add_argument(
        "--randomise",
        nargs="*",
        default=["all"],
        choices=[*LEVELS, "all", "none"],
        help="model-randomisation sanity check levels (default: all; none: skip it)",
    )
    args = p.parse_args(argv)
    names = args.models or synth_models()
    if not names:
        print(
            "no SynthMotion models are registered (train one: python -m mvt.train --model hvt_t --out mvt/assets/weights)"
        )
        return 1
    results = evaluate_models(
        names,
        n=args.n,
        seed=args.seed,
        faithfulness_n=args.faithfulness_n,
        steps=args.steps,
        substrate=args.substrate,
        engine=args.engine,
        actors=args.actors,
        threads=args.threads,
        randomise=levels(args.randomise),
    )
    text = json.dumps(results, indent=2)
    if args.write is not None:
        args.write.write_text(text + "\n")
    print(text if args.json else format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
