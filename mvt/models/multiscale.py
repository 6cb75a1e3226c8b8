"""The blocks MViT and MMViT share: multi-head pooling attention (MHPA), the multiscale block and the
CLS/position encoding, with torchvision's parameter names (see :mod:`mvt.models.mvit`).

Each block runs multi-head pooling attention: queries, keys and values are pooled on the token grid by
depthwise 3-D convolutions (followed by LayerNorm; the CLS token is never pooled), the residual path is
max-pooled when the query grid shrinks, and MViTv2 adds a decomposed (t, h, w) relative position bias and
the pooled query to the attention output. Every attention call goes through
:func:`mvt.layers.record_attention`.

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

from ..layers import Recorder, drop_path, record_attention
from ..outputs import Grid, PoolOp


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


def conv_pool(kernel: tuple, stride: tuple, padding: tuple) -> PoolOp | None:
    """A depthwise-conv pooling, or None when it would be the identity (1×1×1 kernel, stride 1)."""
    if math.prod(kernel) == 1 and math.prod(stride) == 1:
        return None
    return PoolOp(tuple(kernel), tuple(stride), tuple(padding), "conv")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- token helpers

_TOKEN_CHUNK = 1024
"""Tokens per chunk for the token-wise half of a block at inference (bitwise the same result)."""


def _pool_tokens(tokens: torch.Tensor, grid: Grid, pool) -> tuple[torch.Tensor, Grid]:
    """Pool the grid tokens of ``tokens`` (B, 1 + |grid|, C) with ``pool`` on (B, C, T, H, W); CLS is kept.

    The grid tokens are viewed channels-last (for B = 1 this is free), which is the layout the CPU
    depthwise-conv and max-pool kernels are fast in.
    """
    cls, cells = tokens.split([1, tokens.shape[1] - 1], dim=1)  # (B, 1, C), (B, |grid|, C): one copy back
    cells = cells.unflatten(1, grid).permute(0, 4, 1, 2, 3)  # (B, C, T, H, W)
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


class _DepthwiseConv3d(torch.autograd.Function):
    """A depthwise ``F.conv3d`` whose input gradient is itself a depthwise convolution (of the zero-inserted
    gradient with the flipped kernel): the CPU kernel for the input gradient of a depthwise 3-D convolution is
    5–20× slower than the convolution, and token flow, Grad-CAM and training all take that gradient. The
    weight gets no gradient here (see :class:`_DepthwiseWeight`)."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding):  # noqa: ANN001, ANN205
        ctx.save_for_backward(weight)
        ctx.stride, ctx.padding, ctx.in_shape = tuple(stride), tuple(padding), x.shape[2:]
        return F.conv3d(x, weight, None, ctx.stride, ctx.padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        (weight,) = ctx.saved_tensors
        stride, k = ctx.stride, weight.shape[2:]
        # the input gradient is the flipped kernel over the gradient with zeros between its entries (stride
        # s) and k - 1 - p on the left of every axis, enough on the right to give the input's size back
        left = [kk - 1 - p for kk, p in zip(k, ctx.padding)]
        inserted = [(n - 1) * s + 1 for n, s in zip(g.shape[2:], stride)]
        right = [n_in + kk - 1 - n - lf for n_in, kk, n, lf in zip(ctx.in_shape, k, inserted, left)]
        if all(s == 1 for s in stride) and left == right and min(left) >= 0:
            gd, pad = g, left  # the convolution pads it
        else:
            size = [lf + n + max(r, 0) for lf, n, r in zip(left, inserted, right)]
            shape = (*g.shape[:2], *size)
            gd = torch.empty(shape, dtype=g.dtype, device=g.device, memory_format=torch.channels_last_3d)
            gd.zero_()
            gd[
                :,
                :,
                left[0] : left[0] + inserted[0] : stride[0],
                left[1] : left[1] + inserted[1] : stride[1],
                left[2] : left[2] + inserted[2] : stride[2],
            ] = g
            pad = [0, 0, 0]
        gx = F.conv3d(gd, weight.flip(2, 3, 4), None, 1, pad, 1, weight.shape[0])
        if gx.shape[2:] != ctx.in_shape:  # a right margin below zero: crop
            gx = gx[:, :, : ctx.in_shape[0], : ctx.in_shape[1], : ctx.in_shape[2]]
        return gx, None, None, None


class _DepthwiseWeight(torch.autograd.Function):
    """Zeros shaped like the convolution's output, whose backward is the weight's gradient: a node of its
    own, so autograd runs it only when the weight's gradient is asked for (training), not for gradients
    with respect to the input alone (token flow, attributions)."""

    @staticmethod
    def forward(ctx, weight, x, stride, padding, out_shape):  # noqa: ANN001, ANN205
        ctx.save_for_backward(weight, x)
        ctx.stride, ctx.padding = tuple(stride), tuple(padding)
        return weight.new_zeros(()).expand(out_shape)

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        weight, x = ctx.saved_tensors
        c = weight.shape[0]
        gw = torch.ops.aten.convolution_backward(
            g, x, weight, None, ctx.stride, ctx.padding, (1, 1, 1), False, (0, 0, 0), c, (False, True, False)
        )[1]
        return gw, None, None, None, None


def depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor, stride: Grid, padding: Grid) -> torch.Tensor:
    """``F.conv3d(x, weight, stride=stride, padding=padding, groups=C)`` for ``x`` ``(B, C, T, H, W)`` and
    ``weight`` ``(C, 1, kt, kh, kw)``, with a fast input gradient (same values)."""
    out = _DepthwiseConv3d.apply(x, weight.detach(), stride, padding)
    if torch.is_grad_enabled() and weight.requires_grad:
        out = out + _DepthwiseWeight.apply(weight, x.detach(), stride, padding, out.shape)
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
            return depthwise_conv3d(cells, weight, op.stride, op.padding)

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
        self, x: torch.Tensor, grid: Grid, rec: Recorder | None = None, view: int | None = None
    ) -> tuple[torch.Tensor, Grid]:
        """``x`` (B, N, dim_in) normalised tokens on ``grid`` → (out (B, Nq, attn_dim), q grid). With ``rec``
        the call is recorded as block ``cfg.index`` of stage ``cfg.stage`` (``view``: MMViT's tower)."""
        b = x.shape[0]
        cfg, dim = self.cfg, self.cfg.attn_dim
        q, k, v, q_grid, k_grid = self.pooled_qkv(x, grid)
        where = {}
        if rec is not None:
            where = dict(
                stage=cfg.stage,
                block=cfg.index,
                kind="joint",
                q_grid=q_grid,
                k_grid=k_grid,
                num_prefix=1,
                view=view,
                in_grid=grid,
                q_pool=cfg.q_pool,
                kv_pool=cfg.kv_pool,
                skip_pool=cfg.skip_pool,
                residual_pool=cfg.residual_pool,
            )
        if cfg.rel_pos:  # the bias is folded into the dot product: scale 1 on the augmented q/k
            q_aug, k_aug = self._with_rel_pos(q, k, q_grid, k_grid)  # (B, N, heads, d + E)
            qt, kt, scale = q_aug.transpose(1, 2), k_aug.transpose(1, 2), 1.0
        else:
            qt, kt, scale = q.transpose(1, 2), k.transpose(1, 2), self.scale  # (B, heads, N, d)
        out = record_attention(qt, kt, v.transpose(1, 2), rec, scale=scale, **where)  # (B, heads, Nq, d)
        out = out.transpose(1, 2)  # (B, Nq, heads, d)
        if cfg.residual_pool:  # MViTv2: add the pooled query, CLS row excluded
            res = out + q  # (B, Nq, heads, d)
            res[:, 0] = out[:, 0]
            out = res
        return self.project(out.reshape(b, -1, dim)), q_grid  # (B, Nq, dim)


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
        self, x: torch.Tensor, grid: Grid, rec: Recorder | None = None, view: int | None = None
    ) -> tuple[torch.Tensor, Grid]:
        """``x`` (B, 1 + |grid|, dim_in) → (B, 1 + |q grid|, dim_out) and the q grid; ``rec``/``view``: see
        :meth:`PoolingAttention.forward`."""
        cfg, p = self.cfg, (self.cfg.drop_path if self.training else 0.0)
        x_norm = self.norm1(x)
        attn_out, q_grid = self.attn(x_norm, grid, rec, view)
        if self.project is not None and cfg.dim_mul_in_att:
            x = self.project(x_norm)  # (B, N, dim_out)
        if cfg.skip_pool is not None:
            op = cfg.skip_pool
            x, _ = _pool_tokens(x, grid, lambda c: F.max_pool3d(c, op.kernel, op.stride, op.padding))
        n = x.shape[1]
        if self.training or n < 2 * _TOKEN_CHUNK:
            return self._mlp_half(x, attn_out, p), q_grid
        # Token-wise from here on: run in chunks so the 4×-wide MLP activations stay in cache (split, not
        # slices: backwards, a split is one concatenation where every slice would be a zero-filled copy).
        pairs = zip(x.split(_TOKEN_CHUNK, dim=1), attn_out.split(_TOKEN_CHUNK, dim=1))
        return torch.cat([self._mlp_half(a, b, p) for a, b in pairs], dim=1), q_grid

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
