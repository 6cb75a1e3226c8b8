"""The device to compute on, decided after ZeroGPU's ``spaces`` package had its say, and its GPU decorator.

On a ZeroGPU Space ``torch.cuda.is_available()`` becomes true only once ``spaces`` is imported (it patches
torch); a device chosen before that import is the CPU. :func:`select_device` therefore imports ``spaces``
first whenever ``SPACES_ZERO_GPU`` holds a value ``spaces`` itself reads as true (``spaces/config.py``:
``1``, ``t`` or ``true``, any case), and only then asks torch. :func:`gpu` wraps a function in
``spaces.GPU(duration=...)`` there and returns it unchanged everywhere else. ``spaces`` is not a requirement:
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
