"""HVT checkpoints: zhuang-group/HVT's release and training files, or a bare HVT state dict.

HVT's ``main.py`` saves ``{"model", "optimizer", "lr_scheduler", "epoch", "scaler", "args"}`` (``model_ema``
too with ``--model-ema``); ``args`` (an ``argparse.Namespace`` from ``params.py``) carries ``num_heads``,
``head_dim``, ``pool_block_width``, ``pool_kernel_size``, ``pool_stride``, ``patch_size``, ``input_size``,
``num_blocks``, ``nb_classes`` and ``data_set`` (``IMNET``). mvt's HVT uses the official key names, so the
weights need no conversion; widths, depth, patch size and which blocks pool come from the shapes, the rest
from ``args`` (or HVT's defaults, said in the notes).
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Any

import torch

from ..models.contract import IMAGENET_MEAN, IMAGENET_STD
from ..models.hvt import HVTConfig
from ..weights import WeightsError
from .records import LabelHint, Reading


def is_hvt_state(state: dict) -> bool:
    return "patch_embed.proj.weight" in state and "pos_embed" in state and "head.weight" in state


def convert_file(raw: Any) -> dict[str, torch.Tensor]:
    """The ``model`` of a training file (or a bare state dict): already mvt's HVT keys."""
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        return dict(raw["model"])
    if not isinstance(raw, dict):
        raise ValueError(f"a {type(raw).__name__}, not a state dict")
    return dict(raw)


def config_from_state(state: dict[str, torch.Tensor], args: dict) -> tuple[HVTConfig, list[str]]:
    notes: list[str] = []
    embed = state["patch_embed.proj.weight"]
    if embed.ndim != 4:
        raise WeightsError(
            f"patch_embed.proj.weight is {tuple(embed.shape)}: a tubelet HVT, which only mvt's own safetensors "
            "(with its arch in the metadata) describe fully"
        )
    dim, patch = int(embed.shape[0]), int(embed.shape[-1])
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    pools = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"blocks\.(\d+)\.pos_embed", k)))
    if not pools or pools[0] != 0:
        raise WeightsError("HVT's block 0 pools (and owns blocks.0.pos_embed); this file's does not")
    width = pools[1] - pools[0] if len(pools) > 1 else depth
    if pools != list(range(0, depth, width)):
        raise WeightsError(
            f"blocks {pools} pool: not every {width}-th block, as HVT's pool_block_width has it"
        )
    n = int(state["pos_embed"].shape[1])
    side = math.isqrt(n)
    if side * side != n:
        raise WeightsError(f"pos_embed has {n} positions: not a square patch grid")
    if "num_heads" in args:
        heads = int(args["num_heads"])
    else:
        heads = max(1, dim // 64)
        notes.append(f"{heads} heads assumed (64 channels each, HVT's head_dim; the file has no args)")
    if "num_heads" in args and "head_dim" in args and heads * int(args["head_dim"]) != dim:
        raise WeightsError(f"args say {heads} heads of {args['head_dim']}, but the weights are {dim} wide")
    kernel, stride = int(args.get("pool_kernel_size", 3)), int(args.get("pool_stride", 2))
    if "pool_kernel_size" not in args:
        notes.append("pooling kernel 3, stride 2 assumed (HVT's defaults)")
    cfg = HVTConfig(
        embed_dim=dim,
        num_heads=heads,
        depth=depth,
        pool_block_width=width,
        pool_kernel=kernel,
        pool_stride=stride,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / dim,
        img_size=side * patch,
        patch_size=patch,
    )
    return cfg, notes


def read(raw: Any, *, name: str) -> Reading:
    state = convert_file(raw)
    args_ns = raw.get("args") if isinstance(raw, dict) else None
    args = vars(args_ns) if isinstance(args_ns, argparse.Namespace) else {}
    cfg, notes = config_from_state(state, args)
    classes = int(state["head.weight"].shape[0])
    if args.get("input_size") and int(args["input_size"]) != cfg.img_size:
        notes.append(f"args.input_size {args['input_size']} ≠ the position table's {cfg.img_size}")
    imagenet = str(args.get("data_set", "")).upper() == "IMNET" and classes == 1000
    hint = (
        LabelHint(label_set="imagenet1k", source="args.data_set 'IMNET' with 1000 classes")
        if imagenet
        else LabelHint()
    )
    pre: dict[str, Any] = {
        "crop_size": cfg.img_size,
        "resize_size": int(round(cfg.img_size / 0.875)),
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "source": "HVT's (DeiT's) evaluation transform: resize to crop / 0.875, ImageNet mean/std; run per frame",
        "notes": ("an image model: it runs on every frame and averages the logits over time",),
    }
    return Reading("hvt", "hvt", cfg, state, classes, labels=hint, preprocessing=pre, notes=notes)
