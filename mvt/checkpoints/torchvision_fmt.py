"""torchvision MViT state dicts, and training checkpoints of torchvision's ``references/video_classification``.

mvt's MViT uses torchvision's key names, so a state dict needs no conversion; its architecture is read from
the shapes (:mod:`.mvit_shapes`). The references' ``train.py`` saves ``{"model", "optimizer", "lr_scheduler",
"epoch", "args"}`` (``scaler`` with ``--amp``, ``model_ema`` with ``--model-ema``; ``args`` an
``argparse.Namespace``): ``args.model`` names the architecture, ``args.clip_len``, ``args.val_resize_size`` and
``args.val_crop_size`` the evaluation input, and the references' ``presets.VideoClassificationPresetEval``
normalises with mean (0.43216, 0.394666, 0.37645), std (0.22803, 0.22145, 0.216989).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from .records import LabelHint, Reading

REFERENCE_MEAN = (0.43216, 0.394666, 0.37645)
REFERENCE_STD = (0.22803, 0.22145, 0.216989)
"""``references/video_classification/presets.py`` defaults (every model the references train)."""

KINETICS_VERSIONS = {("400", 400): "kinetics400", ("600", 600): "kinetics600"}


def is_torchvision_mvit_state(state: dict) -> bool:
    return "conv_proj.weight" in state and "pos_encoding.class_token" in state


def is_references_checkpoint(raw: Any) -> bool:
    return (
        isinstance(raw, dict)
        and isinstance(raw.get("model"), dict)
        and isinstance(raw.get("args"), argparse.Namespace)
        and is_torchvision_mvit_state(raw["model"])
    )


def convert_file(raw: Any) -> dict[str, torch.Tensor]:
    """A references checkpoint's ``model`` (or ``model_ema``'s averaged weights, preferred when present, since
    the references evaluate with them), or a bare torchvision state dict: already mvt's keys."""
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        ema = raw.get("model_ema")
        if isinstance(ema, dict) and ema:
            return {k.removeprefix("module."): v for k, v in ema.items() if k != "n_averaged"}
        return dict(raw["model"])
    if not isinstance(raw, dict):
        raise ValueError(f"a {type(raw).__name__}, not a state dict")
    return dict(raw)


def _pair(value: Any) -> int | None:
    if isinstance(value, (list, tuple)) and value:
        return int(min(value))
    return int(value) if isinstance(value, (int, float)) else None


def read(raw: Any, *, name: str) -> Reading:
    from .mvit_shapes import mvit_config_from_state

    state = convert_file(raw)
    config, classes, notes = mvit_config_from_state(state)
    args = raw.get("args") if isinstance(raw, dict) else None
    if not isinstance(args, argparse.Namespace):
        return Reading("torchvision", "mvit", config, state, classes, notes=notes)
    a = vars(args)
    if isinstance(raw.get("model_ema"), dict) and raw["model_ema"]:
        notes.insert(0, "the EMA weights (model_ema) are used, as the references evaluate them")
    model = str(a.get("model", ""))
    if model and not model.startswith("mvit"):
        notes.append(f"args.model is {model!r}, but the weights are an MViT")
    pre: dict[str, Any] = {"mean": REFERENCE_MEAN, "std": REFERENCE_STD}
    pre_notes = []
    if a.get("clip_len"):
        pre["num_frames"] = int(a["clip_len"])
    resize, crop = _pair(a.get("val_resize_size")), _pair(a.get("val_crop_size"))
    if resize:
        pre["resize_size"] = resize
        if isinstance(a.get("val_resize_size"), (list, tuple)) and len(set(a["val_resize_size"])) > 1:
            pre_notes.append(
                f"the references resized to {tuple(a['val_resize_size'])} exactly; mvt resizes the short side "
                f"to {resize} and keeps the aspect ratio"
            )
    if crop:
        pre["crop_size"] = crop
    if a.get("frame_rate"):
        pre_notes.append(
            f"the references resampled clips to {a['frame_rate']} fps; mvt takes every frame_stride-th frame "
            "of the file as it is"
        )
    pre["source"] = (
        "the checkpoint's args (clip_len, val_resize_size, val_crop_size) and the references' presets"
    )
    pre["notes"] = tuple(pre_notes)
    version = str(a.get("kinetics_version", ""))
    label_set = KINETICS_VERSIONS.get((version, classes))
    hint = LabelHint(label_set=label_set, source=f"args.kinetics_version {version!r} with {classes} classes")
    return Reading(
        "torchvision-references", "mvit", config, state, classes, labels=hint, preprocessing=pre, notes=notes
    )
