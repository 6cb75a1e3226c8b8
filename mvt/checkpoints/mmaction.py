"""MMAction2 MViT(v2) checkpoints: the converter and what the file's ``meta`` says.

An MMAction2 (mmengine) checkpoint is ``{"meta": {...}, "state_dict": {...}}`` (training files add
``optimizer``, ``message_hub``, ``param_schedulers``). The recogniser's keys are ``backbone.*``
(``mmaction/models/backbones/mvit.py`` ``MViT``, MViTv2 only) and ``cls_head.fc_cls.*``
(``mmaction/models/heads/mvit_head.py``). ``meta`` may carry ``dataset_meta.classes`` and the config as text
(``meta["cfg"]``, mmengine's ``Config.pretty_text``): :func:`mmengine_config` reads that text as data (an
``ast`` walk over ``dict(...)`` calls and literals — nothing is executed), for the backbone's arguments, the
data preprocessor's mean/std (on 0-255 pixels) and the test pipeline's sampling and crop.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import torch

from ..models.mvit import MViTConfig
from .records import LabelHint, Reading

RENAMES: tuple[tuple[str, str], ...] = (
    (r"backbone\.patch_embed\.projection\.(weight|bias)", r"conv_proj.\1"),
    (r"backbone\.cls_token", "pos_encoding.class_token"),
    (r"backbone\.blocks\.(\d+)\.norm(1|2)\.(weight|bias)", r"blocks.\1.norm\2.\3"),
    (r"backbone\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"blocks.\1.attn.qkv.\2"),
    (r"backbone\.blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"blocks.\1.attn.project.0.\2"),
    (r"backbone\.blocks\.(\d+)\.attn\.pool_(q|k|v)\.weight", r"blocks.\1.attn.pool_\2.pool.weight"),
    (r"backbone\.blocks\.(\d+)\.attn\.norm_(q|k|v)\.(weight|bias)", r"blocks.\1.attn.pool_\2.norm_act.0.\3"),
    (r"backbone\.blocks\.(\d+)\.attn\.rel_pos_(h|w|t)", r"blocks.\1.attn.rel_pos_\2"),
    (r"backbone\.blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"blocks.\1.mlp.0.\2"),
    (r"backbone\.blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"blocks.\1.mlp.3.\2"),
    (r"backbone\.blocks\.(\d+)\.proj\.(weight|bias)", r"blocks.\1.project.\2"),
    (r"cls_head\.fc_cls\.(weight|bias)", r"head.1.\1"),
)
"""MMAction2 ``Recognizer3D`` (MViT backbone, MViTHead) key → torchvision's MViT key. The backbone's per-stage
output norms ``backbone.norm<s>`` are handled apart: the last one is the classifier's norm."""

PREPROCESSOR = ("data_preprocessor.mean", "data_preprocessor.std")
"""Buffers an ``ActionDataPreprocessor`` may leave in the state dict (pixel mean/std on 0-255)."""


def is_mmaction_state(state: dict) -> bool:
    return any(k.startswith("backbone.") for k in state) and any(k.startswith("cls_head.") for k in state)


def convert_mmaction_mvit(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An MMAction2 MViT recogniser's state dict under torchvision's MViT key names. The last
    ``backbone.norm<s>`` becomes ``norm``; earlier stages' output norms (``out_scales``) are not on the
    classifier's path and are dropped. Raises ``KeyError`` on any other key it does not know."""
    out: dict[str, torch.Tensor] = {}
    norms: dict[int, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in state.items():
        if key in PREPROCESSOR:
            continue
        if key == "backbone.pos_embed":
            raise KeyError(
                f"{key}: an absolute position embedding (use_abs_pos_embed), which mvt's MViTv2 lacks"
            )
        m = re.fullmatch(r"backbone\.norm(\d+)\.(weight|bias)", key)
        if m:
            norms.setdefault(int(m.group(1)), {})[m.group(2)] = value
            continue
        for pattern, repl in RENAMES:
            if re.fullmatch(pattern, key):
                new = re.sub(pattern, repl, key)
                out[new] = value.reshape(value.shape[-1:]) if new == "pos_encoding.class_token" else value
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"{len(unknown)} keys that are not MMAction2 MViT weights, e.g. {unknown[:3]}")
    if not norms:
        raise KeyError("no backbone.norm<s>: the backbone's output norm is missing")
    for kind, value in norms[max(norms)].items():
        out[f"norm.{kind}"] = value
    return out


def convert_file(raw: Any) -> dict[str, torch.Tensor]:
    """A whole MMAction2 checkpoint (or its bare ``state_dict``) → mvt's MViT state dict."""
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    if not isinstance(state, dict):
        raise ValueError(f"state_dict is a {type(state).__name__}, not a state dict")
    return convert_mmaction_mvit(state)


# -- the config text in meta -------------------------------------------------------------------------------


def _literal(node: ast.AST, env: dict[str, Any]) -> Any:
    """A config expression as data: literals, containers, ``dict(...)`` calls and names already assigned."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(e, env) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict):
        return {_literal(k, env): _literal(v, env) for k, v in zip(node.keys, node.values) if k is not None}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return {kw.arg: _literal(kw.value, env) for kw in node.keywords if kw.arg is not None}
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand, env)
        return -value if isinstance(value, (int, float)) else None
    return None  # anything else (arithmetic, calls, imports) is not read


def mmengine_config(text: str) -> dict[str, Any]:
    """Top-level assignments of an mmengine config's text, read as data (never executed); unreadable
    expressions become None."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return {}
    env: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            env[stmt.targets[0].id] = _literal(stmt.value, env)
    return env


ARCHS = {"tiny": (96, 10, 1), "small": (96, 16, 1), "base": (96, 24, 1), "large": (144, 48, 2)}
"""``mmaction MViT.arch_zoo``: (embed_dims, num_layers, num_heads)."""


def _pipeline_settings(pipeline: Any) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    notes: list[str] = []
    for step in pipeline if isinstance(pipeline, list) else []:
        kind = step.get("type") if isinstance(step, dict) else None
        if kind == "SampleFrames":
            out["num_frames"] = int(step.get("clip_len", 16))
            out["frame_stride"] = int(step.get("frame_interval", 1))
        elif kind == "UniformSample":
            out["num_frames"] = int(step.get("clip_len", 16))
            out["frame_stride"] = None
        elif kind == "Resize" and isinstance(step.get("scale"), (list, tuple)) and -1 in step["scale"]:
            out["resize_size"] = int(max(step["scale"]))
        elif kind in ("CenterCrop", "ThreeCrop", "TenCrop"):
            size = step.get("crop_size", 224)
            out["crop_size"] = int(size[0] if isinstance(size, (list, tuple)) else size)
            if kind != "CenterCrop":
                notes.append(f"MMAction2 tested with {kind}; mvt uses the centre crop")
    return out, notes


def read_meta(meta: Any, state: dict[str, torch.Tensor]) -> tuple[dict, LabelHint, dict, list[str]]:
    """(backbone arguments, label hint, preprocessing fields, notes) from ``meta`` and preprocessor buffers."""
    meta = meta if isinstance(meta, dict) else {}
    notes: list[str] = []
    classes = (
        (meta.get("dataset_meta") or {}).get("classes")
        if isinstance(meta.get("dataset_meta"), dict)
        else None
    )
    hint = LabelHint()
    if isinstance(classes, (list, tuple)) and classes:
        hint = LabelHint(names=tuple(str(c) for c in classes), source="meta.dataset_meta.classes")
    cfg = mmengine_config(meta["cfg"]) if isinstance(meta.get("cfg"), str) else {}
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    backbone = model.get("backbone") if isinstance(model.get("backbone"), dict) else {}
    pre: dict[str, Any] = {}
    dp = model.get("data_preprocessor") if isinstance(model.get("data_preprocessor"), dict) else {}
    mean, std = dp.get("mean"), dp.get("std")
    where = "meta.cfg data_preprocessor"
    if all(k in state for k in PREPROCESSOR):
        mean, std = state[PREPROCESSOR[0]].flatten().tolist(), state[PREPROCESSOR[1]].flatten().tolist()
        where = "the data_preprocessor buffers"
    if isinstance(mean, (list, tuple)) and isinstance(std, (list, tuple)) and len(mean) == len(std) == 3:
        pre["mean"] = tuple(float(v) / 255.0 for v in mean)
        pre["std"] = tuple(float(v) / 255.0 for v in std)
        pre["source"] = f"the checkpoint's {where} and test pipeline"
    settings, pipe_notes = _pipeline_settings(cfg.get("test_pipeline"))
    pre.update(settings)
    notes += pipe_notes
    if settings and "source" not in pre:
        pre["source"] = "the checkpoint's meta.cfg test pipeline"
    if not hint.names:
        text = str(cfg.get("ann_file_test") or cfg.get("data_root") or "").lower()
        classes_n = int(state["cls_head.fc_cls.weight"].shape[0]) if "cls_head.fc_cls.weight" in state else 0
        for token, label_set, n in (("kinetics400", "kinetics400", 400), ("kinetics600", "kinetics600", 600)):
            if token in text and classes_n == n:
                hint = LabelHint(label_set=label_set, source=f"meta.cfg's data files ({text})")
        if ("sthv2" in text or "something" in text) and classes_n == 174:
            hint = LabelHint(label_set="ssv2", source=f"meta.cfg's data files ({text})")
    return backbone, hint, pre, notes


def config_from_backbone(backbone: dict, shapes_cfg: MViTConfig) -> tuple[MViTConfig, list[str]]:
    """Refine the shapes-derived config with the backbone arguments the shapes cannot show (strides)."""
    from dataclasses import replace

    notes = []
    cfg = shapes_cfg
    if "adaptive_kv_stride" in backbone:
        cfg = replace(cfg, kv_stride=tuple(int(s) for s in backbone["adaptive_kv_stride"]))
        notes.append("key/value stride from meta.cfg (adaptive_kv_stride)")
    if "temporal_size" in backbone and int(backbone["temporal_size"]) != cfg.num_frames:
        notes.append(
            f"meta.cfg says temporal_size {backbone['temporal_size']}; the weights' tables say {cfg.num_frames}"
        )
    if backbone.get("use_abs_pos_embed"):
        notes.append("meta.cfg sets use_abs_pos_embed")
    return cfg, notes


def read(raw: Any, *, name: str) -> Reading:
    """An MMAction2 MViT checkpoint (``state_dict`` + ``meta``, or a bare recogniser state dict)."""
    from .mvit_shapes import mvit_config_from_state

    state_in = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    state = convert_file(raw)
    config, classes, notes = mvit_config_from_state(state)
    meta = raw.get("meta") if isinstance(raw, dict) else None
    backbone, hint, pre, meta_notes = read_meta(meta, state_in)
    config, cfg_notes = config_from_backbone(backbone, config)
    if meta is None:
        notes.insert(0, f"{name} carries no meta: the architecture is read from its weights' shapes")
    arch = backbone.get("arch")
    if isinstance(arch, str) and arch.lower() in ARCHS:
        dims, layers, heads = ARCHS[arch.lower()]
        built = (config.stages[0].dim, sum(s.depth for s in config.stages), config.stages[0].heads)
        if built != (dims, layers, heads):
            notes.append(f"meta.cfg names arch {arch!r} {ARCHS[arch.lower()]} but the weights are {built}")
    if pre:
        pre.setdefault("source", "the checkpoint's meta")
        pre["notes"] = tuple(meta_notes)
    return Reading(
        "mmaction2", "mvit", config, state, classes, labels=hint, preprocessing=pre, notes=notes + cfg_notes
    )
