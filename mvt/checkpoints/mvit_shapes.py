"""An MViT's configuration read from the shapes of its weights (torchvision key names), and said in words.

Used for files that carry no configuration of their own (a torchvision state dict, a PySlowFast or MMAction2
file without its cfg). What the shapes fix: depth, the width and head count of every block (head width from
the pooling convolutions or the relative-position tables), where widths change (the stages), v1 or v2
(relative positions; where the width changes: attention or MLP), pooling kernels, the patch embedding's
kernel, the input's frames and size (v1: the absolute position tables; v2: the relative ones) and the head.
What they cannot fix is assumed as every released MViT has it, and said in the notes: query pooling stride
(1, 2, 2) at each stage start, key/value stride (1, 8, 8) halved per stage, patch stride (2, 4, 4) with padding
(1, 3, 3), residual pooling together with relative positions. The caller then checks every key and shape
against the model this config builds, so an assumption that does not fit fails loudly.
"""

from __future__ import annotations

import math
import re

import torch

from ..models.mvit import MViTConfig, MViTStage
from ..weights import WeightsError

_BLOCK = re.compile(r"blocks\.(\d+)\.")


def _shape(state: dict[str, torch.Tensor], key: str) -> tuple[int, ...] | None:
    v = state.get(key)
    return tuple(v.shape) if v is not None else None


def _head_dim(state: dict[str, torch.Tensor], i: int) -> int | None:
    for key in ("attn.pool_k.pool.weight", "attn.pool_q.pool.weight", "attn.rel_pos_h"):
        s = _shape(state, f"blocks.{i}.{key}")
        if s is not None:
            return s[0] if key.endswith("weight") else s[1]
    return None


def mvit_config_from_state(state: dict[str, torch.Tensor]) -> tuple[MViTConfig, int, list[str]]:
    """(config, number of classes, notes on what was assumed) from a torchvision-named MViT state dict.

    Raises :class:`WeightsError` naming the key that does not fit an MViT.
    """
    need = ("conv_proj.weight", "pos_encoding.class_token", "norm.weight", "head.1.weight")
    missing = [k for k in need if k not in state]
    if missing:
        raise WeightsError(f"not an MViT state dict: no {missing} (have e.g. {sorted(state)[:4]})")
    depth = 1 + max((int(m.group(1)) for k in state if (m := _BLOCK.match(k))), default=-1)
    if depth < 1:
        raise WeightsError("not an MViT state dict: no blocks.<i>. keys")
    notes: list[str] = []
    rel_pos = "blocks.0.attn.rel_pos_h" in state
    abs_pos = "pos_encoding.spatial_pos" in state
    dims, attn_dims, heads = [], [], []
    for i in range(depth):
        qkv = _shape(state, f"blocks.{i}.attn.qkv.weight")
        mlp_out = _shape(state, f"blocks.{i}.mlp.3.weight")
        if qkv is None or mlp_out is None:
            raise WeightsError(f"block {i} has no attn.qkv / mlp.3 weights: not an MViT block")
        attn_dims.append(qkv[0] // 3)
        dims.append((qkv[1], mlp_out[0]))
        hd = _head_dim(state, i)
        heads.append(None if hd is None else (qkv[0] // 3) // hd)
    # Stage boundaries: where the width changes. v2 widens in the attention of a stage's first block (attn width
    # = output width), v1 in the MLP of the previous stage's last block.
    widen = [i for i, (a, b) in enumerate(dims) if a != b]
    dim_mul_in_att = bool(widen) and all(attn_dims[i] == dims[i][1] for i in widen)
    starts = [0] + [i if dim_mul_in_att else i + 1 for i in widen]
    stages = []
    for s, start in enumerate(starts):
        stop = starts[s + 1] if s + 1 < len(starts) else depth
        stage_heads = {h for h in heads[start:stop] if h is not None}
        if len(stage_heads) > 1:
            raise WeightsError(f"blocks {start}-{stop - 1} have differing head counts {sorted(stage_heads)}")
        if stage_heads:
            n_heads = stage_heads.pop()
        else:  # no pooling and no tables in this stage: keep the previous stage's head width
            prev_dim, prev_heads = stages[-1].dim, stages[-1].heads
            n_heads = max(1, dims[start][1] // (prev_dim // prev_heads)) if dim_mul_in_att else prev_heads * 2
            notes.append(f"stage {s}: head count {n_heads} assumed (no pooling weights give its head width)")
        width = dims[start][1] if dim_mul_in_att else dims[start][0]
        stages.append(MViTStage(depth=stop - start, dim=width, heads=n_heads))
    embed = state["conv_proj.weight"].shape  # (C, 3, kt, kh, kw)
    patch_kernel = tuple(int(k) for k in embed[2:])
    patch_stride, patch_padding = (2, 4, 4), tuple(k // 2 for k in patch_kernel)
    notes.append(f"patch embedding stride {patch_stride} and padding {patch_padding} assumed")
    kernels = {
        tuple(v.shape[2:])
        for k, v in state.items()
        if re.fullmatch(r"blocks\.\d+\.attn\.pool_[qkv]\.pool\.weight", k)
    }
    pool_kernel = (
        kernels.pop() if len(kernels) == 1 else None
    )  # several kernels: PySlowFast's stride + 1 rule
    if pool_kernel is None:
        kv0 = _shape(state, "blocks.0.attn.pool_k.pool.weight")
        kv_stride = tuple(max(k - 1, 1) for k in kv0[2:]) if kv0 else (1, 8, 8)
    else:
        kv_stride = (1, 8, 8)
        notes.append("key/value pooling stride (1, 8, 8), halved spatially at each stage, assumed")
    q_every = "blocks.0.attn.pool_q.pool.weight" in state
    if len(stages) > 1:
        notes.append("query pooling stride (1, 2, 2) at each stage start assumed")
    if rel_pos:
        t_len = _shape(state, "blocks.0.attn.rel_pos_t")
        h_len = _shape(state, "blocks.0.attn.rel_pos_h")
        if t_len is None or h_len is None:
            raise WeightsError(
                "block 0 has rel_pos_h but no rel_pos_t: decomposed relative positions need both"
            )
        frames = (t_len[0] + 1) // 2 * patch_stride[0]
        size = (h_len[0] + 1) // 2 * patch_stride[1]  # block 0: q stride 1, so the table spans the grid
        notes.append("residual pooling assumed with relative positions (as in every released MViTv2)")
    elif abs_pos:
        t, hw = state["pos_encoding.temporal_pos"].shape[0], state["pos_encoding.spatial_pos"].shape[0]
        side = math.isqrt(hw)
        if side * side != hw:
            raise WeightsError(f"pos_encoding.spatial_pos has {hw} rows: not a square token grid")
        frames, size = t * patch_stride[0], side * patch_stride[1]
    else:
        frames, size = 16, 224
        notes.append("no position tables: 16 frames of 224² assumed")
    mlp_hidden = state["blocks.0.mlp.0.weight"].shape[0]
    cfg = _config(
        stages=tuple(stages),
        rel_pos=rel_pos,
        residual_pool=rel_pos,
        dim_mul_in_att=dim_mul_in_att,
        q_pool_every_block=q_every,
        abs_pos=abs_pos,
        pool_kernel=pool_kernel,
        kv_stride=kv_stride,  # type: ignore[arg-type]
        patch_kernel=patch_kernel,  # type: ignore[arg-type]
        patch_stride=patch_stride,
        patch_padding=patch_padding,  # type: ignore[arg-type]
        num_frames=frames,
        image_size=size,
        mlp_ratio=mlp_hidden / attn_dims[0],
    )
    if rel_pos and pool_kernel is not None:
        cfg = _kv_stride_from_tables(cfg, state, notes)
    return cfg, int(state["head.1.weight"].shape[0]), notes


def _config(**fields) -> MViTConfig:
    return MViTConfig(**fields)


KV_STRIDES = ((1, 8, 8), (1, 4, 4), (1, 2, 2), (1, 16, 16), (2, 8, 8), (2, 4, 4), (1, 1, 1))
"""Key/value strides tried against the relative-position tables, the released models' (1, 8, 8) first."""


def _kv_stride_from_tables(cfg: MViTConfig, state: dict[str, torch.Tensor], notes: list[str]) -> MViTConfig:
    """The key/value stride whose relative-position table lengths (``2·max(q, kv) − 1`` per block) are the
    file's; the first candidate that fits (the tables cannot tell every stride apart)."""
    from dataclasses import replace

    want = [_shape(state, f"blocks.{i}.attn.rel_pos_h") for i in range(sum(s.depth for s in cfg.stages))]
    for stride in KV_STRIDES:
        trial = replace(cfg, kv_stride=stride)
        if all(w is not None and w[0] == bc.rel_pos_sizes[0] for w, bc in zip(want, trial.block_configs())):
            notes[:] = [n for n in notes if not n.startswith("key/value pooling stride")]
            notes.append(
                f"key/value pooling stride {stride} (halved at each stage) read from the relative-position tables"
            )
            return trial
    return cfg


def describe_mvit(cfg: MViTConfig) -> str:
    """``MViTv2, 16 blocks (1/2/11/2), widths 96→768, heads 1→8, relative positions, residual pooling,
    16×224² input``."""
    version = "MViTv2" if cfg.rel_pos or cfg.dim_mul_in_att else "MViT v1"
    depths = "/".join(str(s.depth) for s in cfg.stages)
    parts = [
        f"{version}, {sum(s.depth for s in cfg.stages)} blocks ({depths})",
        f"widths {cfg.stages[0].dim}→{cfg.stages[-1].dim}",
        f"heads {cfg.stages[0].heads}→{cfg.stages[-1].heads}",
    ]
    if cfg.rel_pos:
        parts.append("relative positions")
    if cfg.abs_pos:
        parts.append("absolute positions")
    if cfg.residual_pool:
        parts.append("residual pooling")
    kernel = "stride + 1" if cfg.pool_kernel is None else "×".join(map(str, cfg.pool_kernel))
    parts.append(f"pooling kernel {kernel}, key/value stride {'×'.join(map(str, cfg.kv_stride))}")
    parts.append(f"{cfg.num_frames}×{cfg.image_size}² input")
    return ", ".join(parts)
