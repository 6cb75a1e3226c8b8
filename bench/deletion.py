"""Which fill makes deletion measure the model? The oracle-vs-random check per model and fill.

    python -m bench.deletion [--n 16] [--seed 11] [--steps 8] [--models ...] [--fills impute static blur mean]

For every shipped ``.synth`` model, on ``n`` fresh SynthMotion clips (target = the true class): the deletion
and insertion AUC of the ground-truth mask (``oracle``), of uniform noise (``random``) and of a centred
Gaussian (``center``), with each fill of :mod:`viz.perturb`. A fill measures the model when deleting the
actor hurts more than deleting random cells (oracle deletion AUC < random) on every model; the column
``gap`` is random − oracle deletion AUC (higher = the metric separates evidence from noise better). The
numbers decide :data:`viz.faithfulness.DEFAULT_SUBSTRATE` (written there).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import viz
from lens.explain.scoring import class_probability
from mvt import synth
from mvt.train import to_input
from mvt.zoo import create_model, list_models
from viz.faithfulness import SUBSTRATES, deletion_insertion


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--fills", nargs="*", default=list(SUBSTRATES))
    args = p.parse_args()
    names = args.models or list_models("*.synth", available_only=True)
    print(f"load average {os.getloadavg()}; n = {args.n}, seed = {args.seed}, steps = {args.steps}")
    head = ["model", "fill", "del oracle", "del random", "del center", "gap", "ins oracle", "ins random", "s"]
    rows = [head]
    for name in names:
        model = create_model(name)
        batch = synth.generate(args.n, args.seed, frames=model.spec.num_frames, size=model.spec.crop_size)
        for kind in args.fills:
            t0 = time.perf_counter()
            acc: dict[str, list[tuple[float, float]]] = {}
            for i, (clip, mask, label) in enumerate(zip(batch.clips, batch.masks, batch.labels)):
                x = to_input(clip[None], model.spec)
                score = class_probability(model, int(label))
                expl = {
                    "oracle": mask.astype(np.float32),
                    "random": viz.random_explanation(mask.shape, seed=i),
                    "center": viz.center_bias(mask.shape),
                }
                for k, e in expl.items():
                    with torch.inference_mode():
                        c = deletion_insertion(score, x, e, steps=args.steps, substrate=kind, seed=i)
                    acc.setdefault(k, []).append((c.deletion_auc, c.insertion_auc))
            m = {k: np.mean(v, axis=0) for k, v in acc.items()}
            rows.append(
                [
                    name,
                    kind,
                    f"{m['oracle'][0]:.3f}",
                    f"{m['random'][0]:.3f}",
                    f"{m['center'][0]:.3f}",
                    f"{m['random'][0] - m['oracle'][0]:+.3f}",
                    f"{m['oracle'][1]:.3f}",
                    f"{m['random'][1]:.3f}",
                    f"{time.perf_counter() - t0:.0f}",
                ]
            )
            print("  ".join(rows[-1]), flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    print()
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
