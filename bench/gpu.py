"""The GPU check a GPU owner runs once: ``python -m mvt selftest``'s numbers, and the targets they are held to.

    python bench/gpu.py [--device cuda] [selftest options, e.g. --clips 256]

Runs :func:`lens.selftest.run` (bf16 autocast vs fp32 for every family at real size and the shipped models: top-1
agreement, logit differences, the correlation of every explanation map, peak GPU memory, the four-model Compare)
and prints its report, then a ratio table against the project's GPU targets, with the load average and the
device's GEMM rate beside it (bench/README.md, "GPU"). Exit status as the selftest's: 1 on a fidelity failure.
For our fast paths against the reference implementations on the same card: ``python bench/models.py --device cuda``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import load_average  # noqa: E402
from lens import selftest  # noqa: E402

COMPARE_TARGET_S = 1.5
"""Four Kinetics-size models, every panel, on one A100/H100-class card (DESIGN.md, "Performance targets")."""


def targets(report: selftest.Report) -> list[str]:
    rows = [
        "| what | measured | target | ratio |",
        "|---|---:|---:|---:|",
    ]
    panels = report.compare_s.get("bf16 every panel")
    if panels is not None:
        rows.append(
            f"| Compare, {', '.join(report.compare_models)}: every panel (bf16) | {panels:.2f} s | "
            f"≤ {COMPARE_TARGET_S} s | {panels / COMPARE_TARGET_S:.2f} |"
        )
    for c in report.checks:
        if c.ms_fp32 == c.ms_fp32 and c.ms_bf16 == c.ms_bf16:
            rows.append(f"| {c.name}: bf16 / fp32 time per clip | {c.ms_bf16:.1f} / {c.ms_fp32:.1f} ms | < 1 | "
                        f"{c.ms_bf16 / c.ms_fp32:.2f} |")  # fmt: skip
    held = [r for c in report.checks if c.held for r in c.maps.values()]
    if held:
        rows.append(
            f"| trained models: smallest map r (bf16 vs fp32) | {min(held):.4f} | ≥ {selftest.MAP_R_MIN} | — |"
        )
    top1 = [c.top1_agreement for c in report.checks if "top-1" in c.held]
    if top1:
        rows.append(
            f"| shipped models: smallest bf16 top-1 agreement | {min(top1):.3f} | ≥ {selftest.TOP1_MIN} | — |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = selftest.parser().parse_args(argv)
    report = selftest.run_args(args)
    print(selftest.render(report))
    print()
    print("\n".join(targets(report)))
    print(
        f"\nmachine: {report.device_name}, load average {load_average():.2f}, GEMM fp32 {report.gemm_fp32:.2f} / "
        f"bf16 {report.gemm_bf16:.2f} TFLOP/s"
    )
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
