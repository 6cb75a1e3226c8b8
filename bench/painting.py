"""How should token maps be painted onto the clip? Ceilings of the pointing game per paint mode.

    python bench/painting.py [--n 40] [--seed 7] [--models mvit_t.synth ...]

For every shipped ``.synth`` model and the token grids the evaluation scores (the last stage's key grid,
and the first token grid that rollout and token flow live on), on ``n`` fresh SynthMotion clips: the
pointing game of the best possible token map (each token's actor coverage, :func:`viz.pointing.ceilings`)
painted with each mode of :data:`viz.geometry.PAINTS`, its token pointing game, and the chance level of a
random token. Also the pixel pointing game of the model's actual last-stage attention and rollout per mode.
The numbers decide :data:`viz.geometry.PAINT` (written there).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

import viz
from mvt import synth
from mvt.train import to_input
from mvt.zoo import create_model, list_models
from viz.faithfulness import pointing_game
from viz.geometry import PAINTS
from viz.pointing import ceilings, token_chance


def grids(out) -> dict[str, tuple]:
    """``{name: (volume, footprint)}`` of the maps the evaluation scores."""
    last = max(viz.stages(out))
    return {
        "last_stage": viz.stage_volume(out, last),
        "rollout": viz.rollout_volume(out, mode="attention", view=0),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--models", nargs="*", default=None)
    args = p.parse_args()
    names = args.models or list_models("*.synth", available_only=True)
    print(f"load average {os.getloadavg()}; n = {args.n}, seed = {args.seed}")
    head = ["model", "grid", "chance", "token ceil"]
    head += [f"ceil {m}" for m in PAINTS] + [f"map {m}" for m in PAINTS]
    rows = [head]
    for name in names:
        model = create_model(name)
        batch = synth.generate(args.n, args.seed, frames=model.spec.num_frames, size=model.spec.crop_size)
        acc: dict[str, dict[str, list[float]]] = {}
        for clip, mask in zip(batch.clips, batch.masks):
            with torch.inference_mode():
                out = model.forward_with_attention(to_input(clip[None], model.spec))
            for g, (vol, fp) in grids(out).items():
                a = acc.setdefault(g, {})
                a.setdefault("chance", []).append(token_chance(mask, fp, vol.shape))
                for mode in PAINTS:
                    c = ceilings(mask, fp, vol.shape, paint=mode)
                    a.setdefault("token", []).append(c["token"])
                    a.setdefault(f"ceil {mode}", []).append(c["pixel"])
                    painted = viz.to_frames(vol, mask.shape, fp, paint=mode, dtype=np.float64)
                    a.setdefault(f"map {mode}", []).append(pointing_game(painted, mask))
        for g, a in acc.items():
            row = [name, g, f"{np.nanmean(a['chance']):.3f}", f"{np.nanmean(a['token']):.3f}"]
            row += [f"{np.nanmean(a[f'ceil {m}']):.3f}" for m in PAINTS]
            row += [f"{np.nanmean(a[f'map {m}']):.3f}" for m in PAINTS]
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
