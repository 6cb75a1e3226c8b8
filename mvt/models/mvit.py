"""MViT v1 and MViTv2: multiscale video transformers with pooling attention, returning their attention.

Papers: Fan et al., "Multiscale Vision Transformers" (ICCV 2021, arXiv 2104.11227) and Li et al., "MViTv2:
Improved Multiscale Vision Transformers for Classification and Detection" (CVPR 2022, arXiv 2112.01526).
Checkpoints: torchvision's Kinetics-400 ports ``mvit_v1_b-dbeb1030.pth`` and ``mvit_v2_s-ae3be167.pth``
(https://download.pytorch.org/models/). This module uses torchvision's state-dict key names unchanged, so
those files load with an identity conversion and give torchvision's logits.

This module holds the configs (the whole model as data), the classifier and its registration; the blocks
(multi-head pooling attention, the multiscale block, the CLS/position encoding), which MMViT reuses, are in
:mod:`mvt.models.multiscale`. ``model(x)`` runs the fused attention kernel (the relative position bias folded
into it); ``model.forward_with_attention(x, capture=...)`` runs the same blocks and returns every block's
attention as an :class:`~mvt.outputs.AttentionMap`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .. import licences
from ..layers import ALL_CAPTURES, Capture, Recorder, capturing, init_linear_and_norm
from ..outputs import Footprint, Grid, ModelOutput, PoolOp, StageInfo
from ..weights import WeightsSource
from .contract import (
    check_clip,
    config_named,
    grow_footprint,
    identity_taps,
    kinetics_spec,
    register_checkpoint,
    register_variant,
    synthmotion_spec,
    through_tap,
)
from .multiscale import MultiscaleBlock, MViTBlockConfig, PositionalEncoding, conv_pool

# --------------------------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class MViTStage:
    """One scale stage: ``depth`` blocks of width ``dim`` with ``heads`` attention heads."""

    depth: int
    dim: int
    heads: int


@dataclass(frozen=True)
class MViTConfig:
    """A whole MViT as data. Stage ``s > 0`` starts by pooling queries by ``q_stride``; key/value pooling is
    adaptive: ``kv_stride`` in stage 0, divided by ``q_stride`` at each later stage (at least 1)."""

    stages: tuple[MViTStage, ...]
    rel_pos: bool
    """MViTv2 decomposed relative position bias (tables ``rel_pos_{h,w,t}`` per block)."""
    residual_pool: bool
    """MViTv2: the pooled query is added to the attention output (CLS row excluded)."""
    dim_mul_in_att: bool
    """MViTv2 widens in the attention of a stage's first block; v1 in the MLP of the previous stage's last."""
    q_pool_every_block: bool
    """MViTv2 pools queries (stride 1) in every block; v1 only where the stride is > 1."""
    abs_pos: bool
    """v1: separable absolute position embeddings (temporal + spatial, plus one for CLS)."""
    pool_kernel: Grid | None = (3, 3, 3)
    """Kernel of every q/k/v pooling; None: PySlowFast's rule when ``POOL_KVQ_KERNEL`` is unset, each pooling's
    kernel is its stride + 1 on strided axes and 1 elsewhere (MViT-B 32×3: q (1, 3, 3), k/v (1, 9, 9) → …)."""
    q_stride: Grid = (1, 2, 2)
    kv_stride: Grid = (1, 8, 8)
    patch_kernel: Grid = (3, 7, 7)
    patch_stride: Grid = (2, 4, 4)
    patch_padding: Grid = (1, 3, 3)
    num_frames: int = 16
    image_size: int = 224
    mlp_ratio: float = 4.0
    head_dropout: float = 0.5
    drop_path: float = 0.2
    norm_eps: float = 1e-6

    @property
    def embed_grid(self) -> Grid:
        """Nominal token grid after the patch embedding (``size // stride``, as the reference sizes tables)."""
        sizes = (self.num_frames, self.image_size, self.image_size)
        return tuple(n // s for n, s in zip(sizes, self.patch_stride))  # type: ignore[return-value]

    @property
    def embed_footprint(self) -> Footprint:
        return Footprint(self.patch_stride, self.patch_kernel, self.patch_padding)

    def block_configs(self) -> tuple[MViTBlockConfig, ...]:
        total = sum(st.depth for st in self.stages)
        grid, kv_stride, out, index = self.embed_grid, self.kv_stride, [], 0
        for s, stage in enumerate(self.stages):
            if s > 0:
                kv_stride = tuple(max(a // b, 1) for a, b in zip(kv_stride, self.q_stride))
            for j in range(stage.depth):
                first = s > 0 and j == 0
                last = s < len(self.stages) - 1 and j == stage.depth - 1
                stride_q = self.q_stride if first else (1, 1, 1)
                if self.dim_mul_in_att:
                    dim_in, dim_out = (self.stages[s - 1].dim if first else stage.dim), stage.dim
                else:
                    dim_in, dim_out = stage.dim, (self.stages[s + 1].dim if last else stage.dim)
                q_pool = self._conv_pool(stride_q) if first or self.q_pool_every_block else None
                skip_kernel = tuple(q + 1 if q > 1 else q for q in stride_q)
                skip_pool = (
                    PoolOp(skip_kernel, stride_q, tuple(k // 2 for k in skip_kernel), "max")  # type: ignore[arg-type]
                    if math.prod(stride_q) > 1
                    else None
                )
                out.append(
                    MViTBlockConfig(
                        index=index,
                        stage=s,
                        dim_in=dim_in,
                        dim_out=dim_out,
                        attn_dim=dim_out if self.dim_mul_in_att else dim_in,
                        heads=stage.heads,
                        q_pool=q_pool,
                        kv_pool=self._conv_pool(kv_stride),
                        skip_pool=skip_pool,
                        in_grid=grid,
                        rel_pos=self.rel_pos,
                        residual_pool=self.residual_pool,
                        dim_mul_in_att=self.dim_mul_in_att,
                        mlp_ratio=self.mlp_ratio,
                        drop_path=self.drop_path * index / max(total - 1, 1),
                        norm_eps=self.norm_eps,
                    )
                )
                grid = tuple(g // q for g, q in zip(grid, stride_q))
                index += 1
        return tuple(out)

    def _conv_pool(self, stride: Grid) -> PoolOp | None:
        kernel = self.pool_kernel or tuple(s + 1 if s > 1 else s for s in stride)
        return conv_pool(kernel, stride, tuple(k // 2 for k in kernel))


_K400_STAGES = (MViTStage(1, 96, 1), MViTStage(2, 192, 2), MViTStage(11, 384, 4), MViTStage(2, 768, 8))

MVIT_CONFIGS: dict[str, MViTConfig] = {
    "mvit_v1_b": MViTConfig(
        stages=_K400_STAGES,
        rel_pos=False,
        residual_pool=False,
        dim_mul_in_att=False,
        q_pool_every_block=False,
        abs_pos=True,
    ),
    "mvit_v2_s": MViTConfig(
        stages=_K400_STAGES,
        rel_pos=True,
        residual_pool=True,
        dim_mul_in_att=True,
        q_pool_every_block=True,
        abs_pos=False,
    ),
    # Tiny MViTv2 for 16×112² SynthMotion clips: a 4×12×12 / stride-4×8×8 embedding (4-frame tubelets; each
    # cell's 8×8 pixels plus 2 on every side), grids 4×14² → 4×7² → 4×4², keys/values at 4×7² in stage 0.
    # It adds v1's separable absolute positions to v2's relative ones (pyslowfast's USE_ABS_POS): with relative
    # positions only, it stayed at chance on SynthMotion for 1000+ steps (every recipe tried); with them it
    # leaves chance within ~800. Such a model takes only clips of its own size (16×112²).
    "mvit_t": MViTConfig(
        stages=(MViTStage(1, 32, 1), MViTStage(2, 64, 2), MViTStage(3, 128, 4)),
        rel_pos=True,
        residual_pool=True,
        dim_mul_in_att=True,
        q_pool_every_block=True,
        abs_pos=True,
        kv_stride=(1, 2, 2),
        patch_kernel=(4, 12, 12),
        patch_stride=(4, 8, 8),
        patch_padding=(0, 2, 2),
        image_size=112,
        head_dropout=0.2,
        drop_path=0.1,
    ),
}


class MViT(nn.Module):
    """MViT v1 / MViTv2 video classifier with torchvision's parameter names."""

    def __init__(self, cfg: MViTConfig, num_classes: int = 400):
        super().__init__()
        self.cfg = cfg
        self.block_cfgs = cfg.block_configs()
        dim0 = cfg.stages[0].dim
        self.conv_proj = nn.Conv3d(
            3, dim0, cfg.patch_kernel, stride=cfg.patch_stride, padding=cfg.patch_padding
        )
        self.pos_encoding = PositionalEncoding(dim0, cfg.embed_grid, cfg.abs_pos)
        self.blocks = nn.ModuleList(MultiscaleBlock(bc) for bc in self.block_cfgs)
        self.norm = nn.LayerNorm(self.block_cfgs[-1].dim_out, eps=cfg.norm_eps)
        self.head = nn.Sequential(
            nn.Dropout(cfg.head_dropout), nn.Linear(self.block_cfgs[-1].dim_out, num_classes)
        )
        self.stage_taps = identity_taps(len(cfg.stages))
        self._init_weights()

    def _init_weights(self) -> None:
        init_linear_and_norm(self)
        for p in self.pos_encoding.parameters():
            nn.init.trunc_normal_(p, std=0.02)

    @property
    def stage_blocks(self) -> list[tuple[int, ...]]:
        """Block indices of each stage."""
        return [tuple(b.index for b in self.block_cfgs if b.stage == s) for s in range(len(self.cfg.stages))]

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        x = check_clip(x, model="MViT", image_ok=True)  # (B, 3, T, H, W); an image is one frame
        cells = self.conv_proj(x)  # (B, C, T', H', W')
        grid = tuple(cells.shape[2:])
        cells = cells.flatten(2).transpose(1, 2)  # (B, T'H'W', C)
        return self.pos_encoding(cells, grid), grid  # type: ignore[arg-type]

    def _run(self, x: torch.Tensor, rec: Recorder | None):
        """Shared trunk of both paths: logits and per-stage records; with ``rec``, one map per block."""
        x, grid = self._embed(x)
        stages = []
        last = len(self.stage_blocks) - 1
        for stage, indices in enumerate(self.stage_blocks):
            # The head reads only the CLS token, which the last block computes from the tokens entering it:
            # the last stage is tapped there (same grid), else its Grad-CAM would see zero gradient.
            tap_before_last = stage == last and len(indices) > 1
            for j, i in enumerate(indices):
                if tap_before_last and j == len(indices) - 1:
                    x = through_tap(self.stage_taps[stage], x, grid, num_prefix=1)
                if rec is not None:
                    rec.enter_block(x)
                x, grid = self.blocks[i](x, grid, rec)
            if not tap_before_last:
                x = through_tap(self.stage_taps[stage], x, grid, num_prefix=1)
            stages.append((stage, grid, x.shape[-1], indices))
        logits = self.head(self.norm(x[:, 0]))  # LayerNorm is per token: only the CLS token is needed
        return logits, stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 3, T, H, W) → logits (B, num_classes), with fused attention."""
        return self._run(x, None)[0]

    captures = ALL_CAPTURES

    def forward_with_attention(self, x: torch.Tensor, *, capture: Capture = Capture.EAGER) -> ModelOutput:
        """Logits plus one :class:`AttentionMap` per block and one :class:`StageInfo` per stage (the
        captures: :class:`mvt.layers.Capture`)."""
        input_shape = tuple(x.shape[2:]) if x.ndim == 5 else (1, *x.shape[2:])
        with capturing(self, capture, x) as rec:
            logits, stages = self._run(x, rec)
        infos, footprint = [], self.cfg.embed_footprint
        for stage, grid, channels, indices in stages:
            footprint = grow_footprint(footprint, (self.block_cfgs[i].q_pool for i in indices))
            infos.append(
                StageInfo(
                    stage=stage,
                    grid=grid,
                    channels=channels,
                    tokens=1 + grid[0] * grid[1] * grid[2],
                    num_prefix=1,
                    footprint=footprint,
                    blocks=indices,
                )
            )
        return rec.output(
            logits, infos, input_shape=input_shape, embed=self.cfg.embed_footprint, pooling="cls"
        )


# --------------------------------------------------------------------------------------------- registry

TV_URLS = {
    "mvit_v1_b": "https://download.pytorch.org/models/mvit_v1_b-dbeb1030.pth",
    "mvit_v2_s": "https://download.pytorch.org/models/mvit_v2_s-ae3be167.pth",
}


def build_mvit(name: str, num_classes: int = 400) -> MViT:
    """Build the variant ``name`` of :data:`MVIT_CONFIGS` with random weights."""
    return MViT(config_named(MVIT_CONFIGS, name, "MViT"), num_classes=num_classes)


def _register() -> None:
    for arch, url in TV_URLS.items():
        cfg = MVIT_CONFIGS[arch]
        spec = kinetics_spec(arch, num_frames=cfg.num_frames, frame_stride=4, crop_size=cfg.image_size)
        register_variant("mvit", arch, build_mvit, spec)
        register_checkpoint(
            spec,
            "k400",
            weights=WeightsSource(kind="url", url=url, licence=licences.TORCHVISION_K400),
            description="Kinetics-400, torchvision (ported from the paper)",
        )
    cfg = MVIT_CONFIGS["mvit_t"]
    register_variant(
        "mvit",
        "mvit_t",
        build_mvit,
        synthmotion_spec("mvit_t", num_frames=cfg.num_frames, crop_size=cfg.image_size),
    )


_register()
