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
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

import viz
from mvt import synth
from mvt.train import evaluate as accuracy_on
from mvt.train import to_input
from mvt.zoo import create_model, get_spec, list_models
from viz.faithfulness import aggregate

from . import methods as M
from .faithfulness import score_model
from .records import VolumeKey

EVALUATED = ("rollout", "attention", "saliency", "gradcam", "center", "random")
"""The registry's methods this evaluation scores (``attention``: only its last stage)."""
OPTIONS = {"rollout": {"view": 0}}
"""Rollout onto the first view: for MMViT the full-resolution tower, as the published numbers were made."""


def row_name(key: VolumeKey, last_stage: int) -> str | None:
    """The table's name of a volume (``last_stage`` for the attention of the last stage; ``None``: not a
    row)."""
    if M.get(key.method).per_stage:
        return "last_stage" if key.stage == last_stage else None
    return key.method


METHODS = tuple("last_stage" if M.get(n).per_stage else n for n in EVALUATED)
"""The rows of the table, in order: :data:`EVALUATED` named as :func:`row_name` names them."""


def synth_models() -> list[str]:
    """Registered ``*.synth`` models (their weights ship in ``assets/weights``)."""
    return list_models("*.synth", available_only=True)


def _explanations(model: torch.nn.Module, clip: np.ndarray, shape, seed: int, label: int):
    """(prediction, input, {row: (T, H, W) explanation at input resolution}) of one clip; the gradient
    methods explain ``label`` (the true class)."""
    x = to_input(clip[None], model.spec)
    with torch.inference_mode():
        out = model.forward_with_attention(x)
    volumes, _ = M.compute(model, x, out, EVALUATED, target=label, options=OPTIONS, seed=seed)
    last = max(viz.stages(out))
    explanations = {}
    for key, vol in volumes.items():
        name = row_name(key, last)
        if name is not None:
            explanations[name] = viz.to_frames(vol.values, shape, vol.footprint)
    return int(out.logits.argmax(-1)[0]), x, {m: explanations[m] for m in METHODS}


def score_clips(
    model: torch.nn.Module,
    batch: synth.SynthBatch,
    *,
    seed: int = 0,
    faithfulness_n: int = 0,
    steps: int = 8,
) -> tuple[dict[str, list[float]], np.ndarray, dict[str, dict[str, float]], float]:
    """Explain every clip of ``batch`` once and score the explanations.

    Returns ``(hits, preds, faithfulness, seconds)``: per-clip pointing-game hits of each method in
    :data:`METHODS` (NaN for an empty mask); the predicted class of each clip (from
    ``forward_with_attention``'s logits); on the first ``faithfulness_n`` clips the mean deletion / insertion
    AUC (``steps`` points per curve, target = the true class) of the same methods plus the ground-truth mask
    as ``"oracle"`` (``{"deletion_auc": {method: auc}, "insertion_auc": {...}}``, empty when
    ``faithfulness_n`` is 0; lower deletion and higher insertion AUC = more faithful); and the seconds spent
    computing explanations (deletion / insertion excluded)."""
    hits: dict[str, list[float]] = {m: [] for m in METHODS}
    preds, per_clip, seconds = [], [], 0.0
    for i, (clip, mask, label) in enumerate(zip(batch.clips, batch.masks, batch.labels)):
        t0 = time.perf_counter()
        pred, x, explanations = _explanations(model, clip, mask.shape, seed * 100_003 + i, int(label))
        seconds += time.perf_counter() - t0
        preds.append(pred)
        for name, e in explanations.items():
            hits[name].append(viz.pointing_game(e, mask))
        if i < faithfulness_n:
            explanations["oracle"] = mask.astype(np.float32)
            with torch.inference_mode():
                per_clip.append(score_model(model, x, explanations, target=int(label), steps=steps))
    faith = {}
    if per_clip:
        agg = aggregate(per_clip)
        faith = {"deletion_auc": agg["deletion_auc"], "insertion_auc": agg["insertion_auc"]}
    return hits, np.asarray(preds, dtype=np.int64), faith, seconds


def evaluate_models(
    names: Sequence[str] | None = None,
    *,
    n: int = 200,
    seed: int = 7,
    faithfulness_n: int = 20,
    steps: int = 8,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """``{model: {"accuracy", "shuffled_accuracy", "pointing_game": {method: rate}, "deletion_auc":
    {method: auc}, "insertion_auc": {method: auc}, "seconds_per_clip", "n", "seed"}}``.

    Deletion / insertion (``steps`` points per curve) run on the first ``faithfulness_n`` clips (they cost
    ``2 * steps`` forwards per method and clip); ``random``, ``center`` and ``oracle`` (the actor mask) are
    the baselines."""
    names = list(names) if names else synth_models()
    results: dict[str, dict] = {}
    for name in names:
        spec = get_spec(name)
        if spec.label_set != "synthmotion":
            raise ValueError(f"{name} predicts {spec.label_set} classes, not SynthMotion's")
        model = create_model(name)
        batch = synth.generate(n, seed, frames=spec.num_frames, size=spec.crop_size)
        k = min(faithfulness_n, n)
        hits, preds, faith, seconds = score_clips(model, batch, seed=seed, faithfulness_n=k, steps=steps)
        results[name] = {
            "accuracy": float((preds == batch.labels).mean()) if n else float("nan"),
            "shuffled_accuracy": accuracy_on(model, spec, n=n, seed=seed, shuffle_frames=True),
            "pointing_game": {m: _nanmean(v) for m, v in hits.items()},
            **faith,
            "seconds_per_clip": seconds / max(1, n),
            "faithfulness_n": k,
            "n": n,
            "seed": seed,
        }
        if log:
            log(f"{name}: top-1 {results[name]['accuracy']:.3f}")
    return results


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


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
