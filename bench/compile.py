"""torch.compile (inductor, CPU) on our fast paths: compile time (cold and from the cache) and the speed-up.

    python bench/compile.py [--models mvit_v2_s vivit_b_16x2] [--reps 5] [--no-freeze]

For each model (random weights) a child process with an empty inductor cache compiles ``model(x)`` and times
the first call (compile included), then a second child with the same cache directory does it again (what a
restarted app pays with the cache kept), and times eager and compiled calls interleaved. ``freezing`` (weights
folded into the graph, linears pre-packed for oneDNN) is on unless ``--no-freeze``. Printed: the table, and
the machine line.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import os, sys, time, statistics
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads({threads})
import torch._inductor.config as ic
ic.freezing = {freeze}
import mvt
m = mvt.create_model("{arch}.untrained")
s = m.spec
x = torch.randn(1, 3, s.num_frames, s.crop_size, s.crop_size)
c = torch.compile(m)
with torch.inference_mode():
    t = time.perf_counter(); yc = c(x); first = time.perf_counter() - t
    diff = (m(x) - yc).abs().max().item()
    e, k = [], []
    for _ in range({reps}):
        t = time.perf_counter(); m(x); e.append(time.perf_counter() - t)
        t = time.perf_counter(); c(x); k.append(time.perf_counter() - t)
print("RESULT", first, diff, statistics.median(e), statistics.median(k), os.getloadavg()[0])
"""


def run(arch: str, cache: str, reps: int, freeze: bool, threads: int) -> list[float]:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, OMP_WAIT_POLICY="PASSIVE")
    code = CHILD.format(root=str(ROOT), arch=arch, reps=reps, freeze=freeze, threads=threads)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    line = next(v for v in res.stdout.splitlines() if v.startswith("RESULT"))
    return [float(v) for v in line.split()[1:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mvit_v2_s", "vivit_b_16x2"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-freeze", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.machine import machine_line

    print(
        "\n| model | first call, empty cache s | first call, cache kept s | eager s | compiled s | × eager | "
        "max |Δlogit| | load |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for arch in args.models:
        with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
            cold = run(arch, cache, 1, not args.no_freeze, args.threads)
            warm = run(arch, cache, args.reps, not args.no_freeze, args.threads)
        first_cold, first_warm, (_, diff, eager, compiled, load) = cold[0], warm[0], warm
        print(
            f"| {arch} | {first_cold:.1f} | {first_warm:.1f} | {eager:.3f} | {compiled:.3f} | "
            f"{compiled / eager:.2f} | {diff:.1e} | {load:.1f} |"
        )
    print(f"\n{machine_line()}")


if __name__ == "__main__":
    main()
