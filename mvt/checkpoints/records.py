"""What a checkpoint was recognised as: the records :func:`mvt.inspect_checkpoint` returns and the model's spec carries.

A format reader (one module per format) turns a file into a :class:`Reading` — the family's config, the state
dict under our key names, and whatever the file says about its classes and its input. :mod:`.detect` completes
it (labels, preprocessing defaults, parameter count) into a :class:`Recognised`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class Preprocessing:
    """How frames become the model's input (``mvt.preprocess`` applies it) and where each setting came from.

    ``mean``/``std`` act on frames scaled to [0, 1]: any affine input range is one (mean, std) pair (inputs in
    [-1, 1]: 0.5 / 0.5; Hugging Face's ViViT processor, [-1, 1] then normalised by 0.5 / 0.5: 0.75 / 0.25).
    ``frame_stride`` None samples the frames uniformly over the whole clip (Something-Something v2).
    """

    num_frames: int
    frame_stride: int | None
    resize_size: int
    crop_size: int
    mean: Triple
    std: Triple
    source: str
    """Where these settings come from: the file's own configuration, or the family's defaults."""
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        sampling = (
            f"{self.num_frames} frames uniformly over the clip"
            if self.frame_stride is None
            else f"{self.num_frames} frames {self.frame_stride} apart"
        )
        mean = ", ".join(f"{v:.4g}" for v in self.mean)
        std = ", ".join(f"{v:.4g}" for v in self.std)
        return (
            f"{sampling}, short side {self.resize_size} → centre crop {self.crop_size}, "
            f"mean ({mean}) std ({std}) on [0, 1] frames — {self.source}"
        )


@dataclass(frozen=True)
class LabelHint:
    """What a file says about its classes: names of its own, or the data set it was trained on (a label set of
    :mod:`mvt.labels`), and where it says so."""

    names: tuple[str, ...] | None = None
    label_set: str | None = None
    source: str = ""


@dataclass
class Reading:
    """One format reader's result: everything the file itself determines."""

    format: str
    family: str
    config: Any
    """The family's config dataclass (``MViTConfig``, ``ViViTConfig``, ``HVTConfig``)."""
    state: dict[str, torch.Tensor]
    """The weights under our key names (the format's converter applied)."""
    num_classes: int
    labels: LabelHint = field(default_factory=LabelHint)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    """Settings the file states (keys of :class:`Preprocessing`, with ``source``); the family fills in the rest."""
    notes: list[str] = field(default_factory=list)
    """Assumptions made where the file is silent, and keys dropped as not part of the classifier."""
    arch: str | None = None
    """A registered architecture the file names (our own safetensors); else one is built from ``config``."""


@dataclass(frozen=True)
class Recognised:
    """A checkpoint as :mod:`mvt.checkpoints` recognised it: format, architecture, head, labels, input."""

    source: str
    """The source as a model spec string (``file:…``, ``url:…``, ``hub:org/repo@commit``)."""
    location: str
    """The file read (a local path)."""
    format: str
    family: str
    variant: str
    """The architecture in words (depth, widths, heads, pooling, positions, input size)."""
    config: Any
    num_classes: int
    labels: tuple[str, ...]
    labels_source: str
    label_set: str | None
    preprocessing: Preprocessing
    parameters: int
    sha256: str
    notes: tuple[str, ...] = ()
    arch: str | None = None

    def describe(self) -> str:
        """A few lines a person reads: what the file is and how it will be fed."""
        shown = ", ".join(self.labels[:5]) + (", …" if len(self.labels) > 5 else "")
        lines = [
            f"source:        {self.source}",
            f"format:        {FORMAT_NAMES.get(self.format, self.format)}",
            f"family:        {self.family}",
            f"variant:       {self.variant}",
            f"classes:       {self.num_classes} ({shown})",
            f"labels:        {self.labels_source}",
            f"preprocessing: {self.preprocessing.describe()}",
            f"parameters:    {self.parameters:,}",
            f"sha256:        {self.sha256}",
        ]
        lines += [f"note:          {n}" for n in (*self.notes, *self.preprocessing.notes)]
        return "\n".join(lines)


FORMAT_NAMES = {
    "pyslowfast": "PySlowFast training checkpoint (model_state + cfg)",
    "mmaction2": "MMAction2 checkpoint (state_dict with backbone./cls_head., meta)",
    "torchvision": "torchvision state dict",
    "torchvision-references": "torchvision references training checkpoint (model, optimizer, args)",
    "hf-vivit": "Hugging Face VivitForVideoClassification",
    "hvt": "HVT (zhuang-group/HVT) checkpoint",
    "mvt": "mvt-lens safetensors",
}
"""Every format :mod:`mvt.checkpoints` reads, by key, in words."""
