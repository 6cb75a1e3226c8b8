"""MViT v1 and MViTv2: multiscale video transformers with pooling attention, returning their attention.

Papers: Fan et al., "Multiscale Vision Transformers" (ICCV 2021, arXiv 2104.11227) and Li et al., "MViTv2:
Improved Multiscale Vision Transformers for Classification and Detection" (CVPR 2022, arXiv 2112.01526).
Checkpoints: torchvision's Kinetics-400 ports ``mvit_v1_b-dbeb1030.pth`` and ``mvit_v2_s-ae3be167.pth``
(https://download.pytorch.org/models/). This module uses torchvision's state-dict key names unchanged, so
those files load with an identity conversion and give torchvision's logits.

Each block runs multi-head pooling attention (MHPA): queries, keys and values are pooled on the token grid
by depthwise 3-D convolutions (followed by LayerNorm; the CLS token is never pooled), the residual path is
max-pooled when the query grid shrinks, and MViTv2 adds a decomposed (t, h, w) relative position bias and
the pooled query to the attention output. ``model(x)`` runs the fused attention kernel (the relative position bias
folded into it); ``model.forward_with_attention(x)`` runs the same blocks with an explicit
softmax and returns every block's attention as an :class:`~mvt.outputs.AttentionMap`.

Speed notes (CPU): token tensors are kept as ``(B, N, C)`` with the CLS token first, so the patch tokens are
already a channels-last 3-D grid; q/k/v pooling runs as one channels-last depthwise convolution per distinct
pooling (k and v together, q with them when its pooling is the same). The relative position bias has rank
kt + kh + kw per query, so instead of an (Nq, Nk) mask it is folded into the dot product as extra q/k
features (see :meth:`PoolingAttention._with_rel_pos`): exact, and far cheaper than writing and reading a mask.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import (
    attention,
    capture_mode,
    drop_path,
    hold_normalisers,
    init_linear_and_norm,
    summarize_heads,
)
from ..outputs import AttentionMap, Footprint, Grid, ModelOutput, PoolOp, StageInfo
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

# --------------------------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class MViTStage:
    """One scale stage: ``depth`` blocks of width ``dim`` with ``heads`` attention heads."""

    depth: int
    dim: int
    heads: int


@dataclass(frozen=True)
class MViTBlockConfig:
    """Everything one block needs, derived from :class:`MViTConfig` (see :meth:`MViTConfig.block_configs`)."""

    index: int
    stage: int
    dim_in: int
    dim_out: int
    attn_dim: int
    heads: int
    q_pool: PoolOp | None
    kv_pool: PoolOp | None
    skip_pool: PoolOp | None
    in_grid: Grid
    """Nominal token grid entering the block (sizes the relative-position tables)."""
    rel_pos: bool
    residual_pool: bool
    dim_mul_in_att: bool
    mlp_ratio: float
    drop_path: float
    norm_eps: float

    @property
    def head_dim(self) -> int:
        return self.attn_dim // self.heads

    @property
    def rel_pos_sizes(self) -> tuple[int, int]:
        """(spatial, temporal) lengths of the relative-position tables, as in the reference models."""
        size = max(self.in_grid[1:])
        q_size = size // (self.q_pool.stride[1] if self.q_pool else 1)
        kv_size = size // (self.kv_pool.stride[1] if self.kv_pool else 1)
        return 2 * max(q_size, kv_size) - 1, 2 * self.in_grid[0] - 1


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


def conv_pool(kernel: tuple, stride: tuple, padding: tuple) -> PoolOp | None:
    """A depthwise-conv pooling, or None when it would be the identity (1×1×1 kernel, stride 1)."""
    if math.prod(kernel) == 1 and math.prod(stride) == 1:
        return None
    return PoolOp(tuple(kernel), tuple(stride), tuple(padding), "conv")  # type: ignore[arg-type]


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

# --------------------------------------------------------------------------------------------- token helpers

_TOKEN_CHUNK = 1024
"""Tokens per chunk for the token-wise half of a block at inference (bitwise the same result)."""


def _pool_tokens(tokens: torch.Tensor, grid: Grid, pool) -> tuple[torch.Tensor, Grid]:
    """Pool the grid tokens of ``tokens`` (B, 1 + |grid|, C) with ``pool`` on (B, C, T, H, W); CLS is kept.

    The grid tokens are viewed channels-last (for B = 1 this is free), which is the layout the CPU
    depthwise-conv and max-pool kernels are fast in.
    """
    cls = tokens[:, :1]  # (B, 1, C)
    cells = tokens[:, 1:].unflatten(1, grid).permute(0, 4, 1, 2, 3)  # (B, C, T, H, W)
    pooled = pool(cells.contiguous(memory_format=torch.channels_last_3d))  # (B, C, T', H', W')
    new_grid = tuple(pooled.shape[2:])
    pooled = pooled.permute(0, 2, 3, 4, 1).flatten(1, 3)  # (B, T'H'W', C)
    return torch.cat((cls, pooled), dim=1), new_grid  # type: ignore[return-value]


def _head_norm(tokens: torch.Tensor, norms: list[nn.LayerNorm], heads: int) -> torch.Tensor:
    """LayerNorm over each head's channels; ``tokens`` is (B, N, m·heads·d) for ``m`` tensors, each with its
    own norm. Returns (B, N, m, heads, d)."""
    b, n, _ = tokens.shape
    m, d = len(norms), norms[0].normalized_shape[0]
    x = tokens.view(b, n, m, heads, d)  # (B, N, m, heads, d)
    if m == 1:
        return F.layer_norm(x, (d,), norms[0].weight, norms[0].bias, norms[0].eps)
    x = F.layer_norm(x, (d,), eps=norms[0].eps)
    weight = torch.stack([nm.weight for nm in norms]).view(m, 1, d)  # (m, 1, d)
    bias = torch.stack([nm.bias for nm in norms]).view(m, 1, d)
    return torch.addcmul(bias, x, weight)


@functools.lru_cache(maxsize=64)
def _rel_index(q: int, k: int, device: torch.device) -> torch.Tensor:
    """Table index of the relative distance between query i and key j on one axis, shape (q, k).

    When the axes differ in length the coarser one is scaled up, so distances are measured on the finer grid.
    Cached (read-only; built outside inference mode so autograd may use it).
    """
    with torch.inference_mode(False):
        q_scale, k_scale = max(k / q, 1.0), max(q / k, 1.0)
        qi = torch.arange(q, dtype=torch.float32)[:, None] * q_scale
        kj = (torch.arange(k, dtype=torch.float32)[None, :] + (1.0 - k)) * k_scale
        return (qi - kj).long().to(device)


def _resize_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly resample a (L, d) relative-position table to ``length`` rows (for non-nominal inputs)."""
    if table.shape[0] == length:
        return table
    return F.interpolate(table.t()[None], size=length, mode="linear")[0].t()  # (length, d)


@functools.lru_cache(maxsize=64)
def _grid_onehot(grid: Grid, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(1 + T·H·W, T + H + W): row 1 + i one-hot encodes token i's t, h and w (t-major raster); row 0 (CLS) is 0.

    Cached (read-only; built outside inference mode so autograd may use it)."""
    with torch.inference_mode(False):
        t, h, w = grid
        idx = torch.arange(t * h * w, device=device)
        cols = torch.stack((idx // (h * w), t + (idx // w) % h, t + h + idx % w), dim=1)  # (THW, 3)
        out = torch.zeros(1 + t * h * w, t + h + w, device=device, dtype=dtype)
        out[1:].scatter_(1, cols, 1.0)
        return out


# --------------------------------------------------------------------------------------------- modules


class _PoolNorm(nn.Module):
    """Holds one pooling's parameters under torchvision's names: ``pool`` (depthwise Conv3d, shared by all
    heads) and ``norm_act.0`` (LayerNorm applied after pooling)."""

    def __init__(self, op: PoolOp, head_dim: int, eps: float):
        super().__init__()
        self.pool = nn.Conv3d(
            head_dim, head_dim, op.kernel, stride=op.stride, padding=op.padding, groups=head_dim, bias=False
        )
        self.norm_act = nn.Sequential(nn.LayerNorm(head_dim, eps=eps))


class PoolingAttention(nn.Module):
    """Multi-head pooling attention (MHPA) with optional MViTv2 relative position bias and residual pooling."""

    def __init__(self, cfg: MViTBlockConfig):
        super().__init__()
        self.cfg = cfg
        dim, heads, d = cfg.attn_dim, cfg.heads, cfg.head_dim
        self.scale = d**-0.5
        self.qkv = nn.Linear(cfg.dim_in, 3 * dim)
        self.project = nn.Sequential(nn.Linear(dim, dim))
        self.pool_q = _PoolNorm(cfg.q_pool, d, cfg.norm_eps) if cfg.q_pool else None
        self.pool_k = _PoolNorm(cfg.kv_pool, d, cfg.norm_eps) if cfg.kv_pool else None
        self.pool_v = _PoolNorm(cfg.kv_pool, d, cfg.norm_eps) if cfg.kv_pool else None
        self.fuse_qkv_pool = cfg.q_pool == cfg.kv_pool
        if cfg.rel_pos:
            spatial, temporal = cfg.rel_pos_sizes
            self.rel_pos_h = nn.Parameter(torch.zeros(spatial, d))
            self.rel_pos_w = nn.Parameter(torch.zeros(spatial, d))
            self.rel_pos_t = nn.Parameter(torch.zeros(temporal, d))
            for p in (self.rel_pos_h, self.rel_pos_w, self.rel_pos_t):
                nn.init.trunc_normal_(p, std=0.02)
        self.heads = heads

    def _pool_norm(
        self, tokens: torch.Tensor, grid: Grid, pools: list[_PoolNorm]
    ) -> tuple[torch.Tensor, Grid]:
        """Pool ``m`` tensors stacked on the channel axis of ``tokens`` (B, N, m·C) in one depthwise conv, then
        LayerNorm each head. Returns (B, N', m, heads, d) and the pooled grid."""
        op, h = pools[0].pool, self.heads
        weight = torch.cat([p.pool.weight.repeat(h, 1, 1, 1, 1) for p in pools])  # (m·h·d, 1, kt, kh, kw)

        def conv(cells: torch.Tensor) -> torch.Tensor:
            return F.conv3d(cells, weight, None, op.stride, op.padding, 1, weight.shape[0])

        pooled, new_grid = _pool_tokens(tokens, grid, conv)  # (B, 1 + |new_grid|, m·C)
        return _head_norm(pooled, [p.norm_act[0] for p in pools], h), new_grid

    def _with_rel_pos(
        self, q: torch.Tensor, k: torch.Tensor, q_grid: Grid, k_grid: Grid
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fold the decomposed relative position bias into the dot product: returns ``(q', k')`` with
        ``q'·k'ᵀ = scale · q·kᵀ + bias`` exactly, where bias is zero on the CLS row and column.

        The bias between a query at (t, h, w) and a key at (t', h', w') is
        ``q·R_t[t, t'] + q·R_h[h, h'] + q·R_w[w, w']`` (R_a[i, j] = table_a[index_a(i, j)], ``q`` unscaled).
        So ``q' = [scale·q, q·R_t[t], q·R_h[h], q·R_w[w]]`` (E = kt + kh + kw extra features) and
        ``k' = [k, onehot(t'), onehot(h'), onehot(w')]``. This never builds an (Nq, Nk) mask, and the fused
        kernel stays on its fast path. ``q`` (B, Nq, heads, d), ``k`` (B, Nk, heads, d) → (…, d + E).
        """
        tables = []
        for table, qn, kn in zip((self.rel_pos_t, self.rel_pos_h, self.rel_pos_w), q_grid, k_grid):
            table = _resize_table(table, 2 * max(qn, kn) - 1)
            tables.append(table[_rel_index(qn, kn, table.device)])  # (qn, kn, d)
        r_t, r_h, r_w = tables
        cells = q[:, 1:].unflatten(1, q_grid)  # (B, qt, qh, qw, heads, d)
        rel = torch.cat(
            (
                torch.einsum("bthwnc,tkc->bthwnk", cells, r_t),  # (B, qt, qh, qw, heads, kt)
                torch.einsum("bthwnc,hkc->bthwnk", cells, r_h),  # (B, qt, qh, qw, heads, kh)
                torch.einsum("bthwnc,wkc->bthwnk", cells, r_w),  # (B, qt, qh, qw, heads, kw)
            ),
            dim=-1,
        ).flatten(1, 3)  # (B, Nq-1, heads, E)
        rel = F.pad(rel, (0, 0, 0, 0, 1, 0))  # (B, Nq, heads, E): zero for the CLS query
        q_aug = torch.cat((q * self.scale, rel), dim=-1)  # (B, Nq, heads, d + E)
        onehot = _grid_onehot(k_grid, k.device, k.dtype)  # (Nk, E), zero row for the CLS key
        k_aug = torch.cat(
            (k, onehot[None, :, None, :].expand(*k.shape[:3], -1)), dim=-1
        )  # (B, Nk, heads, d+E)
        return q_aug, k_aug

    def pooled_qkv(
        self, x: torch.Tensor, grid: Grid
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Grid, Grid]:
        """The pooled, normalised queries, keys and values of this attention, without the attention itself.

        ``x`` (B, N, dim_in) normalised tokens on ``grid`` → q (B, Nq, heads, d), k and v (B, Nk, heads, d), the
        q grid and the k grid. The first half of :meth:`forward`; MMViT's cross-view blocks attend over the
        concatenation of several views' results.
        """
        dim, h, d = self.cfg.attn_dim, self.heads, self.cfg.head_dim
        w, bias = self.qkv.weight, self.qkv.bias
        if self.fuse_qkv_pool:  # q, k, v share one pooling (or none): one linear, one conv
            qkv = F.linear(x, w, bias)  # (B, N, 3·dim)
            if self.pool_q is not None:
                qkv5, q_grid = self._pool_norm(qkv, grid, [self.pool_q, self.pool_k, self.pool_v])
            else:
                qkv5, q_grid = qkv.unflatten(-1, (3, h, d)), grid  # (B, N, 3, heads, d)
            q, k, v = qkv5.unbind(2)  # (B, Nq, heads, d) each
            return q, k, v, q_grid, q_grid
        q = F.linear(x, w[:dim], bias[:dim])  # (B, N, dim)
        kv = F.linear(x, w[dim:], bias[dim:])  # (B, N, 2·dim)
        if self.pool_q is not None:
            q, q_grid = self._pool_norm(q, grid, [self.pool_q])
            q = q.squeeze(2)  # (B, Nq, heads, d)
        else:
            q, q_grid = q.unflatten(-1, (h, d)), grid  # (B, N, heads, d)
        if self.pool_k is not None:
            kv5, k_grid = self._pool_norm(kv, grid, [self.pool_k, self.pool_v])
        else:
            kv5, k_grid = kv.unflatten(-1, (2, h, d)), grid  # (B, N, 2, heads, d)
        k, v = kv5.unbind(2)  # (B, Nk, heads, d)
        return q, k, v, q_grid, k_grid

    def forward(
        self, x: torch.Tensor, grid: Grid, need_weights: bool = False
    ) -> tuple[torch.Tensor, Grid, Grid, torch.Tensor | None]:
        """``x`` (B, N, dim_in) normalised tokens on ``grid`` → (out (B, Nq, attn_dim), q grid, k grid, probs)."""
        b = x.shape[0]
        dim, d = self.cfg.attn_dim, self.cfg.head_dim
        q, k, v, q_grid, k_grid = self.pooled_qkv(x, grid)
        if self.cfg.rel_pos:
            q_aug, k_aug = self._with_rel_pos(q, k, q_grid, k_grid)  # (B, N, heads, d + E)
            extra = q_aug.shape[-1] - d
            # The fused kernel needs equal q/k/v widths: pad v with zeros (their outputs are dropped).
            v_in = v if need_weights is True else F.pad(v, (0, extra))
            out, probs = attention(
                q_aug.transpose(1, 2),  # (B, heads, Nq, d + E)
                k_aug.transpose(1, 2),
                v_in.transpose(1, 2),
                need_weights=need_weights,
                scale=1.0,
            )
            out = out[..., :d]  # (B, heads, Nq, d)
        else:
            out, probs = attention(
                q.transpose(1, 2),  # (B, heads, Nq, d)
                k.transpose(1, 2),
                v.transpose(1, 2),
                need_weights=need_weights,
                scale=self.scale,
            )
        out = out.transpose(1, 2)  # (B, Nq, heads, d)
        if self.cfg.residual_pool:  # MViTv2: add the pooled query, CLS row excluded
            res = out + q  # (B, Nq, heads, d)
            res[:, 0] = out[:, 0]
            out = res
        out = self.project(out.reshape(b, -1, dim))  # (B, Nq, dim)
        return out, q_grid, k_grid, probs


class MultiscaleBlock(nn.Module):
    """Pre-norm transformer block with pooling attention, max-pooled skip path and width change."""

    def __init__(self, cfg: MViTBlockConfig):
        super().__init__()
        self.cfg = cfg
        attn_dim = cfg.attn_dim
        self.norm1 = nn.LayerNorm(cfg.dim_in, eps=cfg.norm_eps)
        self.attn = PoolingAttention(cfg)
        self.norm2 = nn.LayerNorm(attn_dim, eps=cfg.norm_eps)
        hidden = int(attn_dim * cfg.mlp_ratio)
        # Indices follow torchvision's MLP (Linear, GELU, Dropout, Linear): keys mlp.0 and mlp.3.
        self.mlp = nn.Sequential(
            nn.Linear(attn_dim, hidden), nn.GELU(), nn.Identity(), nn.Linear(hidden, cfg.dim_out)
        )
        self.project = nn.Linear(cfg.dim_in, cfg.dim_out) if cfg.dim_in != cfg.dim_out else None

    def forward(
        self, x: torch.Tensor, grid: Grid, need_weights: bool = False
    ) -> tuple[torch.Tensor, Grid, Grid, torch.Tensor | None]:
        """``x`` (B, 1 + |grid|, dim_in) → (B, 1 + |q grid|, dim_out), q grid, k grid, per-head probs or None."""
        cfg, p = self.cfg, (self.cfg.drop_path if self.training else 0.0)
        x_norm = self.norm1(x)
        attn_out, q_grid, k_grid, probs = self.attn(x_norm, grid, need_weights)
        if self.project is not None and cfg.dim_mul_in_att:
            x = self.project(x_norm)  # (B, N, dim_out)
        if cfg.skip_pool is not None:
            op = cfg.skip_pool
            x, _ = _pool_tokens(x, grid, lambda c: F.max_pool3d(c, op.kernel, op.stride, op.padding))
        n = x.shape[1]
        if self.training or n < 2 * _TOKEN_CHUNK:
            return self._mlp_half(x, attn_out, p), q_grid, k_grid, probs
        # Token-wise from here on: run in chunks so the 4×-wide MLP activations stay in cache.
        chunks = [
            self._mlp_half(x[:, i : i + _TOKEN_CHUNK], attn_out[:, i : i + _TOKEN_CHUNK], p)
            for i in range(0, n, _TOKEN_CHUNK)
        ]
        return torch.cat(chunks, dim=1), q_grid, k_grid, probs

    def _mlp_half(self, x: torch.Tensor, attn_out: torch.Tensor, p: float) -> torch.Tensor:
        """Attention residual, then the MLP sub-block, on (B, n, ·) tokens."""
        x = x + drop_path(attn_out, p, self.training)
        x_norm = self.norm2(x)
        if self.project is not None and not self.cfg.dim_mul_in_att:
            x = self.project(x_norm)  # v1: width change on the MLP branch's residual
        return x + drop_path(self.mlp(x_norm), p, self.training)


class PositionalEncoding(nn.Module):
    """CLS token, and for v1 separable absolute position embeddings (torchvision's ``pos_encoding``)."""

    def __init__(self, dim: int, grid: Grid, abs_pos: bool):
        super().__init__()
        self.grid = grid
        self.class_token = nn.Parameter(torch.zeros(dim))
        if abs_pos:
            self.spatial_pos = nn.Parameter(torch.zeros(grid[1] * grid[2], dim))
            self.temporal_pos = nn.Parameter(torch.zeros(grid[0], dim))
            self.class_pos = nn.Parameter(torch.zeros(dim))
        else:
            self.spatial_pos = self.temporal_pos = self.class_pos = None

    def forward(self, cells: torch.Tensor, grid: Grid) -> torch.Tensor:
        """``cells`` (B, T·H·W, C) → tokens (B, 1 + T·H·W, C) with the CLS token first."""
        b, _, c = cells.shape
        cls = self.class_token.expand(b, 1, c)  # (B, 1, C)
        if self.spatial_pos is None:
            return torch.cat((cls, cells), dim=1)
        if tuple(grid) != tuple(self.grid):
            raise ValueError(
                f"this MViT v1 has absolute position embeddings for a {self.grid} token grid, got {grid}; "
                "feed clips of the spec's frame count and crop size"
            )
        pos = (self.temporal_pos[:, None, :] + self.spatial_pos[None]).reshape(-1, c)  # (T·HW, C), t-major
        return torch.cat((cls + self.class_pos, cells + pos), dim=1)


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

    def _run(self, x: torch.Tensor, need_weights: bool):
        """Shared trunk of both paths. Returns logits, per-block records and per-stage records."""
        x, grid = self._embed(x)
        blocks, stages = [], []
        last = len(self.stage_blocks) - 1
        for stage, indices in enumerate(self.stage_blocks):
            # The head reads only the CLS token, which the last block computes from the tokens entering it:
            # the last stage is tapped there (same grid), else its Grad-CAM would see zero gradient.
            tap_before_last = stage == last and len(indices) > 1
            for j, i in enumerate(indices):
                if tap_before_last and j == len(indices) - 1:
                    x = through_tap(self.stage_taps[stage], x, grid, num_prefix=1)
                in_grid, x_in = grid, x
                x, grid, k_grid, probs = self.blocks[i](x, grid, need_weights)
                blocks.append((i, stage, in_grid, grid, k_grid, probs, x_in))
            if not tap_before_last:
                x = through_tap(self.stage_taps[stage], x, grid, num_prefix=1)
            stages.append((stage, grid, x.shape[-1], indices))
        logits = self.head(self.norm(x[:, 0]))  # LayerNorm is per token: only the CLS token is needed
        return logits, blocks, stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 3, T, H, W) → logits (B, num_classes), with fused attention."""
        return self._run(x, need_weights=False)[0]

    def forward_with_attention(
        self,
        x: torch.Tensor,
        *,
        keep_weights: bool = False,
        lazy: bool = False,
        conservative: bool = False,
    ) -> ModelOutput:
        """Logits plus one :class:`AttentionMap` per block and one :class:`StageInfo` per stage.

        With ``keep_weights`` each map also carries the per-head probabilities on the autograd graph. With
        ``lazy`` the blocks run the fast path and each map's head mean is computed on first read of ``probs``
        (from the kept q and k; its CLS row is computed now). With ``conservative`` the pass runs under
        :func:`mvt.layers.hold_normalisers` and each map carries the tokens entering its block
        (``AttentionMap.tokens``, for :func:`mvt.token_flow`).
        """
        input_shape = tuple(x.shape[2:]) if x.ndim == 5 else (1, *x.shape[2:])
        with hold_normalisers(conservative):
            logits, blocks, stages = self._run(x, need_weights=capture_mode(keep_weights, lazy, conservative))
        maps = []
        for i, stage, in_grid, q_grid, k_grid, probs, x_in in blocks:
            bc = self.block_cfgs[i]
            mean, cls_row = summarize_heads(probs, num_prefix=1)  # (B, 1, Nq, Nk), (B, heads, Nk)
            maps.append(
                AttentionMap(
                    stage=stage,
                    block=i,
                    kind="joint",
                    heads=bc.heads,
                    q_grid=q_grid,
                    k_grid=k_grid,
                    num_prefix=1,
                    probs=mean,
                    cls_row=cls_row,
                    in_grid=in_grid,
                    q_pool=bc.q_pool,
                    kv_pool=bc.kv_pool,
                    skip_pool=bc.skip_pool,
                    residual_pool=bc.residual_pool,
                    weights=probs if keep_weights else None,
                    tokens=x_in if conservative else None,
                )
            )
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
        return ModelOutput(
            logits=logits,
            attentions=maps,
            stages=infos,
            input_shape=input_shape,  # type: ignore[arg-type]
            embed=self.cfg.embed_footprint,
            pooling="cls",
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
            weights=WeightsSource(kind="url", url=url),
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
