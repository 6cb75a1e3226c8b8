"""How close the faster precisions are to fp32, on SynthMotion with the shipped (trained) demo models.

    python bench/precision.py [--clips 64] [--seed 7] [--models mvit_t.synth ...]

For every ``*.synth`` model and ``--clips`` held-out SynthMotion clips (stream ``--seed``; the models were
trained on streams 0..), the default view (``forward_with_attention(x, capture="lazy")``: every stage's CLS row or,
without a CLS token, the stage map) and attention rollout are computed in fp32 and in:

* ``int8``: :func:`mvt.quantize.quantize_linears` (int8 dynamic quantisation of the linear layers), the
  opt-in CPU speed-up;
* ``bf16``: ``torch.autocast("cpu", dtype=torch.bfloat16)``, the code path a GPU takes.

Printed per model and precision: top-1 agreement with fp32, top-1 accuracy of both, and the Pearson
correlation with fp32 of the last stage's attention volume and of the rollout volume (painted onto the
frames; median and minimum over clips). Accuracy-style numbers: no timing, the load does not matter.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mvt  # noqa: E402
import viz  # noqa: E402
from bench.machine import machine_line  # noqa: E402
from mvt.quantize import quantize_linears  # noqa: E402
from mvt.train.steps import to_input  # noqa: E402


def _views(model: torch.nn.Module, x: torch.Tensor, shape, bf16: bool = False):
    """(prediction, last-stage volume on the frames, rollout volume on the frames)."""
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        out = model.forward_with_attention(x, capture="lazy")
    last = max(viz.stages(out))
    att, fp = viz.stage_volume(out, last)
    roll, rfp = viz.rollout_volume(out, mode="attention")
    paint = viz.to_frames
    return (
        int(out.logits.float().argmax()),
        paint(att, shape, footprint=fp),
        paint(roll, shape, footprint=rfp),
    )


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def evaluate(name: str, clips: int, seed: int) -> list[tuple]:
    model = mvt.create_model(name)
    spec = model.spec
    batch = mvt.synth.generate(clips, seed, frames=spec.num_frames, size=spec.crop_size)
    int8 = quantize_linears(model)
    rows = {"fp32": [], "int8": [], "bf16": []}
    for clip in batch.clips:
        x = to_input(clip[None], spec)
        shape = clip.shape[:3]
        rows["fp32"].append(_views(model, x, shape))
        rows["int8"].append(_views(int8, x, shape))
        rows["bf16"].append(_views(model, x, shape, bf16=True))
    ref = rows["fp32"]
    acc_ref = float(np.mean([p == y for (p, _, _), y in zip(ref, batch.labels)]))
    out = []
    for prec in ("int8", "bf16"):
        got = rows[prec]
        agree = float(np.mean([a[0] == b[0] for a, b in zip(ref, got)]))
        acc = float(np.mean([p == y for (p, _, _), y in zip(got, batch.labels)]))
        att = [_corr(a[1], b[1]) for a, b in zip(ref, got)]
        roll = [_corr(a[2], b[2]) for a, b in zip(ref, got)]
        out.append((name, prec, agree, acc_ref, acc, att, roll))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--models", nargs="*", default=None)
    args = ap.parse_args()
    names = args.models or mvt.list_models("*.synth", available_only=True)
    print(
        f"\n### int8 linears and bf16 autocast vs fp32: {args.clips} SynthMotion clips (stream {args.seed})\n"
    )
    print(
        "| model | precision | top-1 agreement with fp32 | top-1 acc. fp32 | top-1 acc. | "
        "last-stage attention r (median / min) | rollout r (median / min) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in names:
        for model, prec, agree, acc_ref, acc, att, roll in evaluate(name, args.clips, args.seed):
            a = [v for v in att if v == v] or [float("nan")]
            r = [v for v in roll if v == v] or [float("nan")]
            print(
                f"| {model} | {prec} | {agree:.3f} | {acc_ref:.3f} | {acc:.3f} | "
                f"{statistics.median(a):.4f} / {min(a):.4f} | {statistics.median(r):.4f} / {min(r):.4f} |"
            )
    print(f"\n{machine_line()}")


if __name__ == "__main__":
    main()
