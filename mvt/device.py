"""The device to compute on, decided after ZeroGPU's ``spaces`` package had its say, and its GPU decorator.

On a ZeroGPU Space ``torch.cuda.is_available()`` becomes true only once ``spaces`` is imported (it patches
torch); a device chosen before that import is the CPU. :func:`select_device` therefore imports ``spaces``
first whenever ``SPACES_ZERO_GPU`` holds a value ``spaces`` itself reads as true (``spaces/config.py``:
``1``, ``t`` or ``true``, any case), and only then asks torch. :func:`gpu` wraps a function in
``spaces.GPU(duration=...)`` there and returns it unchanged everywhere else; :func:`spaces_gpu` is
``spaces.GPU`` itself there (``None`` elsewhere). ``spaces`` is not a requirement:
Spaces preinstall it, and elsewhere nothing here needs it.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("mvt.device")

F = TypeVar("F", bound=Callable)


def zero_gpu() -> bool:
    """True when ``SPACES_ZERO_GPU`` is set to a value the ``spaces`` package treats as true."""
    value = os.environ.get("SPACES_ZERO_GPU")
    return value is not None and value.lower() in ("1", "t", "true")


def _spaces():
    """The ``spaces`` module on ZeroGPU (imported now, before anything asks CUDA), else None."""
    if not zero_gpu():
        return None
    try:
        return importlib.import_module("spaces")
    except ImportError as e:
        log.warning("SPACES_ZERO_GPU is set but the spaces package cannot be imported (%s); using no GPU", e)
        return None


def select_device() -> str:
    """``"cuda"`` when a GPU is usable (on ZeroGPU: after importing ``spaces``), else ``"cpu"``."""
    _spaces()
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def gpu(duration: int = 60) -> Callable[[F], F]:
    """A decorator: ``spaces.GPU(duration=duration)`` on ZeroGPU, the identity elsewhere."""
    spaces = _spaces()
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def spaces_gpu() -> Callable[..., Callable] | None:
    """ZeroGPU's decorator factory ``spaces.GPU`` (call it as ``spaces_gpu()(duration=...)``, the duration a
    number of seconds or a callable of the decorated function's arguments) on ZeroGPU; ``None`` elsewhere."""
    spaces = _spaces()
    return None if spaces is None else spaces.GPU


def gemm_tflops(device: str = "cpu", dtype=None, n: int = 4096, reps: int = 3) -> float:
    """Achieved TFLOP/s of an n×n×n matmul on ``device`` (median of ``reps`` after one warm-up; fp32 unless
    ``dtype``), at the current thread count: the reference rate printed beside timings."""
    import statistics
    import time

    import torch

    dtype = dtype or torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)  # (n, n)
    b = torch.randn(n, n, device=device, dtype=dtype)  # (n, n)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    times = []
    for i in range(reps + 1):
        sync()
        t = time.perf_counter()
        a @ b
        sync()
        if i:
            times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e12


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """glibc only: serve allocations below ``threshold`` bytes from the heap and keep freed memory for reuse
    (``mallopt`` ``M_MMAP_THRESHOLD`` / ``M_TRIM_THRESHOLD``). By default every tensor over 128 KiB–32 MiB is
    a fresh ``mmap`` whose pages fault in on first touch and go back to the kernel on free, and a forward
    pass allocates and frees the same large activations in every block: measured 3–9 % faster forward passes
    (bench/README.md). The process then keeps its peak memory. Call it once at start-up (the app's ``main``,
    a benchmark); returns whether it applied."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
        limit = 2**31 - 1  # mallopt takes a C int
        ok = libc.mallopt(m_mmap_threshold, min(int(threshold), limit)) == 1
        return ok and libc.mallopt(m_trim_threshold, min(4 * int(threshold), limit)) == 1
    except (OSError, AttributeError):
        return False
