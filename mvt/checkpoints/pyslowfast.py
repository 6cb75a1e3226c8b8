"""PySlowFast MViT v1 / v2 checkpoints (``.pyth``): the converter and the reading of the training ``cfg``.

``slowfast/utils/checkpoint.py`` ``save_checkpoint`` writes ``{"epoch", "model_state", "optimizer_state",
"cfg": cfg.dump()}`` (``scaler_state`` with AMP): the model's state dict and the whole training config as a YAML
string. The model is ``slowfast/models/video_model_builder.py`` ``MViT`` built from ``cfg.MVIT`` (blocks from
``slowfast/models/attention.py``), which torchvision ported with other key names; :data:`RENAMES` maps one onto
the other. :func:`config_from_cfg` builds the exact variant from the cfg (depth, widths, heads, pooling strides
and kernels, relative positions, residual pooling, frames, crop) and refuses options mvt's MViT does not
implement, by name. The YAML is read with ``yaml.safe_load`` (plain data only).
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

import torch

from ..models.mvit import MViTConfig, MViTStage
from ..weights import WeightsError
from .records import LabelHint, Reading

RENAMES: tuple[tuple[str, str], ...] = (
    (r"patch_embed\.proj\.(weight|bias)", r"conv_proj.\1"),
    (r"cls_token", "pos_encoding.class_token"),
    (r"pos_embed_spatial", "pos_encoding.spatial_pos"),
    (r"pos_embed_temporal", "pos_encoding.temporal_pos"),
    (r"pos_embed_class", "pos_encoding.class_pos"),
    (r"blocks\.(\d+)\.norm(1|2)\.(weight|bias)", r"blocks.\1.norm\2.\3"),
    (r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"blocks.\1.attn.qkv.\2"),
    (r"blocks\.(\d+)\.attn\.(q|k|v)\.(weight|bias)", r"qkv:\1.\2.\3"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"blocks.\1.attn.project.0.\2"),
    (r"blocks\.(\d+)\.attn\.pool_(q|k|v)\.weight", r"blocks.\1.attn.pool_\2.pool.weight"),
    (r"blocks\.(\d+)\.attn\.norm_(q|k|v)\.(weight|bias)", r"blocks.\1.attn.pool_\2.norm_act.0.\3"),
    (r"blocks\.(\d+)\.attn\.rel_pos_(h|w|t)", r"blocks.\1.attn.rel_pos_\2"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"blocks.\1.mlp.0.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"blocks.\1.mlp.3.\2"),
    (r"blocks\.(\d+)\.proj\.(weight|bias)", r"blocks.\1.project.\2"),
    (r"norm\.(weight|bias)", r"norm.\1"),
    (r"head\.projection\.(weight|bias)", r"head.1.\1"),
)
"""PySlowFast ``MViT`` key → torchvision key (mvt's MViT uses torchvision's names). ``qkv:`` marks separate
q/k/v projections (``MVIT.SEPARATE_QKV``), stacked into one."""

UNSUPPORTED: tuple[tuple[str, str], ...] = (
    (r"pos_embed", "a joint absolute position embedding (MVIT.SEP_POS_EMBED False)"),
    (r"norm_stem\..*", "a stem LayerNorm (MVIT.NORM_STEM)"),
    (r"blocks\.\d+\.gamma_\d", "layer scale (MVIT.LAYER_SCALE_INIT_VALUE > 0)"),
    (r"rev_backbone\..*", "a reversible backbone (MVIT.REV.ENABLE)"),
    (r"head\.projection\.layers\..*", "an MLP head"),
)
"""Keys of PySlowFast options mvt's MViT does not implement, and what they are."""

_SQUEEZE = {
    "pos_encoding.class_token",
    "pos_encoding.class_pos",
    "pos_encoding.spatial_pos",
    "pos_encoding.temporal_pos",
}
"""PySlowFast stores these with a leading (1, …) batch axis (cls: (1, 1, C)); torchvision without."""


def is_pyslowfast_state(state: dict) -> bool:
    return "patch_embed.proj.weight" in state and "head.projection.weight" in state


def convert_pyslowfast_mvit(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A PySlowFast ``MViT`` state dict under torchvision's MViT key names. Raises ``KeyError`` on a key it does
    not know (naming what option it belongs to where known) and ``ValueError`` on an incomplete q/k/v."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in state.items():
        for pattern, what in UNSUPPORTED:
            if re.fullmatch(pattern, key):
                raise KeyError(f"{key}: {what}, which mvt's MViT does not implement")
        for pattern, repl in RENAMES:
            if re.fullmatch(pattern, key):
                new = re.sub(pattern, repl, key)
                break
        else:
            unknown.append(key)
            continue
        if new.startswith("qkv:"):
            block, which, kind = new[4:].split(".")
            qkv.setdefault((block, kind), {})[which] = value
            continue
        if new in _SQUEEZE:  # (1, 1, C) -> (C,); (1, N, C) -> (N, C)
            value = value.reshape(
                value.shape[-1:] if new.endswith(("token", "class_pos")) else value.shape[-2:]
            )
        out[new] = value
    if unknown:
        raise KeyError(f"{len(unknown)} keys that are not PySlowFast MViT weights, e.g. {unknown[:3]}")
    for (block, kind), parts in sorted(qkv.items()):
        if sorted(parts) != ["k", "q", "v"]:
            raise ValueError(f"block {block}: {kind} of q/k/v incomplete (have {sorted(parts)})")
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def convert_file(raw: Any) -> dict[str, torch.Tensor]:
    """A whole ``.pyth`` (or a bare PySlowFast state dict) → mvt's MViT state dict (the zoo's converter)."""
    state = raw.get("model_state", raw) if isinstance(raw, dict) else raw
    if not isinstance(state, dict):
        raise ValueError(f"model_state is a {type(state).__name__}, not a state dict")
    return convert_pyslowfast_mvit(state)


# -- the training cfg --------------------------------------------------------------------------------------


def parse_cfg(text: Any) -> dict:
    """``cfg.dump()`` (a YAML string) → nested dicts; tuples written as strings (``"(3, 7, 7)"``) become tuples."""
    import yaml

    if isinstance(text, dict):
        data = text
    elif isinstance(text, str):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise WeightsError(f"the checkpoint's cfg is not readable YAML ({str(e)[:200]})") from None
    else:
        raise WeightsError(f"the checkpoint's cfg is a {type(text).__name__}, not PySlowFast's YAML string")
    if not isinstance(data, dict):
        raise WeightsError("the checkpoint's cfg is not a mapping of config sections")
    return data


def _value(section: dict, key: str, default: Any) -> Any:
    v = section.get(key, default)
    if isinstance(v, str) and v.startswith(("(", "[")):
        try:
            return ast.literal_eval(v)
        except (ValueError, SyntaxError):
            return v
    return v


MVIT_DEFAULTS: dict[str, Any] = {
    "MODE": "conv", "POOL_FIRST": False, "CLS_EMBED_ON": True, "PATCH_KERNEL": [3, 7, 7],
    "PATCH_STRIDE": [2, 4, 4], "PATCH_PADDING": [2, 4, 4], "PATCH_2D": False, "EMBED_DIM": 96, "NUM_HEADS": 1,
    "MLP_RATIO": 4.0, "QKV_BIAS": True, "DROPPATH_RATE": 0.1, "LAYER_SCALE_INIT_VALUE": 0.0, "DEPTH": 16,
    "NORM": "layernorm", "DIM_MUL": [], "HEAD_MUL": [], "POOL_KV_STRIDE": [], "POOL_KV_STRIDE_ADAPTIVE": None,
    "POOL_Q_STRIDE": [], "POOL_KVQ_KERNEL": None, "NORM_STEM": False, "SEP_POS_EMBED": False,
    "USE_ABS_POS": True, "REL_POS_SPATIAL": False, "REL_POS_TEMPORAL": False, "RESIDUAL_POOLING": False,
    "DIM_MUL_IN_ATT": False, "SEPARATE_QKV": False, "USE_MEAN_POOLING": False, "USE_FIXED_SINCOS_POS": False,
}  # fmt: skip
"""``slowfast/config/defaults.py``'s ``_C.MVIT`` values for the keys read here (a dumped cfg has them all)."""


def round_width(width: float, multiplier: float, min_width: int = 1, divisor: int = 1) -> int:
    """``slowfast/models/utils.py`` ``round_width``: ``width × multiplier`` rounded to a multiple of ``divisor``."""
    if not multiplier:
        return int(width)
    width *= multiplier
    min_width = min_width or divisor
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


def _refuse(m: dict, cfg: dict) -> None:
    problems = []
    checks = (
        (m["MODE"] != "conv", f"MVIT.MODE {m['MODE']!r} (only 'conv' pooling is implemented)"),
        (bool(m["POOL_FIRST"]), "MVIT.POOL_FIRST"),
        (not m["CLS_EMBED_ON"], "MVIT.CLS_EMBED_ON False (mvt's MViT reads a CLS token)"),
        (bool(m["NORM_STEM"]), "MVIT.NORM_STEM"),
        (float(m["LAYER_SCALE_INIT_VALUE"]) > 0, "MVIT.LAYER_SCALE_INIT_VALUE > 0 (layer scale)"),
        (bool(m["USE_MEAN_POOLING"]), "MVIT.USE_MEAN_POOLING"),
        (bool(m["USE_FIXED_SINCOS_POS"]), "MVIT.USE_FIXED_SINCOS_POS"),
        (bool(m["PATCH_2D"]), "MVIT.PATCH_2D"),
        (bool(m["USE_ABS_POS"]) and not m["SEP_POS_EMBED"], "a joint absolute position embedding"),
        (str(m["NORM"]).lower() != "layernorm", f"MVIT.NORM {m['NORM']!r}"),
        (not m["QKV_BIAS"], "MVIT.QKV_BIAS False"),
        (bool(m["REL_POS_SPATIAL"]) != bool(m["REL_POS_TEMPORAL"]), "relative positions on one axis only"),
        (bool(cfg.get("MVIT", {}).get("REV", {}).get("ENABLE", False)), "MVIT.REV.ENABLE (reversible MViT)"),
        (bool(cfg.get("DETECTION", {}).get("ENABLE", False)), "DETECTION.ENABLE (a detection head)"),
    )
    problems = [what for bad, what in checks if bad]
    if problems:
        raise WeightsError(
            "this PySlowFast MViT uses options mvt's MViT does not implement: " + "; ".join(problems)
        )


def _pyslowfast_blocks(m: dict) -> tuple[list[tuple[int, int, int]], dict[int, tuple], list[tuple]]:
    """Per block (dim_in, dim_out, heads), the q strides by block, and the k/v stride of every block, computed
    as ``video_model_builder.MViT.__init__`` computes them."""
    depth = int(m["DEPTH"])
    dim_mul, head_mul = [1.0] * (depth + 1), [1.0] * (depth + 1)
    for i, v in m["DIM_MUL"]:
        dim_mul[int(i)] = float(v)
    for i, v in m["HEAD_MUL"]:
        head_mul[int(i)] = float(v)
    q_strides = {int(e[0]): tuple(int(s) for s in e[1:]) for e in m["POOL_Q_STRIDE"]}
    adaptive = m["POOL_KV_STRIDE_ADAPTIVE"]
    if adaptive is None:
        raise WeightsError(
            "the cfg gives MVIT.POOL_KV_STRIDE per block instead of POOL_KV_STRIDE_ADAPTIVE; mvt's MViT "
            "halves the key/value stride at each stage (the adaptive rule)"
        )
    kv, kv_strides = tuple(int(s) for s in adaptive), []
    embed, heads, blocks = int(m["EMBED_DIM"]), int(m["NUM_HEADS"]), []
    for i in range(depth):
        if i in q_strides:
            kv = tuple(max(a // b, 1) for a, b in zip(kv, q_strides[i]))
        kv_strides.append(kv)
        heads = round_width(heads, head_mul[i])
        if m["DIM_MUL_IN_ATT"]:
            dim_out = round_width(embed, dim_mul[i], divisor=round_width(heads, head_mul[i]))
        else:
            dim_out = round_width(embed, dim_mul[i + 1], divisor=round_width(heads, head_mul[i + 1]))
        blocks.append((embed, dim_out, heads))
        embed = dim_out
    return blocks, q_strides, kv_strides


def config_from_cfg(cfg: dict) -> tuple[MViTConfig, int]:
    """(config, number of classes) of the MViT a PySlowFast cfg builds. Raises :class:`WeightsError` naming the
    cfg fields mvt's MViT cannot reproduce."""
    model = cfg.get("MODEL", {})
    if str(model.get("ARCH", "mvit")).lower() != "mvit" or str(model.get("MODEL_NAME", "MViT")) != "MViT":
        raise WeightsError(
            f"the cfg builds MODEL.MODEL_NAME {model.get('MODEL_NAME')!r} (MODEL.ARCH {model.get('ARCH')!r}), "
            "not an MViT"
        )
    raw = cfg.get("MVIT") or {}
    m = {k: _value(raw, k, d) for k, d in MVIT_DEFAULTS.items()}
    _refuse(m, cfg)
    data = cfg.get("DATA", {})
    blocks, q_strides, kv_strides = _pyslowfast_blocks(m)
    depth = len(blocks)
    starts = sorted(i for i, s in q_strides.items() if math.prod(s) > 1)
    strides = {q_strides[i] for i in starts}
    if len(strides) > 1:
        raise WeightsError(f"MVIT.POOL_Q_STRIDE pools by {sorted(strides)}; mvt's MViT pools by one stride")
    widen = sorted(i for i, (a, b, _) in enumerate(blocks) if a != b)
    expected = starts if m["DIM_MUL_IN_ATT"] else [i - 1 for i in starts]
    if widen != expected:
        raise WeightsError(
            f"the cfg widens blocks {widen} but pools queries at blocks {starts}; mvt's MViT widens where "
            "a stage starts"
        )
    kernel = m["POOL_KVQ_KERNEL"]
    q_every = kernel is not None and sorted(q_strides) == list(range(depth))
    bounds = [0, *starts, depth]
    stages = tuple(
        MViTStage(depth=b - a, dim=blocks[a][1] if m["DIM_MUL_IN_ATT"] else blocks[a][0], heads=blocks[a][2])
        for a, b in zip(bounds, bounds[1:])
    )
    size, frames = int(data.get("TRAIN_CROP_SIZE", 224)), int(data.get("NUM_FRAMES", 8))
    config = MViTConfig(
        stages=stages,
        rel_pos=bool(m["REL_POS_SPATIAL"]),
        residual_pool=bool(m["RESIDUAL_POOLING"]),
        dim_mul_in_att=bool(m["DIM_MUL_IN_ATT"]),
        q_pool_every_block=q_every,
        abs_pos=bool(m["USE_ABS_POS"]),
        pool_kernel=tuple(int(k) for k in kernel) if kernel is not None else None,  # type: ignore[arg-type]
        q_stride=strides.pop() if strides else (1, 2, 2),
        kv_stride=tuple(int(s) for s in m["POOL_KV_STRIDE_ADAPTIVE"]),  # type: ignore[arg-type]
        patch_kernel=tuple(int(k) for k in m["PATCH_KERNEL"]),  # type: ignore[arg-type]
        patch_stride=tuple(int(k) for k in m["PATCH_STRIDE"]),  # type: ignore[arg-type]
        patch_padding=tuple(int(k) for k in m["PATCH_PADDING"]),  # type: ignore[arg-type]
        num_frames=frames,
        image_size=size,
        mlp_ratio=float(m["MLP_RATIO"]),
        head_dropout=float(model.get("DROPOUT_RATE", 0.5)),
        drop_path=float(m["DROPPATH_RATE"]),
    )
    ours = config.block_configs()
    for i, ((din, dout, heads), bc) in enumerate(zip(blocks, ours)):
        kv = bc.kv_pool.stride if bc.kv_pool is not None else (1, 1, 1)
        if (din, dout, heads) != (bc.dim_in, bc.dim_out, bc.heads) or tuple(kv) != kv_strides[i]:
            raise WeightsError(
                f"block {i}: the cfg builds width {din}→{dout}, {heads} heads, key/value stride "
                f"{kv_strides[i]}; mvt's MViT from it {bc.dim_in}→{bc.dim_out}, {bc.heads} heads, {tuple(kv)}"
            )
    return config, int(model.get("NUM_CLASSES", 400))


DATASETS = {("kinetics", 400): "kinetics400", ("kinetics", 600): "kinetics600", ("ssv2", 174): "ssv2"}
"""(PySlowFast dataset name, classes) → label set."""


def preprocessing_from_cfg(cfg: dict) -> dict:
    """The test-time input pipeline the cfg describes, as :class:`~.records.Preprocessing` fields."""
    data, test = cfg.get("DATA", {}), cfg.get("TEST", {})
    dataset = str(test.get("DATASET") or cfg.get("TRAIN", {}).get("DATASET", "kinetics")).lower()
    crop = int(data.get("TEST_CROP_SIZE", 256))
    scales = _value(data, "TRAIN_JITTER_SCALES", [256, 320])
    crops = int(test.get("NUM_SPATIAL_CROPS", 3))
    notes = []
    uniform = dataset == "ssv2"
    if uniform:
        notes.append(
            "frames sampled uniformly over the whole clip (PySlowFast's SSv2 loader takes segment centres)"
        )
    if crops > 1:
        notes.append(f"PySlowFast tested {crops} spatial crops per clip; mvt uses the centre crop")
    if data.get("REVERSE_INPUT_CHANNEL") and dataset != "ssv2":
        notes.append("DATA.REVERSE_INPUT_CHANNEL is set: this loader may have fed BGR frames; mvt feeds RGB")
    mean = tuple(float(v) for v in _value(data, "MEAN", [0.45, 0.45, 0.45]))
    std = tuple(float(v) for v in _value(data, "STD", [0.225, 0.225, 0.225]))
    return {
        "num_frames": int(data.get("NUM_FRAMES", 8)),
        "frame_stride": None if uniform else int(data.get("SAMPLING_RATE", 8)),
        "resize_size": crop if crops > 1 else int(scales[0]),
        "crop_size": crop,
        "mean": mean,
        "std": std,
        "source": "the checkpoint's cfg (DATA.*, TEST.*)",
        "notes": tuple(notes),
    }


def read(raw: Any, *, name: str) -> Reading:
    """A PySlowFast checkpoint (``model_state`` with or without ``cfg``, or a bare PySlowFast state dict)."""
    from .mvit_shapes import mvit_config_from_state

    notes: list[str] = []
    cfg_text = raw.get("cfg") if isinstance(raw, dict) and "model_state" in raw else None
    if cfg_text is None:
        state = convert_file(raw)
        config, classes, notes = mvit_config_from_state(state)
        notes.insert(0, f"{name} carries no cfg: the architecture is read from its weights' shapes")
        return Reading("pyslowfast", "mvit", config, state, classes, notes=notes)
    cfg = parse_cfg(cfg_text)
    config, classes = config_from_cfg(cfg)  # the cfg first: "this is not an MViT" says more than its keys
    state = convert_file(raw)
    pre = preprocessing_from_cfg(cfg)
    dataset = str(cfg.get("TEST", {}).get("DATASET") or cfg.get("TRAIN", {}).get("DATASET", "")).lower()
    label_set = DATASETS.get((dataset, classes))
    hint = LabelHint(label_set=label_set, source=f"the cfg's dataset ({dataset!r}, {classes} classes)")
    if label_set is None and dataset:
        notes.append(f"the cfg names dataset {dataset!r} with {classes} classes: no class list ships for it")
    return Reading("pyslowfast", "mvit", config, state, classes, labels=hint, preprocessing=pre, notes=notes)


def convert_expecting(raw: Any, *, expected: MViTConfig) -> dict[str, torch.Tensor]:
    """:func:`convert_file` for a registry entry: the file's own cfg (when it has one) must build ``expected``
    (training-only fields aside), else ``ValueError`` naming the fields that differ."""
    from dataclasses import fields

    if isinstance(raw, dict) and "cfg" in raw and "model_state" in raw:
        got, _ = config_from_cfg(parse_cfg(raw["cfg"]))
        skip = {"head_dropout", "drop_path"}
        diff = [
            f"{f.name}: file {getattr(got, f.name)} vs registry {getattr(expected, f.name)}"
            for f in fields(expected)
            if f.name not in skip and getattr(got, f.name) != getattr(expected, f.name)
        ]
        if diff:
            raise ValueError("the file's cfg builds another MViT than this entry's: " + "; ".join(diff))
    return convert_file(raw)
