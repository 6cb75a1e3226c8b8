"""mvt-lens's own files: the safetensors ``python -m mvt.train`` writes (its metadata names ``arch``, ``classes``,
``label_set`` and the input ``spec``), and any state dict under the keys of a registered architecture.

The architecture is a registered one, built as registered; only the head's size comes from the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import zoo
from ..weights import WeightsError
from .records import LabelHint, Reading


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file (its header only)."""
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # a damaged header is the loader's error to report
        raise WeightsError(f"{path.name} is not a valid safetensors file ({e}).") from None


def head_size(state: dict[str, torch.Tensor]) -> int | None:
    """Outputs of the classifier: the last 2-D ``head…weight`` of the state dict."""
    heads = [k for k in state if k.startswith("head") and k.endswith("weight") and state[k].ndim == 2]
    return int(state[heads[-1]].shape[0]) if heads else None


def _shapes(arch: str, classes: int) -> dict[str, tuple[int, ...]]:
    entry = zoo.get_arch(arch)
    with torch.device("meta"):
        model: nn.Module = entry.builder(num_classes=classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def match_registered(state: dict[str, torch.Tensor]) -> str | None:
    """The first registered architecture whose keys and shapes the state dict has exactly (head size free)."""
    classes = head_size(state)
    if classes is None:
        return None
    keys = set(state)
    for arch in zoo.list_archs():
        own = _shapes(arch, classes)
        if set(own) == keys and all(tuple(state[k].shape) == s for k, s in own.items()):
            return arch
    return None


def read(raw: Any, *, name: str, metadata: dict[str, str], arch: str | None) -> Reading:
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsError(f"{name} is not a flat state dict of tensors")
    state = dict(raw)
    arch = arch or metadata.get("arch") or match_registered(state)
    if arch is None or arch not in zoo.list_archs():
        raise WeightsError(f"{name}: no registered architecture has these keys and shapes")
    classes = head_size(state)
    if classes is None:
        raise WeightsError(f"{name} has no head.…weight: no classifier to read the classes from")
    hint = LabelHint()
    if metadata.get("classes"):
        names = tuple(json.loads(metadata["classes"]))
        hint = LabelHint(names=names, source="the file's metadata (classes)")
    elif metadata.get("label_set"):
        hint = LabelHint(label_set=metadata["label_set"], source="the file's metadata (label_set)")
    pre: dict[str, Any] = {}
    if metadata.get("spec"):
        pre = {k: (tuple(v) if isinstance(v, list) else v) for k, v in json.loads(metadata["spec"]).items()}
        pre["source"] = "the file's metadata (spec)"
    config = getattr(_built(arch, classes), "cfg", None)
    family = zoo.get_arch(arch).family
    return Reading("mvt", family, config, state, classes, labels=hint, preprocessing=pre, arch=arch)


def _built(arch: str, classes: int) -> nn.Module:
    with torch.device("meta"):
        return zoo.get_arch(arch).builder(num_classes=classes)
