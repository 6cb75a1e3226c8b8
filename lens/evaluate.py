"""Score models on fresh SynthMotion clips: accuracy, and whether their attention points at the actor.

    python -m mvt evaluate --n 200 --seed 7 [--models hvt_t.synth ...] [--json]

For every model (default: every registered ``*.synth`` model whose weights are here) and every clip of
``mvt.synth.generate(n, seed)``: top-1 accuracy, accuracy with the frames shuffled (a model that uses time
drops towards chance), and the pointing game (``viz.faithfulness.pointing_game``: a hit when a maximum of
the explanation, upsampled to the clip, lies on the actor's mask) of these methods of the registry
(:mod:`lens.methods`), computed exactly as the app computes them:

* ``rollout``: attention rollout through the pooling (onto view 0 for multiview models),
* ``last_stage``: the head-averaged attention of the last stage (the ``attention`` method's last stage),
* ``saliency`` and ``gradcam`` (captum; Grad-CAM at the last stage's tap) for the true class: the
  gradient methods that users compare attention with,
* ``center``: a centred Gaussian, the baseline any map has to beat,
* ``random``: seeded uniform noise.

On the first ``--faithfulness-n`` clips it also scores deletion and insertion AUC
(:func:`lens.faithfulness.score_model`, target = the true class) of the same methods plus ``oracle``, the
actor's mask. The table goes to stdout; ``--json`` prints ``{model: {"accuracy", "shuffled_accuracy",
"pointing_game": {method: hit rate}, "deletion_auc": {method: auc}, "insertion_auc": {method: auc},
"seconds_per_clip", "faithfulness_n", "n", "seed"}}`` instead (baselines as ``"random"``, ``"center"``,
``"oracle"``).

It is a thin report over :mod:`lens.dataset` (the per-clip function of ``python -m mvt analyse-dataset``,
run by the local engine on ``synth:N:SEED`` with the actor masks): one path computes these numbers for both.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from mvt.zoo import get_spec, list_models

from . import methods as M
from .dataset import analyse_dataset, synth_refs
from .dataset.summary import mean, method_scores

EVALUATED = ("rollout", "attention", "saliency", "gradcam", "center", "random")
"""The registry's methods this evaluation scores (``attention``: only its last stage)."""
OPTIONS = {"rollout": {"view": 0}}
"""Rollout onto the first view: for MMViT the full-resolution tower, as the published numbers were made."""


def row_name(method: str) -> str:
    """The table's name of a method's score: ``last_stage`` for a per-stage method (the dataset rows score
    per-stage methods at their last stage), else the method's name."""
    return "last_stage" if M.get(method).per_stage else method


METHODS = tuple(row_name(n) for n in EVALUATED)
"""The rows of the table, in order: :data:`EVALUATED` named as :func:`row_name` names them."""


def synth_models() -> list[str]:
    """Registered ``*.synth`` models (their weights ship in ``assets/weights``)."""
    return list_models("*.synth", available_only=True)


def evaluate_models(
    names: Sequence[str] | None = None,
    *,
    n: int = 200,
    seed: int = 7,
    faithfulness_n: int = 20,
    steps: int = 8,
    log: Callable[[str], None] | None = None,
    threads: int | None = None,
) -> dict[str, dict]:
    """``{model: {"accuracy", "shuffled_accuracy", "pointing_game": {method: rate}, "deletion_auc":
    {method: auc}, "insertion_auc": {method: auc}, "seconds_per_clip", "n", "seed"}}``.

    A report over :func:`lens.dataset.analyse_dataset` (local engine, rows kept in memory) on
    ``synth:n:seed``: the same per-clip function as ``python -m mvt analyse-dataset``, with the true class as
    the target, the frames-shuffled prediction, rollout onto view 0 (:data:`OPTIONS`), and deletion /
    insertion (``steps`` points per curve) on the first ``faithfulness_n`` clips (they cost ``2 * steps``
    forwards per method and clip); ``random``, ``center`` and ``oracle`` (the actor mask) are the
    baselines. ``threads``: torch threads (default: as set)."""
    names = list(names) if names else synth_models()
    for name in names:
        spec = get_spec(name)
        if spec.label_set != "synthmotion":
            raise ValueError(f"{name} predicts {spec.label_set} classes, not SynthMotion's")
    k = min(faithfulness_n, n)
    run = analyse_dataset(
        synth_refs(n, seed, scored=k),
        names,
        EVALUATED,
        None,
        options=OPTIONS,
        steps=steps,
        target="label",
        shuffled=True,
        threads=threads,
        progress=False,
    )
    results: dict[str, dict] = {}
    for name in names:
        rows = [r for r in run.rows if r["model"] == name]
        results[name] = report(rows, n=n, seed=seed, faithfulness_n=k)
        if log:
            log(f"{name}: top-1 {results[name]['accuracy']:.3f}")
    return results


def report(rows: Sequence[Mapping], *, n: int, seed: int, faithfulness_n: int) -> dict:
    """One model's entry of :func:`evaluate_models` from its dataset rows (in clip order)."""
    scores = method_scores(rows)
    named = {row_name(m): v for m, v in scores.items()}
    out: dict = {
        "accuracy": float(np.mean([float(r["correct"]) for r in rows])) if n else float("nan"),
        "shuffled_accuracy": sum(r["shuffled_pred"] == r["label"] for r in rows) / max(1, n),
        "pointing_game": {m: mean(named[m]["pointing_game"]) for m in METHODS},
    }
    if faithfulness_n:
        faith = [*METHODS, "oracle"]
        out["deletion_auc"] = {m: mean(named[m]["deletion_auc"]) for m in faith}
        out["insertion_auc"] = {m: mean(named[m]["insertion_auc"]) for m in faith}
    out["seconds_per_clip"] = sum(r["seconds_forward"] + r["seconds_explain"] for r in rows) / max(1, n)
    out.update(faithfulness_n=faithfulness_n, n=n, seed=seed)
    return out


def format_table(results: dict[str, dict]) -> str:
    """A plain-text table: one row per model, accuracy columns then one pointing-game column per method."""
    head = [
        "model",
        "method",
        "top-1",
        "shuffled",
        "pointing game",
        "deletion AUC",
        "insertion AUC",
        "s/clip",
    ]
    rows = [head]
    for name, r in results.items():
        methods = list(METHODS) + (["oracle"] if "oracle" in r.get("deletion_auc", {}) else [])
        for i, m in enumerate(methods):
            first = i == 0
            rows.append(
                [
                    name if first else "",
                    m,
                    f"{r['accuracy']:.3f}" if first else "",
                    f"{r['shuffled_accuracy']:.3f}" if first else "",
                    f"{r['pointing_game'][m]:.3f}" if m in r["pointing_game"] else "",
                    f"{r['deletion_auc'][m]:.3f}" if m in r.get("deletion_auc", {}) else "",
                    f"{r['insertion_auc'][m]:.3f}" if m in r.get("insertion_auc", {}) else "",
                    f"{r['seconds_per_clip']:.3f}" if first and "seconds_per_clip" in r else "",
                ]
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mvt evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=None, help="model names (default: every *.synth model)")
    p.add_argument("--n", type=int, default=200, help="number of fresh clips")
    p.add_argument("--seed", type=int, default=7, help="SynthMotion stream of the clips")
    p.add_argument("--faithfulness-n", type=int, default=20, help="clips scored by deletion/insertion")
    p.add_argument("--steps", type=int, default=8, help="points per deletion/insertion curve")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    names = args.models or synth_models()
    if not names:
        print(
            "no SynthMotion models are registered (train one: python -m mvt.train --model hvt_t --out assets/weights)"
        )
        return 1
    results = evaluate_models(
        names, n=args.n, seed=args.seed, faithfulness_n=args.faithfulness_n, steps=args.steps
    )
    print(json.dumps(results, indent=2) if args.json else format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
