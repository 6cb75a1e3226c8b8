"""Typed return values shared by every model family.

A model's ``forward_with_attention(x)`` returns a :class:`ModelOutput`: the logits plus one
:class:`AttentionMap` per attention call and one :class:`StageInfo` per scale stage. These records carry
everything a picture needs (which grid the queries and keys live on, how tokens were pooled, which pixels
a token covers) so that ``viz`` never has to look inside a model.

Token layout convention used everywhere: a sequence is ``num_prefix`` prefix (CLS) tokens followed by the
grid tokens in (t, h, w) raster order (t slowest).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

Grid = tuple[int, int, int]
"""A token grid as (T, H, W)."""

ATTENTION_KINDS = ("joint", "spatial", "temporal", "cross")


def grid_size(grid: Grid) -> int:
    """Number of tokens in a (T, H, W) grid."""
    return int(grid[0]) * int(grid[1]) * int(grid[2])


@dataclass(frozen=True)
class Footprint:
    """Where the tokens of a grid sit on the input clip.

    Token index ``i`` along an axis covers input positions ``[i*stride - padding, i*stride - padding + kernel)``
    (frames for the t axis, pixels for h and w), clipped to the input. Its centre is
    ``i*stride - padding + (kernel - 1) / 2``.
    """

    stride: Grid
    kernel: Grid
    padding: Grid = (0, 0, 0)

    def then(self, pool: PoolOp) -> Footprint:
        """Footprint of the tokens produced by applying ``pool`` to tokens with this footprint.

        A pool moves tokens only along the axes it strides: there a pooled token covers the union of its
        window's footprints (stride, kernel and padding grow). Along an axis with stride 1 the grid is kept
        and every token stays where it was, so that axis is unchanged — a stride-1 window mixes neighbours
        the way attention mixes every token, which is not where the token sits (MViT's ``(3, 3, 3)`` pools
        with time stride 1 keep each token on its own 4-frame tubelet).
        """
        axes = [
            (s, k, pd) if int(ps) == 1 else (s * ps, k + (pk - 1) * s, pd + pp * s)
            for s, k, pd, ps, pk, pp in zip(
                self.stride, self.kernel, self.padding, pool.stride, pool.kernel, pool.padding
            )
        ]
        stride, kernel, padding = (tuple(a[i] for a in axes) for i in range(3))
        return Footprint(stride, kernel, padding)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PoolOp:
    """A pooling of a token grid: 3-D window ``kernel`` moved by ``stride`` with zero ``padding``.

    ``kind`` is ``"conv"`` (learned depthwise conv, MViT q/k/v pooling), ``"max"`` (MaxPool, MViT skip path,
    HVT's MaxPool1d written on a (1, 1, N) grid) or ``"avg"``. Prefix tokens are never pooled.
    """

    kernel: Grid
    stride: Grid
    padding: Grid
    kind: str = "conv"

    def out_grid(self, grid: Grid) -> Grid:
        return tuple(  # type: ignore[return-value]
            (g + 2 * p - k) // s + 1 for g, k, s, p in zip(grid, self.kernel, self.stride, self.padding)
        )


@runtime_checkable
class Deferred(Protocol):
    """A tensor computed on first use (e.g. :class:`mvt.layers.DeferredProbs`): its ``shape`` is known now."""

    shape: tuple[int, ...]

    def compute(self) -> torch.Tensor: ...


@dataclass
class AttentionMap:
    """The attention probabilities of one attention call, with the layout needed to draw them.

    Shapes: ``probs`` is ``(B, G, Nq, Nk)``: the head-averaged probabilities (rows sum to 1) for ``G``
    independent groups. Joint and cross attention have ``G == 1``. Factorised attention (ViViT) runs one
    attention per group: spatial attention has one group per time index (``group_grid = (T, 1, 1)``,
    ``q_grid = (1, H, W)``), temporal attention one per spatial position (``group_grid = (1, H, W)``,
    ``q_grid = (T, 1, 1)``). The full-grid position of token ``j`` of group ``g`` is the elementwise sum of
    the group's position in ``group_grid`` and the token's position in ``q_grid`` (the two grids are
    complementary: one of them is 1 along each axis).

    ``Nq = num_prefix + |q_grid|`` and ``Nk = num_prefix + |k_grid|`` (for cross maps the sum over
    ``q_segments`` / ``k_segments``). ``cls_row`` is ``(B, heads, Nk)``: the per-head probabilities of the
    first prefix (CLS) query, where a CLS token exists and ``G == 1``; otherwise ``None``.

    Pooling fields describe the block the attention sits in, so rollout can map tokens through it
    (see ``viz.rollout``): ``in_grid`` is the grid entering the block; ``q_pool`` / ``kv_pool`` pool queries
    and keys/values inside attention; ``skip_pool`` pools the residual path; ``residual_pool`` means the
    pooled query is added to the attention output (MViTv2); ``post_pool`` pools the block output (HVT).
    ``head_groups`` names, for ViViT model 4, which heads produced this map.

    ``probs`` may be given as a :class:`Deferred` (``forward_with_attention(x, lazy=True)``): it is computed on
    its first read (thread-safe, once) and reads as a tensor from then on; :attr:`probs_ready` says whether
    that has happened and :attr:`groups` gives ``G`` without computing anything.
    """

    stage: int
    block: int
    kind: str
    heads: int
    q_grid: Grid
    k_grid: Grid
    num_prefix: int
    probs: torch.Tensor = field(repr=False)
    cls_row: torch.Tensor | None = None
    group_grid: Grid = (1, 1, 1)
    view: int | None = None
    q_segments: tuple[Segment, ...] | None = None
    k_segments: tuple[Segment, ...] | None = None
    in_grid: Grid | None = None
    q_pool: PoolOp | None = None
    kv_pool: PoolOp | None = None
    skip_pool: PoolOp | None = None
    residual_pool: bool = False
    post_pool: PoolOp | None = None
    head_range: tuple[int, int] | None = None
    weights: torch.Tensor | None = None
    """``(B*G, heads, Nq, Nk)`` per-head probabilities still attached to the autograd graph (rows ordered
    batch-major, then group). Only set by ``forward_with_attention(x, keep_weights=True)``."""
    grad_weighted: torch.Tensor | None = None
    """``(B, G, Nq, Nk)``: mean over heads of (A ⊙ ∂y/∂A)⁺, filled by ``mvt.attention_gradients``."""
    tokens: torch.Tensor | None = None
    """``(B·G', N_in, C)``: the tokens entering this map's block, on the autograd graph (``G'`` sequences per
    clip, each ``num_prefix`` + the block's input grid, or its group's part of it). Only set by
    ``forward_with_attention(x, conservative=True)``, on the first map of each block."""
    relevance: torch.Tensor | None = None
    """``(B, G', N_in)`` float64: each entering token's relevance to the explained logit (gradient × input
    with attention, LayerNorm and GELU held: conservative propagation), filled by ``mvt.token_flow``."""
    sinks: tuple[int, ...] = ()
    """Positions in the key sequence (``Nk`` axis, prefix included) of *sink* keys: keys that take the top
    attention at a fixed position whatever the clip shows (``mvt.sinks``)."""

    def __post_init__(self) -> None:
        if self.kind not in ATTENTION_KINDS:
            raise ValueError(f"AttentionMap.kind must be one of {ATTENTION_KINDS}, got {self.kind!r}")

    @property
    def groups(self) -> int:
        """``G``, the number of independent attention groups (known before ``probs`` is computed)."""
        return int(self.__dict__["_probs"].shape[1])

    @property
    def probs_ready(self) -> bool:
        """Whether ``probs`` is a tensor already (``False`` while it is deferred)."""
        return isinstance(self.__dict__["_probs"], torch.Tensor)

    @property
    def segments_q(self) -> tuple[Segment, ...]:
        """The query sequence as (view, prefix, grid) segments; one segment unless this is a cross map."""
        if self.q_segments is not None:
            return self.q_segments
        return (Segment(self.view or 0, self.num_prefix, self.q_grid),)

    @property
    def segments_k(self) -> tuple[Segment, ...]:
        if self.k_segments is not None:
            return self.k_segments
        return (Segment(self.view or 0, self.num_prefix, self.k_grid),)


def _get_probs(amap: AttentionMap) -> torch.Tensor:
    value = amap.__dict__["_probs"]
    if not isinstance(value, torch.Tensor):
        value = value.compute()  # the Deferred serialises concurrent first reads
        amap.__dict__["_probs"] = value
    return value


def _set_probs(amap: AttentionMap, value: torch.Tensor | Deferred) -> None:
    amap.__dict__["_probs"] = value


# ``probs`` stays a dataclass field (constructor, fields(), replace() are unchanged); reading it goes
# through this property so that a deferred map computes its probabilities on first use.
AttentionMap.probs = property(_get_probs, _set_probs, doc="(B, G, Nq, Nk) head-averaged probabilities.")  # type: ignore[assignment]


@dataclass(frozen=True)
class Segment:
    """A run of tokens from one view: ``num_prefix`` prefix tokens then ``grid`` tokens in raster order."""

    view: int
    num_prefix: int
    grid: Grid

    @property
    def length(self) -> int:
        return self.num_prefix + grid_size(self.grid)


@dataclass
class StageInfo:
    """One scale stage: its output token grid, width and where its tokens sit on the input."""

    stage: int
    grid: Grid
    channels: int
    tokens: int
    num_prefix: int
    footprint: Footprint
    view: int | None = None
    blocks: tuple[int, ...] = ()


@dataclass
class ModelOutput:
    """What ``forward_with_attention`` returns.

    ``input_shape`` is the (T, H, W) of the model input; ``embed`` is the footprint of the first token grid
    (the patch/tubelet embedding) on it. ``pooling`` says how the head reads the tokens: ``"cls"`` (first
    prefix token) or ``"mean"`` (average of the final tokens).
    """

    logits: torch.Tensor
    attentions: list[AttentionMap]
    stages: list[StageInfo]
    input_shape: Grid
    embed: Footprint
    pooling: str = "cls"
    extras: dict = field(default_factory=dict)

    @property
    def probs_ready(self) -> bool:
        """Whether every map's ``probs`` is computed (see :meth:`materialise`)."""
        return all(m.probs_ready for m in self.attentions)

    def materialise(self) -> ModelOutput:
        """Compute every deferred map's ``probs`` now (thread-safe; maps already computed cost nothing)."""
        for m in self.attentions:
            _ = m.probs
        return self
