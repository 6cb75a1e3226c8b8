"""What float16 storage of the head-mean attention matrices changes in what is shown (Kinetics-size models).

    python bench/fp16.py [--models mvit_v2_s mmvit_s vivit_b_16x2 hvt_s_1]

Maps with at least ``mvt.layers.BIG_MAP`` (2²⁰) entries per group are stored as float16 (half the memory of
a ViViT-B capture's 12 × 3137² maps). For each model (random weights: what is measured is rounding, not
learning) one clip is captured twice from the same lazy forward: the maps computed and stored in fp32, and as
the models store them. Printed: memory of the maps either way, and the largest change of the rollout volume
(relative to its maximum; and its correlation with the fp32 one) and of the attention statistics (entropy,
mean distance in pixels and frames). CLS rows — every stage's attention panel — are kept in fp32 and do not
change. Accuracy-style numbers: the load does not matter.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mvt  # noqa: E402
import viz  # noqa: E402
from mvt import layers  # noqa: E402


def mib(out) -> float:
    return sum(m.probs().numel() * m.probs().element_size() for m in out.attentions) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mvit_v2_s", "mmvit_s", "vivit_b_16x2", "hvt_s_1"])
    args = ap.parse_args()
    print(
        "\n| model | maps fp32 MiB | maps as stored MiB | rollout max |Δ| / max | rollout r | "
        "entropy max |Δ| | distance max |Δ| px | distance max |Δ| frames |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for arch in args.models:
        torch.manual_seed(0)
        model = mvt.create_model(f"{arch}.untrained")
        s = model.spec
        x = torch.randn(1, 3, s.num_frames, s.crop_size, s.crop_size)
        big = layers.BIG_MAP
        with torch.inference_mode():
            layers.BIG_MAP = 1 << 62  # every map in fp32 (one threshold, in mvt.layers, for every family)
            full = model.forward_with_attention(x, capture="lazy").materialise()
            layers.BIG_MAP = big
            half = model.forward_with_attention(x, capture="lazy").materialise()
        a, _ = viz.rollout_volume(full, mode="attention")
        b, _ = viz.rollout_volume(half, mode="attention")
        rel = float(np.abs(a - b).max() / np.abs(a).max())
        r = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
        diffs = {"entropy": 0.0, "distance_px": 0.0, "distance_frames": 0.0}
        for sa, sb in zip(viz.attention_stats(full), viz.attention_stats(half)):
            for k in diffs:
                if not (math.isnan(sa[k]) or math.isnan(sb[k])):
                    diffs[k] = max(diffs[k], abs(sa[k] - sb[k]))
        print(
            f"| {arch} | {mib(full):.0f} | {mib(half):.0f} | {rel:.1e} | {r:.6f} | {diffs['entropy']:.1e} | "
            f"{diffs['distance_px']:.1e} | {diffs['distance_frames']:.1e} |"
        )


if __name__ == "__main__":
    main()
