"""Hugging Face ``VivitForVideoClassification`` repositories (or bare state dicts of one).

The repository's ``config.json`` (transformers' ``VivitConfig``) gives the architecture — ``num_frames``,
``image_size``, ``tubelet_size``, ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
``intermediate_size``, ``layer_norm_eps``, ``hidden_act`` — and the classes (``id2label``; a generic
``LABEL_<i>`` list, what transformers writes when none was given, names nothing). A
``preprocessor_config.json`` (``VivitImageProcessor``: shortest edge, crop, ``rescale_factor`` with ``offset``,
``image_mean``/``image_std``) gives the input the model was trained on, which is turned into one mean/std on
[0, 1] frames. The weights convert with :func:`mvt.models.vivit_hf.convert_hf_vivit` (transformers 4 and 5
names).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from ..models.vivit import ViViTConfig, config_from_hf
from ..models.vivit_hf import convert_hf_vivit
from ..weights import WeightsError
from .records import LabelHint, Reading

_GENERIC = re.compile(r"LABEL_\d+")


def is_hf_vivit_state(state: dict) -> bool:
    return any(k.startswith("vivit.") for k in state)


def convert_file(raw: Any) -> dict[str, torch.Tensor]:
    if not isinstance(raw, dict):
        raise ValueError(f"a {type(raw).__name__}, not a state dict")
    if "classifier.weight" not in raw:
        raise KeyError("no classifier.weight: a VivitModel without a classification head")
    return convert_hf_vivit(raw)


def labels_from_config(config: dict, classes: int) -> LabelHint:
    """``id2label`` in index order, unless it is transformers' generic ``LABEL_<i>`` (then: none)."""
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return LabelHint()
    try:
        pairs = sorted((int(k), str(v)) for k, v in id2label.items())
    except (TypeError, ValueError) as e:
        raise WeightsError(f"config.json's id2label has a non-integer key ({e})") from None
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise WeightsError(f"config.json's id2label keys are not 0..{len(pairs) - 1}")
    names = tuple(v for _, v in pairs)
    if all(_GENERIC.fullmatch(n) for n in names):
        return LabelHint()
    if len(names) != classes:
        raise WeightsError(
            f"config.json's id2label names {len(names)} classes but the head has {classes} outputs"
        )
    return LabelHint(names=names, source="config.json id2label")


def preprocessing_from_processor(proc: dict) -> tuple[dict, list[str]]:
    """``VivitImageProcessor`` settings as mean/std on [0, 1] frames: the processor computes
    ``((255·x·s − o) − m) / d`` (``s`` rescale_factor, ``o`` = 1 with offset, ``m``/``d`` image_mean/std), which is
    ``(x − (o + m) / (255 s)) / (d / (255 s))``."""
    notes = []
    s = float(proc.get("rescale_factor", 1 / 127.5)) if proc.get("do_rescale", True) else 1.0
    o = 1.0 if proc.get("offset", True) and proc.get("do_rescale", True) else 0.0
    normalise = proc.get("do_normalize", True)
    m = [float(v) for v in proc.get("image_mean", [0.5] * 3)] if normalise else [0.0] * 3
    d = [float(v) for v in proc.get("image_std", [0.5] * 3)] if normalise else [1.0] * 3
    out: dict[str, Any] = {
        "mean": tuple((o + mi) / (255 * s) for mi in m),
        "std": tuple(di / (255 * s) for di in d),
        "source": "the repository's preprocessor_config.json",
    }
    size = proc.get("size") or {}
    if isinstance(size, dict) and "shortest_edge" in size:
        out["resize_size"] = int(size["shortest_edge"])
    elif isinstance(size, dict) and "height" in size:
        out["resize_size"] = int(min(size["height"], size["width"]))
        notes.append("the processor resized to a fixed height × width; mvt resizes the short side")
    crop = proc.get("crop_size") or {}
    if proc.get("do_center_crop", True) and isinstance(crop, dict) and "height" in crop:
        out["crop_size"] = int(crop["height"])
    out["notes"] = tuple(notes)
    return out, notes


def config_from_state(state: dict[str, torch.Tensor]) -> tuple[ViViTConfig, list[str]]:
    """A model-1 config from the converted weights alone (no config.json): widths, depth and tubelet from the
    shapes; square 224² frames and 64-wide heads assumed (the shapes cannot say)."""
    embed = state["patch_embed.weight"]  # (D, C, tt, th, tw)
    dim, tubelet = int(embed.shape[0]), tuple(int(t) for t in embed.shape[2:])
    depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.blocks."))
    tokens = int(state["encoder.pos_embed"].shape[1]) - 1
    size = 224
    per_frame = (size // tubelet[1]) * (size // tubelet[2])
    if tokens % per_frame:
        side = math.isqrt(tokens)
        raise WeightsError(
            f"{tokens} position embeddings do not fit 224² frames with a {tubelet} tubelet; give the repository's "
            f"config.json (a {side}×{side} grid?)"
        )
    frames = tokens // per_frame * tubelet[0]
    notes = [
        f"no config.json: 224² frames, {frames} frames and {dim // 64} heads of 64 assumed from the shapes",
    ]
    cfg = ViViTConfig(
        variant=1,
        num_frames=frames,
        image_size=size,
        tubelet=tubelet,  # type: ignore[arg-type]
        dim=dim,
        depth=depth,
        heads=max(1, dim // 64),
        mlp_dim=int(state["encoder.blocks.0.mlp.fc1.weight"].shape[0]),
    )
    return cfg, notes


def read(raw: Any, *, name: str, config: dict | None = None, processor: dict | None = None) -> Reading:
    state = convert_file(raw)
    classes = int(state["head.weight"].shape[0])
    notes: list[str] = []
    if config is not None:
        archs = config.get("architectures") or []
        if config.get("model_type", "vivit") != "vivit" or (
            archs and "VivitForVideoClassification" not in archs
        ):
            raise WeightsError(
                f"config.json describes {archs or config.get('model_type')}, not a VivitForVideoClassification"
            )
        try:
            cfg = config_from_hf(config)
        except ValueError as e:
            raise WeightsError(f"config.json: {e}") from None
        hint = labels_from_config(config, classes)
    else:
        cfg, notes = config_from_state(state)
        hint = LabelHint()
    pre: dict[str, Any] = {"num_frames": cfg.num_frames, "crop_size": cfg.image_size}
    if processor is not None:
        proc, _ = preprocessing_from_processor(processor)
        pre.update(proc)
        if pre["crop_size"] != cfg.image_size:  # the position embeddings fix the size
            notes.append(
                f"preprocessor crop {pre['crop_size']} ≠ config image_size {cfg.image_size}: {cfg.image_size} used"
            )
            pre["crop_size"] = cfg.image_size
    else:
        pre["source"] = "config.json (frames, size); the scenic pipeline's defaults for the rest"
    return Reading("hf-vivit", "vivit", cfg, state, classes, labels=hint, preprocessing=pre, notes=notes)
