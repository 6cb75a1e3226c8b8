"""Safe checkpoint loading: safetensors, or ``torch.load(weights_only=True)`` with an explicit, per-file allowlist.

HVT's release files were written by its training script (``zhuang-group/HVT`` ``main.py``, through
``utils.save_on_master`` = ``torch.save``) as::

    {"model": state_dict, "optimizer": AdamW.state_dict(), "lr_scheduler": timm scheduler state (a dict),
     "epoch": int, "scaler": GradScaler state (a dict), "args": argparse.Namespace}

Everything in there is tensors, containers and numbers except ``args``, an :class:`argparse.Namespace` (a plain
attribute bag: unpickling it calls ``Namespace.__new__`` and sets ``__dict__``, nothing else). A source lists the
globals its file needs by name (``WeightsSource.pickle_globals``); only names in :data:`ALLOWED_GLOBALS` can be
listed, and they are allowed with ``torch.serialization.safe_globals`` for that one ``torch.load`` call only.
A pickle that reaches for anything else (``os.system``, ``builtins.eval``, ...) is still refused.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from .source import UnsafeCheckpoint, WeightsError

ALLOWED_GLOBALS: dict[str, Callable] = {"argparse.Namespace": argparse.Namespace}
"""Every non-tensor global a registered checkpoint may need. Keep this list short and free of callables that
do anything but build plain data."""

_extra_globals_lock = threading.Lock()
"""``safe_globals`` adds to and removes from one process-wide set on enter/exit; loads that need extra globals
take turns so one load's exit cannot pull a global from under another. Plain loads never take this lock, and
no download ever holds it."""


def _globals_for(names: tuple[str, ...]) -> list[Callable]:
    unknown = [n for n in names if n not in ALLOWED_GLOBALS]
    if unknown:
        raise WeightsError(
            f"checkpoint globals {unknown} are not in mvt.weights.checkpoint.ALLOWED_GLOBALS "
            f"({sorted(ALLOWED_GLOBALS)}); refusing to allow them."
        )
    return [ALLOWED_GLOBALS[n] for n in names]


def _torch_load(path: Path, pickle_globals: tuple[str, ...]):
    if not pickle_globals:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    allowed = _globals_for(pickle_globals)
    with _extra_globals_lock, torch.serialization.safe_globals(allowed):
        return torch.load(str(path), map_location="cpu", weights_only=True)


def _why(e: Exception) -> str:
    """The useful line of torch's weights-only refusal (which global or opcode), not its advice."""
    text = str(e)
    m = re.search(r"Unsupported global: GLOBAL [\w.]+|Unsupported operand \d+|Trying to [^\n.]+", text)
    return m.group(0) if m else text.strip().splitlines()[-1][:300]


def load_file(
    path: str | os.PathLike,
    *,
    state_key: str | None = None,
    pickle_globals: tuple[str, ...] = (),
    name: str | None = None,
) -> dict[str, torch.Tensor]:
    """Load a checkpoint file as a flat ``{name: tensor}`` dict, safely.

    ``.safetensors`` files go through safetensors; anything else through ``torch.load(weights_only=True)``,
    which refuses pickles that would import or call arbitrary code (:class:`UnsafeCheckpoint`).
    ``pickle_globals`` names the extra globals this file may use (see :data:`ALLOWED_GLOBALS`).
    ``name`` is how messages call the file (default: its file name).
    """
    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise WeightsError(f"Checkpoint {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file as st_load

        try:
            sd = st_load(str(path), device="cpu")
        except Exception as e:
            raise WeightsError(f"{name} is not a valid safetensors file ({e}).") from None
    else:
        try:
            sd = _torch_load(path, tuple(pickle_globals))
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpoint(
                f"Refused to load {name}: it is not a plain tensor checkpoint (loading it would run code "
                f"from the file). Convert it to safetensors on a trusted machine. Detail: {_why(e)}"
            ) from None
        except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as e:
            raise WeightsError(f"{name} is not a readable PyTorch checkpoint ({str(e)[:300]}).") from None
    if state_key is not None:
        if not isinstance(sd, dict) or state_key not in sd:
            keys = list(sd)[:5] if isinstance(sd, dict) else type(sd).__name__
            raise WeightsError(f"{name} has no '{state_key}' entry (top-level keys: {keys}).")
        sd = sd[state_key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{name} does not hold a flat state dict of tensors.")
    return sd
