"""HVT: Scalable Vision Transformers with Hierarchical Pooling (Pan, Zhuang, Liu, He, Cai; ICCV 2021).

A DeiT-style ViT with no CLS token whose token *sequence* is shortened by ``MaxPool1d(kernel=3, stride=2)``
(no padding) at the end of every ``pool_block_width``-th block (block 0 always pools). Each pooling block
owns a fresh learned position embedding, added right after its pool. The classifier reads the mean of the
final (layer-normed) tokens. For 224² images (14×14 = 196 patches) the sequence length goes
196 → 97 → 48 → 23 → 11 as the variant pools. Weights: the official release of ``zhuang-group/HVT``
(GitHub release assets ``hvt_ti_1.pth``, ``hvt_s_1.pth`` (v1.1, retrained), ``hvt_s_2.pth``, ``hvt_s_3.pth``,
``scale_hvt_ti_4.pth`` = HVT-S-4; ImageNet-1k; state dict under ``['model']``). Our parameter names are the
official ones, so these files load strictly with no conversion.

How HVT sees a video (two ways):

* **Per frame** (``hvt_ti_1``, ``hvt_s_1`` … ``hvt_s_4``; tags ``.in1k``): the ImageNet image model runs on
  every frame independently and the class logits are averaged over time — the "average pool frame-level
  representations" baseline of the ViViT paper. Such a model knows nothing about motion: its predictions are
  ImageNet object classes, and shuffling the frames changes nothing. Input ``(B, 3, T, 224, 224)`` runs as
  ``B·T`` images (a 4-D ``(B, 3, 224, 224)`` image batch is accepted too). The released models were
  evaluated with a bicubic resize to 256 and a 224 centre crop; ``mvt.preprocess`` resizes bilinearly (with
  antialiasing), so logits can differ slightly from the paper's evaluation pipeline.
* **Tubelet** (``hvt_t``, for SynthMotion clips of 16×112²): a Conv3d tubelet embedding (2×16×16) turns the
  clip into an 8×7×7 space-time token grid, flattened in (t, h, w) raster order, and HVT's 1-D max pooling
  runs over that space-time sequence (392 → 195 → 97 → 48 → 23 tokens). A pooling window of 3 consecutive
  raster tokens mostly merges horizontal neighbours, sometimes wrapping to the next row or the next time
  step: the pooling is blind to the grid, which is exactly what the spans below make visible.

What ``forward_with_attention`` reports (see ``mvt.outputs``):

* A *stage* is a run of blocks whose attention sees the same sequence length; block 0 alone is stage 0
  (it attends over all patches, then pools). ``StageInfo.grid`` is ``(1, 1, N)``: pooled tokens are not a
  grid, so every sequence is written as a 1-D grid; ``StageInfo.footprint`` is the patch/tubelet embedding's.
* One ``AttentionMap`` per block, ``kind="joint"``, ``num_prefix=0`` (no CLS, so ``cls_row`` is ``None``),
  ``q_grid = k_grid = (1, 1, N)``. A pooling block has ``post_pool = PoolOp(kernel=(1, 1, 3),
  stride=(1, 1, 2), padding=(0, 0, 0), kind="max")``: the MaxPool1d written on the 1-D grid.
  Per-frame models treat the T frames as T independent groups: ``probs()`` is ``(B, T, N, N)`` with
  ``group_grid = (T, 1, 1)`` (group ``t`` is frame ``t``); the per-head probabilities of
  ``Capture.GRADIENTS`` are ``(B·T, heads, N, N)``, batch-major. Tubelet models have one group.
* ``extras["patch_grid"]`` is the (T, H, W) grid of the embedding's patches: ``(1, 14, 14)`` per frame for
  per-frame models (the frame is the group), ``(8, 7, 7)`` for ``hvt_t``.
  ``extras["spans"][s]`` is an int64 array ``(N_s, 2)``: token ``i`` of stage ``s`` covers the raster patch
  indices ``[start, stop)`` of ``patch_grid`` (contiguous, because 1-D pooling windows are contiguous runs
  of the previous sequence). For max pooling a span is the *support* of the token: the window the max was
  taken over. Each channel's argmax picks one patch from it, possibly a different one per channel, so the
  span says where the token *may* come from, not which patch it is. Spans describe the pooling (residual)
  path only; attention mixes information from every token before each pool. Because the pools have no
  padding, a window that does not fit is dropped: after the first pool of a 196-token sequence the last
  patch (bottom-right) is in no span, and 48 → 23 drops one more pooled token; the union of each stage's
  spans is the prefix ``[0, spans[s][-1, 1])``.
* ``stage_taps[s]`` sees the last tokens of stage ``s`` (before its pool) as ``(B, C, T, 1, N)``: the frames
  on the T axis for per-frame models (``T = 1`` for ``hvt_t``) and the sequence on the W axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import licences
from ..layers import (
    ALL_CAPTURES,
    Capture,
    Mlp,
    Recorder,
    SelfAttention,
    capturing,
    drop_path,
    init_linear_and_norm,
)
from ..outputs import Footprint, ModelOutput, PoolOp, StageInfo
from ..weights import WeightsSource
from ..zoo import ModelSpec
from .contract import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_clip,
    config_named,
    identity_taps,
    kinetics_spec,
    register_checkpoint,
    register_variant,
    synthmotion_spec,
    through_tap,
)

RELEASE_URL = "https://github.com/zhuang-group/HVT/releases/download"


@dataclass(frozen=True)
class HVTConfig:
    """Architecture of one HVT variant.

    ``tubelet=None`` is the 2-D image model (``Conv2d`` patch embedding, run per frame on videos); an int
    makes a video model with a ``Conv3d`` embedding of ``tubelet × patch × patch`` over ``num_frames`` frames.
    Blocks ``i`` with ``i % pool_block_width == 0`` end with ``MaxPool1d(pool_kernel, pool_stride)``.
    """

    embed_dim: int
    num_heads: int
    depth: int = 12
    pool_block_width: int = 12
    pool_kernel: int = 3
    pool_stride: int = 2  # the official code has a pool_stride option but always uses 2
    mlp_ratio: float = 4.0
    img_size: int = 224
    patch_size: int = 16
    tubelet: int | None = None
    num_frames: int = 1
    norm_eps: float = 1e-6
    drop_path_rate: float = 0.0
    attn_drop_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.tubelet is not None and self.num_frames % self.tubelet:
            raise ValueError(f"num_frames {self.num_frames} is not a multiple of tubelet {self.tubelet}")
        if (self.depth - 1) % self.pool_block_width == 0:
            raise ValueError("the last block must not pool (no block would see the pooled tokens)")
        if block_plan(self)[-1].tokens_in < 1:
            raise ValueError("the sequence is pooled away to nothing; use fewer pools")

    @property
    def per_frame(self) -> bool:
        return self.tubelet is None

    @property
    def patch_grid(self) -> tuple[int, int, int]:
        """(T, H, W) of the embedding's tokens: per frame for image models, per clip for tubelet models."""
        side = self.img_size // self.patch_size
        t = 1 if self.tubelet is None else self.num_frames // self.tubelet
        return (t, side, side)

    @property
    def num_patches(self) -> int:
        t, h, w = self.patch_grid
        return t * h * w


@dataclass(frozen=True)
class BlockPlan:
    """One block: its stage, the sequence length its attention sees, and whether it ends with a pool."""

    index: int
    stage: int
    tokens_in: int
    pools: bool
    tokens_out: int
    last_in_stage: bool


def block_plan(cfg: HVTConfig) -> list[BlockPlan]:
    """Per-block records (the official rule: block ``i`` pools iff ``i % pool_block_width == 0``)."""
    plans, n, stage = [], cfg.num_patches, 0
    for i in range(cfg.depth):
        pools = i % cfg.pool_block_width == 0
        n_out = (n - cfg.pool_kernel) // cfg.pool_stride + 1 if pools else n
        plans.append(BlockPlan(i, stage, n, pools, n_out, pools or i == cfg.depth - 1))
        n, stage = n_out, stage + int(pools)
    return plans


def token_spans(cfg: HVTConfig) -> list[np.ndarray]:
    """Per stage, ``(N_s, 2)`` int64 ``[start, stop)`` raster patch indices each token's pooling windows cover.

    Stage 0 is the patch sequence itself (``[i, i+1)``); a pool with kernel ``k`` and stride ``s`` gives
    output token ``j`` the union of the spans of input tokens ``j*s … j*s+k-1``.
    """
    spans = [np.stack([np.arange(cfg.num_patches), np.arange(1, cfg.num_patches + 1)], axis=1)]
    for plan in block_plan(cfg):
        if not plan.pools:
            continue
        prev = spans[-1]
        first = np.arange(plan.tokens_out) * cfg.pool_stride  # first input token of each window
        last = first + cfg.pool_kernel - 1
        spans.append(np.stack([prev[first, 0], prev[last, 1]], axis=1).astype(np.int64))
    return spans


class Block(nn.Module):
    """Pre-norm transformer block; a pooling block also owns ``pos_embed`` for its pooled sequence."""

    def __init__(self, cfg: HVTConfig, plan: BlockPlan, drop_path_p: float):
        super().__init__()
        dim = cfg.embed_dim
        self.plan = plan
        self.drop_path_p = drop_path_p
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = SelfAttention(dim, cfg.num_heads, attn_drop=cfg.attn_drop_rate)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.pool: nn.MaxPool1d | None = None
        if plan.pools:
            self.pool = nn.MaxPool1d(kernel_size=cfg.pool_kernel, stride=cfg.pool_stride)
            self.pos_embed = nn.Parameter(torch.zeros(1, plan.tokens_out, dim))

    def forward(self, x: torch.Tensor, rec: Recorder | None = None, **layout) -> torch.Tensor:
        """Attention and MLP (without the pool): ``(B, N, C) -> (B, N, C)``; ``rec``/``layout``: the capture
        and where this block's map sits (see :func:`mvt.layers.record_attention`)."""
        a = self.attn(self.norm1(x), rec, **layout)
        x = x + drop_path(a, self.drop_path_p, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_p, self.training)

    def downsample(self, x: torch.Tensor) -> torch.Tensor:
        """MaxPool1d over the sequence, then the new position embedding: ``(B, N, C) -> (B, N', C)``."""
        assert self.pool is not None
        x = self.pool(x.transpose(1, 2)).transpose(1, 2)  # (B, C, N) -> (B, C, N') -> (B, N', C)
        return x + self.pos_embed


class PatchEmbed(nn.Module):
    """Non-overlapping patches (Conv2d) or tubelets (Conv3d) projected to ``embed_dim``; name ``proj``."""

    def __init__(self, cfg: HVTConfig):
        super().__init__()
        p = cfg.patch_size
        if cfg.tubelet is None:
            self.proj: nn.Module = nn.Conv2d(3, cfg.embed_dim, kernel_size=p, stride=p)
        else:
            k = (cfg.tubelet, p, p)
            self.proj = nn.Conv3d(3, cfg.embed_dim, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, 3, H, W) -> (N, C, H', W')   or   (B, 3, T, H, W) -> (B, C, T', H', W')
        return self.proj(x).flatten(2).transpose(1, 2)  # (batch, tokens in (t,h,w) raster order, C)


class HVT(nn.Module):
    """HVT image model (applied per frame to videos) or tubelet video model; see the module docstring."""

    def __init__(self, cfg: HVTConfig, num_classes: int = 1000):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.plan = block_plan(cfg)
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches, dim))
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]  # linear decay rule
        self.blocks = nn.ModuleList(Block(cfg, p, dpr[p.index]) for p in self.plan)
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.head = nn.Linear(dim, num_classes)
        self.stage_taps = identity_taps(self.num_stages)
        self._init_weights()

    @property
    def num_stages(self) -> int:
        return self.plan[-1].stage + 1

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("pos_embed"):
                nn.init.trunc_normal_(p, std=0.02)
        init_linear_and_norm(self)

    # -- input layout -------------------------------------------------------------------------------------

    def _embed_input(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int, tuple[int, int, int]]:
        """Check ``x`` and return (embedding input, batch B, groups G, input (T, H, W))."""
        cfg = self.cfg
        frames = None if cfg.per_frame else cfg.num_frames  # per frame: an image batch is one-frame clips
        x = check_clip(x, model="HVT", frames=frames, size=cfg.img_size, image_ok=cfg.per_frame)
        b, _, t, h, w = x.shape
        if cfg.per_frame:
            frames = x.transpose(1, 2).reshape(
                b * t, 3, h, w
            )  # (B, 3, T, H, W) -> (B*T, 3, H, W), batch-major
            return frames, b, t, (t, h, w)
        return x, b, 1, (t, h, w)

    def _run(self, x: torch.Tensor, rec: Recorder | None):
        """Shared forward: (logits (B, K), B, G, input (T, H, W)); with ``rec``, one map per block."""
        inp, b, groups, in_shape = self._embed_input(x)
        tokens = self.patch_embed(inp) + self.pos_embed  # (B*G, N0, C)
        for blk in self.blocks:
            layout = self._layout(blk.plan, groups) if rec is not None else {}
            if rec is not None:
                rec.enter_block(tokens)
            tokens = blk(tokens, rec, **layout)
            if blk.plan.last_in_stage:  # the tap sees (B, C, G, 1, N): frames on T, the sequence on W
                tap, n = self.stage_taps[blk.plan.stage], tokens.shape[1]
                tokens = through_tap(tap, tokens, (groups, 1, n), batch=b)
            if blk.pool is not None:
                tokens = blk.downsample(tokens)
        feats = self.norm(tokens).mean(dim=1)  # (B*G, C): mean over tokens (no CLS)
        logits = self.head(feats).reshape(b, groups, -1).mean(dim=1)  # (B, G, K) -> (B, K): mean over frames
        return logits, b, groups, in_shape

    def _layout(self, plan: BlockPlan, groups: int) -> dict:
        """Where block ``plan``'s attention sits: its 1-D sequence, the frames as groups, its pool."""
        cfg, n = self.cfg, plan.tokens_in
        pool = (
            PoolOp((1, 1, cfg.pool_kernel), (1, 1, cfg.pool_stride), (0, 0, 0), "max") if plan.pools else None
        )
        return dict(
            stage=plan.stage,
            block=plan.index,
            kind="joint",
            q_grid=(1, 1, n),
            k_grid=(1, 1, n),
            num_prefix=0,
            group_grid=(groups, 1, 1),
            in_grid=(1, 1, n),
            post_pool=pool,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` for a clip ``(B, 3, T, H, W)`` (fused attention)."""
        return self._run(x, None)[0]

    def embed_footprint(self) -> Footprint:
        p, t = self.cfg.patch_size, self.cfg.tubelet or 1
        return Footprint(stride=(t, p, p), kernel=(t, p, p))

    captures = ALL_CAPTURES

    def forward_with_attention(self, x: torch.Tensor, *, capture: Capture = Capture.EAGER) -> ModelOutput:
        """Logits plus one :class:`AttentionMap` per block and one :class:`StageInfo` per stage (see the
        module docstring and :class:`mvt.layers.Capture`)."""
        with capturing(self, capture, x) as rec:
            logits, _, _, in_shape = self._run(x, rec)
        cfg, embed = self.cfg, self.embed_footprint()
        stages = [
            StageInfo(
                stage=s,
                grid=(1, 1, n),
                channels=cfg.embed_dim,
                tokens=n,
                num_prefix=0,
                footprint=embed,
                blocks=tuple(p.index for p in self.plan if p.stage == s),
            )
            for s, n in enumerate(self.stage_tokens())
        ]
        return rec.output(
            logits,
            stages,
            input_shape=in_shape,
            embed=embed,
            pooling="mean",
            extras={"spans": token_spans(cfg), "patch_grid": cfg.patch_grid},
        )

    def stage_tokens(self) -> list[int]:
        """Sequence length seen by each stage's attention, e.g. ``[196, 97, 48, 23, 11]`` for HVT-S-4."""
        out: list[int] = []
        for p in self.plan:
            if p.stage == len(out):
                out.append(p.tokens_in)
        return out


# -- variants (data) -----------------------------------------------------------------------------------------

HVT_CONFIGS: dict[str, HVTConfig] = {
    "hvt_ti_1": HVTConfig(embed_dim=192, num_heads=3, pool_block_width=12),
    "hvt_s_1": HVTConfig(embed_dim=384, num_heads=6, pool_block_width=12),
    "hvt_s_2": HVTConfig(embed_dim=384, num_heads=6, pool_block_width=6),
    "hvt_s_3": HVTConfig(embed_dim=384, num_heads=6, pool_block_width=4),
    "hvt_s_4": HVTConfig(embed_dim=384, num_heads=6, pool_block_width=3),  # released as "scale_hvt_ti_4"
    # Tubelet video model for SynthMotion (16×112² clips): 8×7×7 = 392 tokens, pooled 392→195→97→48→23.
    "hvt_t": HVTConfig(
        embed_dim=128, num_heads=2, depth=8, pool_block_width=2, img_size=112, tubelet=2, num_frames=16
    ),
}

RELEASES: dict[str, str] = {
    "hvt_ti_1": f"{RELEASE_URL}/v1.0/hvt_ti_1.pth",
    "hvt_s_1": f"{RELEASE_URL}/v1.1/hvt_s_1.pth",
    "hvt_s_2": f"{RELEASE_URL}/v1.0/hvt_s_2.pth",
    "hvt_s_3": f"{RELEASE_URL}/v1.0/hvt_s_3.pth",
    "hvt_s_4": f"{RELEASE_URL}/v1.0/scale_hvt_ti_4.pth",
}
"""Official ImageNet-1k weights (GitHub release assets of zhuang-group/HVT), state dict under ``['model']``."""

PAPER_TOP1 = {"hvt_ti_1": 69.64, "hvt_s_1": 78.00, "hvt_s_2": 77.36, "hvt_s_3": 76.32, "hvt_s_4": 75.23}


def build_hvt(name: str, num_classes: int = 1000) -> HVT:
    """Build the variant ``name`` of :data:`HVT_CONFIGS` with random weights."""
    return HVT(config_named(HVT_CONFIGS, name, "HVT"), num_classes=num_classes)


VARIANTS = HVT_CONFIGS
"""Old name, kept for the reference-transcription equivalence test (which stays as it is); use HVT_CONFIGS."""


def _image_spec(arch: str) -> ModelSpec:
    """An ImageNet image model run on each of 16 frames 4 apart (a clip as Kinetics models sample it)."""
    return kinetics_spec(
        arch,
        num_frames=16,
        frame_stride=4,
        crop_size=HVT_CONFIGS[arch].img_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        label_set="imagenet1k",
        per_frame=True,
        num_classes=1000,
    )


def _register() -> None:
    for arch in ("hvt_ti_1", "hvt_s_1", "hvt_s_2", "hvt_s_3", "hvt_s_4"):
        spec = _image_spec(arch)
        register_variant("hvt", arch, build_hvt, spec)
        register_checkpoint(
            spec,
            "in1k",
            weights=WeightsSource(
                kind="url",
                url=RELEASES[arch],
                state_key="model",
                pickle_globals=("argparse.Namespace",),  # main.py saves its args beside the model
                licence=licences.HVT_RELEASE,
            ),
            description="ImageNet-1k, zhuang-group/HVT release (per frame)",
        )
    cfg = HVT_CONFIGS["hvt_t"]
    spec = synthmotion_spec(
        "hvt_t", num_frames=cfg.num_frames, crop_size=cfg.img_size, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )
    register_variant("hvt", "hvt_t", build_hvt, spec)


_register()

__all__ = [
    "HVT",
    "HVTConfig",
    "BlockPlan",
    "HVT_CONFIGS",
    "RELEASES",
    "block_plan",
    "build_hvt",
    "token_spans",
]
