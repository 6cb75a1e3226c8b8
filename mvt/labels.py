"""Class-name lists by label set. Kinetics-400 and ImageNet-1k come from torchvision's metadata (no download)."""

from __future__ import annotations

from functools import cache


@cache
def get_labels(label_set: str) -> tuple[str, ...]:
    """Class names of ``label_set``: ``kinetics400``, ``imagenet1k`` or ``synthmotion``."""
    if label_set == "kinetics400":
        from torchvision.models._meta import _KINETICS400_CATEGORIES

        return tuple(_KINETICS400_CATEGORIES)
    if label_set == "imagenet1k":
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        return tuple(_IMAGENET_CATEGORIES)
    if label_set == "synthmotion":
        from .synth import CLASSES

        return tuple(CLASSES)
    raise KeyError(f"unknown label set {label_set!r}")
