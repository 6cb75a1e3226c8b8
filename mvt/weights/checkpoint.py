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

Users' checkpoints (:mod:`mvt.checkpoints`) are read whole (:func:`read_checkpoint`, or ``state_key`` =
:data:`WHOLE`): a training file's ``cfg`` (PySlowFast's ``cfg.dump()``, a YAML string), ``meta`` (MMAction2) or
``args`` (a Namespace) says what the model is. They are memory-mapped where the file allows it (an optimizer
state beside the weights is then never read) and refused above :func:`max_checkpoint_bytes`.
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

from .source import MB, UnsafeCheckpoint, WeightsError

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


def _torch_load(path: Path, pickle_globals: tuple[str, ...], mmap: bool = False):
    if mmap and not _is_zip(path):
        mmap = False  # the legacy (non-zip) format cannot be memory-mapped
    if not pickle_globals:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    allowed = _globals_for(pickle_globals)
    with _extra_globals_lock, torch.serialization.safe_globals(allowed):
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)


def _is_safetensors(path: Path) -> bool:
    """safetensors by content (a download's temporary file has no suffix): an 8-byte header length, then JSON."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return int.from_bytes(head[:8], "little") < path.stat().st_size


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _why(e: Exception) -> str:
    """The useful line of torch's weights-only refusal (which global or opcode), not its advice."""
    text = str(e)
    m = re.search(r"Unsupported global: GLOBAL [\w.]+|Unsupported operand \d+|Trying to [^\n.]+", text)
    return m.group(0) if m else text.strip().splitlines()[-1][:300]


WHOLE = "*"
"""``state_key`` that asks :func:`load_file` for the whole checkpoint object (a training file with its config),
not one flat state dict: what :mod:`mvt.checkpoints` reads to recognise a user's file."""

DEFAULT_MAX_CHECKPOINT_MB = 4096
"""Largest checkpoint :func:`read_checkpoint` reads unless ``MVT_CHECKPOINT_MAX_MB`` says otherwise (MViTv2-L
with its optimizer state is ~2.6 GB)."""


def max_checkpoint_bytes() -> int:
    """The size cap on users' checkpoints: ``MVT_CHECKPOINT_MAX_MB`` (MB of 2**20) or 4096 MB."""
    raw = os.environ.get("MVT_CHECKPOINT_MAX_MB", "").strip()
    try:
        mb = float(raw) if raw else float(DEFAULT_MAX_CHECKPOINT_MB)
    except ValueError:
        mb = -1.0
    if not mb > 0:
        raise WeightsError(f"MVT_CHECKPOINT_MAX_MB must be a number of megabytes > 0, not {raw!r}.")
    return int(mb * MB)


def read_checkpoint(
    path: str | os.PathLike,
    *,
    pickle_globals: tuple[str, ...] = (),
    name: str | None = None,
    mmap: bool = False,
    max_bytes: int | None = None,
):
    """The whole object a checkpoint file holds, read safely: a ``{name: tensor}`` dict for safetensors, else
    what ``torch.load(weights_only=True)`` returns (tensors, containers, numbers, strings, and the
    ``pickle_globals`` of :data:`ALLOWED_GLOBALS`). ``mmap`` maps the tensors instead of reading them (zip
    format). A file over ``max_bytes`` is refused before it is opened."""
    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise WeightsError(f"Checkpoint {path} does not exist.")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise WeightsError(
            f"{name} is {size / MB:.0f} MB, over the {max_bytes / MB:.0f} MB limit on checkpoints "
            "(MVT_CHECKPOINT_MAX_MB); save only the model's state dict, or raise the limit."
        )
    if path.suffix == ".safetensors" or _is_safetensors(path):
        from safetensors.torch import load_file as st_load

        try:
            return st_load(str(path), device="cpu")
        except Exception as e:
            raise WeightsError(f"{name} is not a valid safetensors file ({e}).") from None
    try:
        return _torch_load(path, tuple(pickle_globals), mmap=mmap)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpoint(
            f"Refused to load {name}: it is not a plain tensor checkpoint (loading it would run code "
            f"from the file). Convert it to safetensors on a trusted machine. Detail: {_why(e)}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        raise WeightsError(f"{name} is not a readable PyTorch checkpoint ({str(e)[:300]}).") from None


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
    ``name`` is how messages call the file (default: its file name). ``state_key`` = :data:`WHOLE` returns the
    whole object instead (memory-mapped, size-capped: :func:`read_checkpoint`), unchecked.
    """
    if state_key == WHOLE:
        return read_checkpoint(
            path, pickle_globals=pickle_globals, name=name, mmap=True, max_bytes=max_checkpoint_bytes()
        )
    path = Path(path)
    name = name or path.name
    sd = read_checkpoint(path, pickle_globals=pickle_globals, name=name)
    if state_key is not None:
        if not isinstance(sd, dict) or state_key not in sd:
            keys = list(sd)[:5] if isinstance(sd, dict) else type(sd).__name__
            raise WeightsError(f"{name} has no '{state_key}' entry (top-level keys: {keys}).")
        sd = sd[state_key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{name} does not hold a flat state dict of tensors.")
    return sd
