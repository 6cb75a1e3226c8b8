"""Token flow vs a fast forward pass, per Kinetics-size model: the ratio table of issue #27.

    python bench/flow.py [--reps 3] [--only mvit_v2_s ...] [--threads N] [--no-gradient] [--active-wait]

For each model (random weights: the time does not depend on the values) and one clip of its input size, the
median over interleaved repetitions of

* ``fast``: ``model(x)`` under inference mode (fused attention, nothing recorded);
* ``token flow``: ``mvt.token_flow(model, x)`` (forward with attention, LayerNorm and GELU held, one backward
  to every block's entering tokens and to the pixels, relevances and maps returned);
* ``gradient``: ``model(x)`` then one backward of the top logit to the pixels (plain autograd through the
  fused kernels): the "one backward pass" yardstick; ``--no-gradient`` leaves it out.

Prints a markdown table (median wall seconds, × fast; and the same for the process CPU seconds of the calls,
which move less than wall time on a machine shared with other jobs: waiting for a core is not counted) and
the machine line (threads, load average, GEMM GFLOP/s). Target (issue #27): token flow ≤ 3× fast. Like bench/models.py it sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads
unless ``--active-wait``.
"""

from __future__ import annotations

import os
import sys

if "--active-wait" not in sys.argv:  # before torch loads OpenMP
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mvt  # noqa: E402
from bench.machine import machine_line  # noqa: E402

MODELS = {
    "mvit_v2_s": "MViT v2-S",
    "vivit_b_16x2": "ViViT-B/16x2 (model 1)",
    "mmvit_s": "MMViT-S",
    "hvt_s_1": "HVT-S-1 (16 frames)",
}
TARGET = 3.0


def _clip(spec: mvt.ModelSpec) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, spec.num_frames, spec.crop_size, spec.crop_size, generator=g)


def _fast(model: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        model(x)


def _gradient(model: torch.nn.Module, x: torch.Tensor) -> None:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        torch.autograd.grad(logits[0].max(), x)


def cases_for(model: torch.nn.Module, x: torch.Tensor, gradient: bool) -> dict[str, Callable[[], object]]:
    cases: dict[str, Callable[[], object]] = {
        "fast": lambda: _fast(model, x),
        "token flow": lambda: mvt.token_flow(model, x),
    }
    if gradient:
        cases["gradient"] = lambda: _gradient(model, x)
    return cases


def interleaved(
    cases: dict[str, Callable[[], object]], reps: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and process-CPU seconds of each case over ``reps`` round-robin repetitions (one warm-up
    call each first)."""
    wall: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():
        fn()
    for _ in range(reps):
        for name, fn in cases.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = statistics.median
    return {k: med(v) for k, v in wall.items()}, {k: med(v) for k, v in cpu.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--only", nargs="+", choices=sorted(MODELS), help="run only these models")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--no-gradient", action="store_true", help="leave out the plain-gradient yardstick")
    p.add_argument("--active-wait", action="store_true", help="keep libgomp's spinning (reproduce)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    gradient = not args.no_gradient
    head = "| model | fast s | token flow s | flow / fast | CPU flow / fast |"
    if gradient:
        head += " gradient / fast | CPU gradient / fast |"
    rows = []
    for arch in args.only or list(MODELS):
        torch.manual_seed(0)
        model = mvt.create_model(f"{arch}.untrained")
        x = _clip(model.spec)
        wall, cpu = interleaved(cases_for(model, x, gradient), args.reps)
        ratio = wall["token flow"] / wall["fast"]
        row = (
            f"| {MODELS[arch]} | {wall['fast']:.3f} | {wall['token flow']:.3f} | "
            f"**{ratio:.2f}** ({'OK' if ratio <= TARGET else 'FAIL'}) | {cpu['token flow'] / cpu['fast']:.2f} |"
        )
        if gradient:
            row += f" {wall['gradient'] / wall['fast']:.2f} | {cpu['gradient'] / cpu['fast']:.2f} |"
        rows.append(row)
        print(row, flush=True)
        del model
    print(f"\n### Token flow / fast forward, 1 clip, {args.reps} interleaved reps (target ≤ {TARGET}×)\n")
    print(head)
    print("|---|---:|---:|---:|---:|" + ("---:|---:|" if gradient else ""))
    print("\n".join(rows))
    print(f"\n{machine_line()}")


if __name__ == "__main__":
    main()
