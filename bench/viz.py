"""Cost of the pictures: capture + rollout + render of one clip vs. a plain forward.

    python bench/viz.py [--model mvit_v2_s.untrained] [--reps 5]

Cases, interleaved round-robin (one warm-up each), medians:

* ``forward``: ``model(x)`` (fused attention, the fast path);
* ``capture + rollout + render``: ``forward_with_attention(x)``, ``viz.rollout_volume`` through every
  pooling, the last map of every stage (``viz.stage_volumes``), each painted to the clip with its footprint
  and blended over the frames (``viz.overlay``, uint8 16×224×224×3) — five overlays.

The second case is also split into its parts (median of each part over the same repetitions). Untrained
weights are fine: cost does not depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mvt  # noqa: E402
import viz  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mvit_v2_s.untrained")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    model = mvt.create_model(args.model)
    spec = model.spec
    shape = (spec.num_frames, spec.crop_size, spec.crop_size)
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    frames = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    parts: dict[str, list[float]] = {"capture": [], "rollout": [], "render": []}

    def forward() -> None:
        model(x)

    def pictures() -> None:
        t0 = time.perf_counter()
        out = model.forward_with_attention(x)
        t1 = time.perf_counter()
        vol, fp = viz.rollout_volume(out)
        t2 = time.perf_counter()
        for v, f in [(vol, fp)] + [(v, f) for _, v, f in viz.stage_volumes(out)]:
            viz.overlay(frames, viz.to_frames(v, shape, f))
        t3 = time.perf_counter()
        parts["capture"].append(t1 - t0)
        parts["rollout"].append(t2 - t1)
        parts["render"].append(t3 - t2)

    cases = {"forward": forward, "capture + rollout + render": pictures}
    times: dict[str, list[float]] = {k: [] for k in cases}
    with torch.inference_mode():
        for fn in cases.values():
            fn()
        for v in parts.values():
            v.clear()
        for _ in range(args.reps):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)

    base = statistics.median(times["forward"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"model {args.model}, input 1×3×{shape[0]}×{shape[1]}×{shape[2]}, {args.reps} interleaved reps, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load:.1f}"
    )
    print()
    print("| case | median s | vs forward |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.3f} | {med / base:.2f}× |")
    for name, ts in parts.items():
        med = statistics.median(ts)
        print(f"| — {name} | {med:.3f} | {med / base:.2f}× |")


if __name__ == "__main__":
    main()
