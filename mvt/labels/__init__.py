"""Class-name lists by label set.

Kinetics-400 and ImageNet-1k come from torchvision's metadata (no download). Kinetics-600 and
Something-Something v2 ship here as text files, one class a line in class-index order:
``kinetics600.txt`` (the 600 classes in alphabetical order, as PySlowFast's and MMAction2's Kinetics-600 lists
index them; MMAction2 ``tools/data/kinetics/label_map_k600.txt``) and ``ssv2.txt`` (the 174 templates of the
dataset's labels JSON without the brackets, by their ids; MMAction2 ``tools/data/sthv2/label_map.txt``, which
PySlowFast's SSv2 loader indexes the same way).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

LABEL_SETS = {
    "kinetics400": "Kinetics-400",
    "kinetics600": "Kinetics-600",
    "ssv2": "Something-Something v2",
    "imagenet1k": "ImageNet-1k",
    "synthmotion": "SynthMotion",
}
"""Every label set by name, with the data set's name as people write it."""

SIZES = {"kinetics400": 400, "kinetics600": 600, "ssv2": 174, "imagenet1k": 1000}
"""Classes per label set (SynthMotion's follow :data:`mvt.synth.CLASSES`)."""


def _text_list(name: str) -> tuple[str, ...]:
    lines = (Path(__file__).parent / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line for line in lines if line)


@cache
def get_labels(label_set: str) -> tuple[str, ...]:
    """Class names of ``label_set``: one of :data:`LABEL_SETS`."""
    if label_set == "kinetics400":
        from torchvision.models._meta import _KINETICS400_CATEGORIES

        return tuple(_KINETICS400_CATEGORIES)
    if label_set == "imagenet1k":
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        return tuple(_IMAGENET_CATEGORIES)
    if label_set == "synthmotion":
        from ..synth import CLASSES

        return tuple(CLASSES)
    if label_set in ("kinetics600", "ssv2"):
        return _text_list(label_set)
    raise KeyError(f"unknown label set {label_set!r}; known: {sorted(LABEL_SETS)}")
