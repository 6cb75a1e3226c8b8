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
    """A tensor computed on first use (e.g. :class:`mvt.layers.DeferredProbs`): its ``shape`` is known now,
    ``ready`` says whether it was computed, ``compute()`` computes it (once, thread-safe) and returns it."""

    shape: tuple[int, ...]

    @property
    def ready(self) -> bool: ...

    def compute(self) -> torch.Tensor: ...


@dataclass(frozen=True, eq=False)
class AttentionMap:
    """The attention probabilities of one attention call, with the layout needed to draw them.

    ``head_mean`` holds the head-averaged probabilities ``(B, G, Nq, Nk)`` (rows sum to 1) for ``G``
    independent groups: a tensor, or a :class:`Deferred` that computes them when first asked
    (``Capture.LAZY`` and ``Capture.FLOW``). Read them with :meth:`probs` (which computes a deferred matrix:
    the one call that may cost an ``(Nq, Nk)`` product per group); :attr:`shape`, :attr:`groups` and
    :attr:`probs_ready` compute nothing. Joint and cross attention have ``G == 1``. Factorised attention
    (ViViT) runs one attention per group: spatial attention has one group per time index
    (``group_grid = (T, 1, 1)``, ``q_grid = (1, H, W)``), temporal attention one per spatial position
    (``group_grid = (1, H, W)``, ``q_grid = (T, 1, 1)``). The full-grid position of token ``j`` of group ``g``
    is the elementwise sum of the group's position in ``group_grid`` and the token's position in ``q_grid``
    (the two grids are complementary: one of them is 1 along each axis).

    ``Nq = num_prefix + |q_grid|`` and ``Nk = num_prefix + |k_grid|`` (for cross maps the sum over
    ``q_segments`` / ``k_segments``). ``cls_row`` is ``(B, heads, Nk)``: the per-head probabilities of the
    first prefix (CLS) query, where a CLS token exists and ``G == 1``; otherwise ``None``.

    Pooling fields describe the block the attention sits in, so rollout can map tokens through it
    (see ``viz.rollout``): ``in_grid`` is the grid entering the block; ``q_pool`` / ``kv_pool`` pool queries
    and keys/values inside attention; ``skip_pool`` pools the residual path; ``residual_pool`` means the
    pooled query is added to the attention output (MViTv2); ``post_pool`` pools the block output (HVT).
    ``head_range`` names, for ViViT model 4, which heads produced this map.

    A map is a record of the forward pass and never changes. What is found later lives beside it in the
    :class:`ModelOutput`, keyed by the map's position in ``attentions``: ``sinks``, ``grad_weighted``,
    ``relevance`` (and, during a capture, the autograd tensors in ``traced``). Maps are made by
    :func:`mvt.layers.record_attention`.
    """

    stage: int
    block: int
    kind: str
    heads: int
    q_grid: Grid
    k_grid: Grid
    num_prefix: int
    head_mean: torch.Tensor | Deferred = field(repr=False)
    cls_row: torch.Tensor | None = field(default=None, repr=False)
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

    def __post_init__(self) -> None:
        if self.kind not in ATTENTION_KINDS:
            raise ValueError(f"AttentionMap.kind must be one of {ATTENTION_KINDS}, got {self.kind!r}")
        if len(self.head_mean.shape) != 4:
            raise ValueError(
                f"AttentionMap.head_mean must be (B, G, Nq, Nk), got {tuple(self.head_mean.shape)}"
            )

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(B, G, Nq, Nk)`` of the head-mean probabilities (known before they are computed)."""
        return tuple(int(s) for s in self.head_mean.shape)  # type: ignore[return-value]

    @property
    def groups(self) -> int:
        """``G``, the number of independent attention groups."""
        return self.shape[1]

    @property
    def probs_ready(self) -> bool:
        """Whether :meth:`probs` costs nothing (the matrix is a tensor, or its deferred value was computed)."""
        return isinstance(self.head_mean, torch.Tensor) or self.head_mean.ready

    def probs(self) -> torch.Tensor:
        """``(B, G, Nq, Nk)`` head-averaged probabilities. A deferred matrix is computed by the first call
        (thread-safe, once; later calls and other threads get the same tensor)."""
        if isinstance(self.head_mean, torch.Tensor):
            return self.head_mean
        return self.head_mean.compute()

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

    Beside the maps, keyed by a map's position in ``attentions`` (:meth:`position`), what is found later:
    ``sinks`` (:func:`mvt.sinks.mark_sinks`), ``grad_weighted`` (:func:`mvt.attention_gradients`) and
    ``relevance`` (:func:`mvt.token_flow`); ``traced`` holds the capture's tensors on the autograd graph
    until those functions have read them.
    """

    logits: torch.Tensor
    attentions: list[AttentionMap]
    stages: list[StageInfo]
    input_shape: Grid
    embed: Footprint
    pooling: str = "cls"
    extras: dict = field(default_factory=dict)
    traced: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    """Capture-time tensors on the autograd graph, by map position. ``Capture.GRADIENTS``: every map's
    per-head probabilities ``(B·G, heads, Nq, Nk)`` (rows batch-major, then group). ``Capture.FLOW``: on
    the first map of every block, the tokens entering that block ``(B·G', N_in, C)`` (``G'`` sequences per
    clip, each ``num_prefix`` + the block's input grid, or its group's part of it)."""
    grad_weighted: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    """``(B, G, Nq, Nk)`` per map: mean over heads of (A ⊙ ∂y/∂A)⁺, filled by ``mvt.attention_gradients``."""
    relevance: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    """``(B, G', N_in)`` float32 per block's first map: each entering token's relevance to the explained
    logit (gradient × input with attention, LayerNorm and GELU held), filled by ``mvt.token_flow``."""
    sinks: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """Per map, positions in its key sequence (``Nk`` axis, prefix included) of *sink* keys: keys that take
    the top attention at a fixed position whatever the clip shows (``mvt.sinks``)."""

    def position(self, amap: AttentionMap) -> int:
        """The position of ``amap`` in :attr:`attentions` (by identity)."""
        for i, m in enumerate(self.attentions):
            if m is amap:
                return i
        raise ValueError("this map is not one of this output's attentions")

    def sinks_of(self, amap: AttentionMap) -> tuple[int, ...]:
        """The sink keys of ``amap`` (empty when none were marked)."""
        return self.sinks.get(self.position(amap), ())

    @property
    def probs_ready(self) -> bool:
        """Whether every map's probabilities are computed (see :meth:`materialise`)."""
        return all(m.probs_ready for m in self.attentions)

    def materialise(self) -> ModelOutput:
        """Compute every deferred map's probabilities now (thread-safe; maps already computed cost nothing)."""
        for m in self.attentions:
            m.probs()
        return self
