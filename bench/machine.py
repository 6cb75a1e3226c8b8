"""What every bench table prints beside it: the machine's load and what a plain GEMM achieves right now.

Timings on a shared machine are only comparable with the load and a reference rate next to them; ratios
(ours vs a baseline, interleaved in one run) are what the tables are about.
"""

from __future__ import annotations

import os


def load_average() -> float:
    """The 1-minute load average (NaN where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def gemm_gflops(n: int = 4096, reps: int = 3, device: str = "cpu", dtype=None) -> float:
    """Achieved GFLOP/s of an n×n×n matmul (median of ``reps`` after one warm-up) at the current thread count;
    fp32 unless ``dtype`` is given (:func:`mvt.device.gemm_tflops`, which ``python -m mvt selftest`` prints)."""
    from mvt.device import gemm_tflops

    return 1000 * gemm_tflops(device, dtype, n=n, reps=reps)


def machine_line(device: str = "cpu") -> str:
    """One line for under a table: threads, load average, 4096³ fp32 GEMM rate (and OMP_WAIT_POLICY)."""
    import torch

    policy = os.environ.get("OMP_WAIT_POLICY", "unset (libgomp spins)")
    where = f"{torch.get_num_threads()} threads" if device == "cpu" else torch.cuda.get_device_name()
    return (
        f"machine: {where}, load average {load_average():.2f}, 4096³ fp32 GEMM "
        f"{gemm_gflops(device=device):.0f} GFLOP/s, OMP_WAIT_POLICY={policy}"
    )
