"""The blocks of ViViT (:mod:`mvt.models.vivit`): how one attention call groups the tokens (joint, spatial,
temporal), the pre-LN block of models 1, 2 and 4 (model 4 splitting its heads between time and space),
model 3's factorised block, and the encoder (position embedding, blocks, final LayerNorm). Every attention
call goes through :func:`mvt.layers.record_attention` (via :class:`mvt.layers.SelfAttention`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import Mlp, Recorder, SelfAttention, drop_path, record_attention
from ..outputs import Grid


class BlockConfig(Protocol):
    """What the blocks read of a :class:`mvt.models.vivit.ViViTConfig` (a protocol: no import back)."""

    dim: int
    heads: int
    mlp_dim: int
    qkv_bias: bool
    attn_dropout: float
    dropout: float
    norm_eps: float
    attention_order: str


class GELUTanh(nn.GELU):
    """Tanh-approximated GELU (= HF ``gelu_fast`` / Flax ``nn.gelu`` default)."""

    def __init__(self) -> None:
        super().__init__(approximate="tanh")


@dataclass(frozen=True)
class Layout:
    """How one attention call groups the tokens: ``G`` independent sequences of ``num_prefix + |q_grid|``."""

    kind: str
    group_grid: Grid
    q_grid: Grid
    num_prefix: int
    head_range: tuple[int, int] | None = None


@dataclass
class PassContext:
    """Per-pass context: the batch, the grid and stage of the running encoder, the block; ``rec`` is the
    capture's recorder (``None`` on the fast path)."""

    batch: int
    grid: Grid
    stage: int = 0
    block: int = 0
    rec: Recorder | None = None

    def where(self, layout: Layout) -> dict:
        """The map fields of an attention call with ``layout`` in the current block (empty on the fast path)."""
        if self.rec is None:
            return {}
        return dict(
            stage=self.stage,
            block=self.block,
            kind=layout.kind,
            q_grid=layout.q_grid,
            k_grid=layout.q_grid,
            num_prefix=layout.num_prefix,
            group_grid=layout.group_grid,
            in_grid=self.grid,
            head_range=layout.head_range,
        )


def spatial_layout(grid: Grid, num_prefix: int = 0) -> Layout:
    t, h, w = grid
    return Layout("spatial", (t, 1, 1), (1, h, w), num_prefix)


def temporal_layout(grid: Grid, num_prefix: int = 0) -> Layout:
    t, h, w = grid
    return Layout("temporal", (1, h, w), (t, 1, 1), num_prefix)


class Attention(SelfAttention):
    """Multi-head self-attention (``qkv`` / ``proj``), plus model 4's split-head form."""

    def __init__(self, cfg: BlockConfig):
        super().__init__(cfg.dim, cfg.heads, cfg.qkv_bias, cfg.attn_dropout, cfg.dropout)

    def attend(
        self, x: torch.Tensor, layout: Layout, ctx: PassContext, rows: int | None = None
    ) -> torch.Tensor:
        """Attention within each of the ``BG`` sequences of ``x`` ``(BG, N, D)`` laid out as ``layout``;
        ``rows``: output only the first ``rows`` queries (the rest are unused, see :meth:`ViViT._run`)."""
        return self(x, ctx.rec, rows, **ctx.where(layout))

    def forward_split(self, x: torch.Tensor, ctx: PassContext) -> torch.Tensor:
        """Model 4: heads ``[0, h/2)`` attend over time, heads ``[h/2, h)`` over space; ``x`` is ``(B, T*S, D)``."""
        b, n, d = x.shape
        t, hh, ww = ctx.grid
        s, h2, hd = hh * ww, self.heads // 2, self.head_dim
        qkv = self.qkv(x).view(b, t, s, 3, self.heads, hd)
        # temporal heads: one sequence per (batch, spatial position); spatial heads: one per (batch, time)
        qkv_t = qkv[..., :h2, :].permute(3, 0, 2, 4, 1, 5).reshape(3, b * s, h2, t, hd)
        qkv_s = qkv[..., h2:, :].permute(3, 0, 1, 4, 2, 5).reshape(3, b * t, h2, s, hd)
        p = self.attn_drop if self.training else 0.0
        lay_t = replace(temporal_layout(ctx.grid), head_range=(0, h2))
        lay_s = replace(spatial_layout(ctx.grid), head_range=(h2, self.heads))
        out_t = record_attention(*qkv_t, ctx.rec, dropout_p=p, **ctx.where(lay_t))  # (B*S, h/2, T, hd)
        out_s = record_attention(*qkv_s, ctx.rec, dropout_p=p, **ctx.where(lay_s))  # (B*T, h/2, S, hd)
        out_t = out_t.view(b, s, h2, t, hd).permute(0, 3, 1, 2, 4)  # (B, T, S, h/2, hd)
        out_s = out_s.view(b, t, h2, s, hd).permute(0, 1, 3, 2, 4)  # (B, T, S, h/2, hd)
        return self.project(torch.cat([out_t, out_s], dim=3).reshape(b, n, d))


class Block(nn.Module):
    """Pre-LN transformer block ``x + attn(LN(x))``, ``x + MLP(LN(x))`` (models 1, 2 and 4).

    ``split_heads`` makes the attention model 4's factorised dot-product attention.
    """

    def __init__(self, cfg: BlockConfig, drop_path: float = 0.0, split_heads: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg.dim, cfg.mlp_dim, act=GELUTanh)
        self.split_heads = split_heads
        self.drop_path = drop_path
        self.dropout = cfg.dropout

    def forward(
        self, x: torch.Tensor, layout: Layout | None, ctx: PassContext, rows: int | None = None
    ) -> torch.Tensor:
        """``(BG, N, D) -> (BG, N, D)``; with ``rows``, only the first ``rows`` tokens ``(BG, rows, D)``."""
        y = self.norm1(x)
        if self.split_heads:
            y = self.attn.forward_split(y, ctx)
        else:
            assert layout is not None
            y = self.attn.attend(y, layout, ctx, rows)
        if rows is not None:
            x = x[:, :rows]
        x = x + drop_path(y, self.drop_path, self.training)
        return x + drop_path(self._mlp(self.norm2(x)), self.drop_path, self.training)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp(x)
        return F.dropout(x, self.dropout, self.training) if self.dropout else x


class FactorisedBlock(Block):
    """Model 3 block: spatial attention, temporal attention (order per config), then the MLP.

    ``norm1``/``attn`` are the spatial sublayer (so an image ViT block maps onto them), ``norm_t``/``attn_t``
    the temporal one. ``x`` is ``(B, T*S, D)`` with no prefix tokens.
    """

    def __init__(self, cfg: BlockConfig, drop_path: float = 0.0):
        super().__init__(cfg, drop_path)
        self.norm_t = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn_t = Attention(cfg)
        self.order = cfg.attention_order

    def forward(self, x: torch.Tensor, layout: Layout | None, ctx: PassContext) -> torch.Tensor:
        b, n, d = x.shape
        t, h, w = ctx.grid
        s = h * w
        for axis in self.order.split("_"):
            if axis == "space":
                y = self.attn.attend(
                    self.norm1(x).view(b * t, s, d), spatial_layout(ctx.grid), ctx
                )  # (B*T, S, D)
                y = y.view(b, n, d)
            else:
                y = self.norm_t(x).view(b, t, s, d).transpose(1, 2).reshape(b * s, t, d)  # (B*S, T, D)
                y = self.attn_t.attend(y, temporal_layout(ctx.grid), ctx)
                y = y.view(b, s, t, d).transpose(1, 2).reshape(b, n, d)  # (B, T*S, D)
            x = x + drop_path(y, self.drop_path, self.training)
        return x + drop_path(self._mlp(self.norm2(x)), self.drop_path, self.training)


class Encoder(nn.Module):
    """Learned position embedding (over the optional CLS token too), a stack of blocks, a final LayerNorm."""

    def __init__(self, cfg: BlockConfig, num_tokens: int, cls: bool, blocks: list[nn.Module]):
        super().__init__()
        self.num_prefix = int(cls)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cls else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix + num_tokens, cfg.dim))
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Prepend the CLS token to ``x`` ``(BG, N, D)`` and add the position embedding."""
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (BG, 1+N, D)
        return x + self.pos_embed
