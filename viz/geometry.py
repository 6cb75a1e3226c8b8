"""Token geometry: where each token of each attention map sits on the clip.

Everything here is derived from the records in :mod:`mvt.outputs` only (no model objects):

* pooling windows as row-stochastic matrices (:func:`pool_axis`, :func:`pool_matrix`). A 3-D pool over a
  (T, H, W) raster is separable, so its matrix is ``P_t ⊗ P_h ⊗ P_w`` and every product with it is done
  axis by axis with three small dense matrices (never an ``N × N`` matrix);
* a forward *trace* over a :class:`~mvt.outputs.ModelOutput` (:func:`trace`) giving, for every attention
  map, the geometry of the tokens entering the block, of its queries and of its keys, per view;
* painting a volume on a token grid back to the first token grid (HVT's 1-D pooled tokens, "spans") and
  the token centres used by the attention statistics.

Conventions: a *full* grid is the grid of all tokens of one view; a factorised map's local ``q_grid`` and
its ``group_grid`` multiply elementwise to the full grid (they are complementary). Sequences are
``num_prefix`` prefix tokens then the grid in (t, h, w) raster order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mvt.outputs import AttentionMap, Footprint, Grid, ModelOutput, PoolOp, grid_size

# -- pooling windows as matrices -----------------------------------------------------------------------------


def pool_axis(n_in: int, kernel: int, stride: int, padding: int) -> np.ndarray:
    """``(n_out, n_in)`` float64 matrix of a 1-D pooling: output ``o`` averages inputs
    ``o*stride - padding … o*stride - padding + kernel - 1`` that exist.

    Padding positions are excluded and each row is renormalised (a documented choice: a max/avg pool over a
    window that hangs over the edge only ever sees real tokens). Rows sum to 1.
    """
    n_out = (n_in + 2 * padding - kernel) // stride + 1
    if n_out < 1:
        raise ValueError(f"pool kernel {kernel} stride {stride} padding {padding} does not fit {n_in} tokens")
    m = np.zeros((n_out, n_in), dtype=np.float64)
    for o in range(n_out):
        lo = o * stride - padding
        m[o, max(lo, 0) : min(lo + kernel, n_in)] = 1.0
    m /= m.sum(axis=1, keepdims=True)
    return m


def pool_factors(pool: PoolOp, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three per-axis matrices of ``pool`` applied to ``grid``; the pool matrix is their Kronecker product."""
    return tuple(  # type: ignore[return-value]
        pool_axis(int(n), int(k), int(s), int(p))
        for n, k, s, p in zip(grid, pool.kernel, pool.stride, pool.padding)
    )


def pool_matrix(pool: PoolOp, grid: Grid, num_prefix: int = 0):
    """The pooling as a ``scipy.sparse`` CSR matrix ``(num_prefix + N_out, num_prefix + N_in)``.

    Prefix tokens map to themselves (they are never pooled); the grid part is ``P_t ⊗ P_h ⊗ P_w`` in raster
    order. Every row sums to 1. Rollout does not build this matrix (it applies the factors axis by axis); it
    exists to inspect and test the operator.
    """
    import scipy.sparse as sp

    pt, ph, pw = (sp.csr_matrix(f) for f in pool_factors(pool, grid))
    g = sp.kron(pt, sp.kron(ph, pw, format="csr"), format="csr")
    if num_prefix:
        g = sp.block_diag([sp.identity(num_prefix, format="csr"), g], format="csr")
    return g


def apply_left(r: torch.Tensor, factors: tuple[np.ndarray, ...]) -> torch.Tensor:
    """Row vector times pool matrix, ``r · P``: ``r`` is ``(..., T_out, H_out, W_out)`` → ``(..., T_in, H_in, W_in)``."""
    pt, ph, pw = (torch.as_tensor(f, dtype=r.dtype, device=r.device) for f in factors)
    r = torch.einsum("...abc,ai->...ibc", r, pt)
    r = torch.einsum("...ibc,bj->...ijc", r, ph)
    return torch.einsum("...ijc,ck->...ijk", r, pw)


def apply_right(x: torch.Tensor, factors: tuple[np.ndarray, ...]) -> torch.Tensor:
    """Pool matrix times a column field, ``P · x``: ``(..., T_in, H_in, W_in)`` → ``(..., T_out, H_out, W_out)``."""
    pt, ph, pw = (torch.as_tensor(f, dtype=x.dtype, device=x.device) for f in factors)
    x = torch.einsum("ai,...ijk->...ajk", pt, x)
    x = torch.einsum("bj,...ajk->...abk", ph, x)
    return torch.einsum("ck,...abk->...abc", pw, x)


def paint_back(volume: np.ndarray, factors: tuple[np.ndarray, ...]) -> np.ndarray:
    """Spread a volume on pooled tokens back onto the pre-pool grid, intensity preserving.

    Each input cell gets the mean of the values of the pooled tokens whose window covers it; cells no window
    covers (a pool without padding that drops the last tokens) get the volume's minimum (the coldest colour,
    without stretching the colour scale the way a 0 would). Plain numpy: these are small volumes, and a
    click paints one per model (torch's per-call overhead on a busy CPU was 70× the arithmetic).
    """
    v = np.asarray(volume, dtype=np.float64)
    binary = [(f > 0).astype(np.float64) for f in factors]

    def left(
        r: np.ndarray,
    ) -> np.ndarray:  # r · P, axis by axis: (..., T_out, H_out, W_out) → (..., T_in, ...)
        r = np.einsum("...abc,ai->...ibc", r, binary[0])
        r = np.einsum("...ibc,bj->...ijc", r, binary[1])
        return np.einsum("...ijc,ck->...ijk", r, binary[2])

    num, den = left(v), left(np.ones_like(v))
    floor = v.min() if v.size else 0.0
    return np.where(den > 0, num / np.maximum(den, 1e-12), floor)


# -- footprints ---------------------------------------------------------------------------------------------


def footprint_grid(fp: Footprint, input_shape: Grid) -> Grid:
    """The token grid a footprint produces on an input of ``input_shape`` (conv arithmetic)."""
    return tuple(  # type: ignore[return-value]
        (int(n) + 2 * p - k) // s + 1 for n, s, k, p in zip(input_shape, fp.stride, fp.kernel, fp.padding)
    )


def infer_footprint(grid: Grid, input_shape: Grid) -> Footprint:
    """A tiling footprint for a grid whose footprint is not known: stride = kernel = input // grid.

    Used for grids the trace cannot derive (e.g. one token per frame); exact for any grid that tiles its
    input without overlap.
    """
    stride = tuple(max(1, int(n) // max(1, int(g))) for n, g in zip(input_shape, grid))
    return Footprint(stride=stride, kernel=stride)  # type: ignore[arg-type]


def axis_centres(n: int, stride: int, kernel: int, padding: int) -> np.ndarray:
    """Centres of ``n`` tokens along one axis (input coordinates: frames or pixels)."""
    return np.arange(n, dtype=np.float64) * stride - padding + (kernel - 1) / 2.0


PAINTS = ("nearest", "box", "tent")
"""How a token volume is painted onto the clip (see :func:`axis_cover`)."""
PAINT = "nearest"
"""The paint mode :func:`viz.to_frames` uses by default: nearest-centre, chosen by measurement.

``python -m bench.painting --n 40 --seed 7`` paints the best possible token map (each token's actor coverage,
:func:`viz.pointing.ceilings`) and asks whether its maximum pixel lies on the actor. Where token footprints
overlap, tent and box painting cap that at 0.625 for the last-stage keys of ``mvit_t`` / ``mmvit_t`` (60-px
footprints on a 32-px stride: a token shows its own value only where no neighbour's footprint reaches, and
the best token's value is averaged away over most of its footprint), nearest-centre painting reaches
0.975 — the same as the token-resolution game, since each token then paints exactly its own cell. On the
first token grids (12-px footprints on an 8-px stride) all three reach 1.000, and on tubelet grids (ViViT,
HVT: footprint = stride) the three modes are the same painting. The models' own last-stage maps move the
same way (``mvit_t`` 0.000 → 0.075, ``mmvit_t`` 0.025 → 0.125, rollout 0.275 → 0.350 and 0.200 → 0.300).
So a map's pixel scores measure the explanation, not the painting. What nearest-centre gives up: the
picture no longer shows how far a token's footprint reaches (a hot token paints its cell, not its whole
receptive field); ``mode="box"`` paints exactly the receptive field when that is the question."""


def axis_cover(
    size: int, n: int, stride: int, kernel: int, padding: int, mode: str = "box", *, tent: bool = False
) -> np.ndarray:
    """``(size, n)`` float64 weights of token ``i`` at input position ``p`` along one axis.

    Nonzero only where ``p`` lies in the window of token ``i`` (clipped to the input). ``mode``:

    * ``"box"``: 1 on the whole window (the token's receptive field along this axis);
    * ``"tent"``: a tent peaking at the window centre, ``(k/2 + ½ - |p - c|) / (k/2 + ½)``, positive over the
      whole window (``tent=True`` is the old spelling);
    * ``"nearest"``: 1 for the token whose centre is nearest to ``p`` among the tokens whose window covers
      ``p`` (a position exactly between two centres goes to the later token, so on a regular grid token
      ``i``'s cell is ``[c_i - stride/2, c_i + stride/2)``). The columns are the tokens' *cells*: they
      partition the covered positions, and each cell lies inside its token's window and holds its centre.
    """
    if tent:
        mode = "tent"
    if mode not in PAINTS:
        raise ValueError(f"unknown paint mode {mode!r}; use one of {PAINTS}")
    lo = np.arange(n) * stride - padding
    p = np.arange(size)[:, None]
    inside = (p >= lo[None, :]) & (p < lo[None, :] + kernel)
    if mode == "box":
        return inside.astype(np.float64)
    centre = lo + (kernel - 1) / 2.0
    dist = np.abs(p - centre[None, :])
    if mode == "tent":
        half = kernel / 2.0 + 0.5
        return np.where(inside, (half - dist) / half, 0.0)
    key = np.where(inside, dist - 1e-6 * np.arange(n)[None, :], np.inf)  # ties: the later token
    near = inside & (np.arange(n)[None, :] == key.argmin(axis=1)[:, None])
    return near.astype(np.float64)


# -- the trace ----------------------------------------------------------------------------------------------


def _prod(a: Grid, b: Grid) -> Grid:
    return tuple(int(x) * int(y) for x, y in zip(a, b))  # type: ignore[return-value]


def map_full_grid(amap: AttentionMap, local: Grid | None = None) -> Grid:
    """The full grid of a (possibly factorised) map: ``group_grid ⊙ local`` (local defaults to ``q_grid``)."""
    return _prod(amap.group_grid, amap.q_grid if local is None else local)


@dataclass
class TokenGeom:
    """Where the tokens of one full grid sit.

    ``footprint`` is set when every token is a box on the input (patch embedding composed with 3-D pools).
    Otherwise (1-D pooled sequences, HVT) the tokens are described by ``chain``: the pools applied since the
    ``base`` grid, whose raster reshapes to ``base_shape`` with footprint ``base_footprint``.
    """

    grid: Grid
    footprint: Footprint | None
    base_grid: Grid
    base_shape: Grid
    base_footprint: Footprint
    chain: tuple[tuple[PoolOp, Grid], ...] = ()

    def then(self, pool: PoolOp | None) -> TokenGeom:
        if pool is None:
            return self
        out = pool.out_grid(self.grid)
        fp = self.footprint.then(pool) if self.footprint is not None else None
        return TokenGeom(
            out, fp, self.base_grid, self.base_shape, self.base_footprint, self.chain + ((pool, self.grid),)
        )

    def paintable(self, volume: np.ndarray) -> tuple[np.ndarray, Footprint]:
        """``volume`` on this grid → (volume on a box grid, its footprint) ready for ``viz.to_frames``."""
        volume = np.asarray(volume, dtype=np.float32)
        if self.footprint is not None:
            return volume, self.footprint
        v = volume.astype(np.float64)
        for pool, in_grid in reversed(self.chain):
            v = paint_back(v, pool_factors(pool, in_grid))
        return v.reshape(self.base_shape).astype(np.float32), self.base_footprint

    def centres(self) -> np.ndarray:
        """``(N, 3)`` token centres (frame, y, x) on the model input, in raster order."""
        if self.footprint is not None:
            fp = self.footprint
            axes = [
                axis_centres(n, s, k, p) for n, s, k, p in zip(self.grid, fp.stride, fp.kernel, fp.padding)
            ]
        else:
            bfp = self.base_footprint
            full = [
                axis_centres(n, s, k, p)
                for n, s, k, p in zip(self.base_shape, bfp.stride, bfp.kernel, bfp.padding)
            ]
            mesh = np.stack(np.meshgrid(*full, indexing="ij"), axis=-1).reshape(*self.base_grid, 3)
            x = torch.as_tensor(np.moveaxis(mesh, -1, 0))  # (3, T, H, W) on the base grid
            for pool, in_grid in self.chain:
                x = apply_right(x, pool_factors(pool, in_grid))
            return np.moveaxis(x.numpy(), 0, -1).reshape(-1, 3)
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack(mesh, axis=-1).reshape(-1, 3)


@dataclass
class MapLayout:
    """Geometry of one attention map: per view, the tokens entering the block, its queries and its keys."""

    index: int
    amap: AttentionMap
    views: tuple[int, ...]
    inputs: dict[int, TokenGeom]
    queries: dict[int, TokenGeom]
    keys: dict[int, TokenGeom]
    outputs: dict[int, TokenGeom] = field(default_factory=dict)


def _view_embed(output: ModelOutput, view: int) -> Footprint | None:
    if view == 0:
        return output.embed
    embeds = output.extras.get("view_embeds") or {}
    return embeds.get(view)


def _initial_geom(output: ModelOutput, view: int, grid: Grid) -> TokenGeom:
    """Geometry of the first grid of a view: the embedding footprint, or HVT-style 1-D patch sequences."""
    fp = _view_embed(output, view)
    patch = output.extras.get("patch_grid")
    if fp is not None and patch is not None and grid[1] == 1 and grid[2] == grid_size(patch) and grid[2] > 1:
        shape = (grid[0] * patch[0], patch[1], patch[2])
        return TokenGeom(grid, None, grid, shape, fp)  # type: ignore[arg-type]
    if fp is None or footprint_grid(fp, output.input_shape) != tuple(grid):
        fp = infer_footprint(grid, output.input_shape)
    return TokenGeom(grid, fp, grid, grid, fp)


def _resync(output: ModelOutput, view: int, geom: TokenGeom | None, grid: Grid) -> TokenGeom:
    if geom is not None and tuple(geom.grid) == tuple(grid):
        return geom
    if geom is None:
        return _initial_geom(output, view, grid)
    # The sequence changed shape between maps in a way the records do not describe (e.g. ViViT's factorised
    # encoder keeps one token per frame): fall back to a tiling footprint on the input.
    fp = infer_footprint(grid, output.input_shape)
    return TokenGeom(grid, fp, grid, grid, fp)


def _strided(pool: PoolOp | None) -> PoolOp | None:
    """A pool that changes token positions; a stride-1 pool (MViTv2's q/kv convs inside a stage) keeps
    each token where it is, so its receptive-field growth is not painted as footprint."""
    if pool is None or all(int(s) == 1 for s in pool.stride):
        return None
    return pool


def map_in_grid(amap: AttentionMap) -> Grid:
    """The full grid entering the block of a non-cross map."""
    if amap.in_grid is None:
        return map_full_grid(amap)
    g = amap.group_grid
    local = all(int(x) == 1 for x, gg in zip(amap.in_grid, g) if int(gg) > 1)
    return _prod(g, amap.in_grid) if local else tuple(amap.in_grid)  # type: ignore[return-value]


def trace(output: ModelOutput) -> list[MapLayout]:
    """Walk the attention maps in forward order and give each one its token geometry (per view).

    The state of each view starts at its embedding footprint and follows ``q_pool`` (the block output lives
    on the query grid) and ``post_pool``; key tokens are ``kv_pool`` of the block input. When a stage ends,
    the model's own ``StageInfo.footprint`` replaces the derived one if the grids agree.
    """
    state: dict[int, TokenGeom] = {}
    layouts: list[MapLayout] = []
    stage_fp = {(s.stage, s.view or 0): s for s in output.stages}
    for i, m in enumerate(output.attentions):
        if m.kind == "cross":
            views = tuple(dict.fromkeys(s.view for s in m.segments_q))
            q_seg = {s.view: s for s in m.segments_q}
            k_seg = {s.view: s for s in m.segments_k}
            inputs, queries, keys = {}, {}, {}
            for v in views:
                cur = state.get(v)
                want = cur.grid if cur is not None and m.q_pool is not None else q_seg[v].grid
                geom = _resync(output, v, cur, want)
                inputs[v] = geom
                queries[v] = _resync(output, v, geom.then(_strided(m.q_pool)), q_seg[v].grid)
                if v in k_seg:
                    keys[v] = _resync(output, v, geom.then(_strided(m.kv_pool)), k_seg[v].grid)
            for v, seg in k_seg.items():  # keys from views that send no queries
                if v not in keys:
                    keys[v] = _resync(output, v, state.get(v), seg.grid)
        else:
            v = m.view or 0
            views = (v,)
            geom = _resync(output, v, state.get(v), map_in_grid(m))
            inputs = {v: geom}
            queries = {v: _resync(output, v, geom.then(_strided(m.q_pool)), map_full_grid(m))}
            keys = {v: _resync(output, v, geom.then(_strided(m.kv_pool)), map_full_grid(m, m.k_grid))}
        lay = MapLayout(i, m, views, inputs, queries, keys)
        for v in views:
            out = queries[v]
            if m.post_pool is not None:
                out = out.then(m.post_pool)
            info = stage_fp.get((m.stage, v))
            nxt = output.attentions[i + 1] if i + 1 < len(output.attentions) else None
            stage_ends = nxt is None or nxt.stage != m.stage
            if (
                info is not None
                and out.footprint is not None
                and tuple(info.grid) == tuple(out.grid)
                and stage_ends
            ):
                out = TokenGeom(
                    out.grid, info.footprint, out.base_grid, out.base_shape, out.base_footprint, out.chain
                )
            lay.outputs[v] = out
            state[v] = out
        layouts.append(lay)
    return layouts


def layout_of(output: ModelOutput, amap: AttentionMap) -> MapLayout:
    """The :class:`MapLayout` of one of ``output``'s maps (matched by identity)."""
    for lay in trace(output):
        if lay.amap is amap:
            return lay
    raise ValueError("this AttentionMap is not one of output.attentions")


# -- factorised maps: where the tokens of each group go in the full sequence --------------------------------


def seq_prefix(amap: AttentionMap) -> int:
    """Prefix tokens of a non-cross map's full sequence: ``num_prefix`` per group (ViViT model 2 keeps one
    CLS per frame), so ``num_prefix · |group_grid|``."""
    return amap.num_prefix * grid_size(amap.group_grid)


def group_index(amap: AttentionMap, local: Grid, num_prefix: int) -> np.ndarray:
    """``(G, num_prefix + |local|)`` indices into the full sequence ``G·num_prefix + |group_grid ⊙ local|``.

    Token ``j`` of group ``g`` sits at the elementwise sum of the group's position in ``group_grid`` and the
    token's position in ``local``. Prefix tokens belong to their group (one CLS per group, as ViViT's
    factorised encoder has one per frame): prefix ``j`` of group ``g`` is sequence index ``g·num_prefix + j``.
    """
    gg = amap.group_grid
    full = _prod(gg, local)
    gpos = np.stack(np.meshgrid(*[np.arange(int(n)) for n in gg], indexing="ij"), -1).reshape(-1, 1, 3)
    lpos = np.stack(np.meshgrid(*[np.arange(int(n)) for n in local], indexing="ij"), -1).reshape(1, -1, 3)
    pos = gpos + lpos  # (G, L, 3)
    g = pos.shape[0]
    flat = (pos[..., 0] * full[1] + pos[..., 1]) * full[2] + pos[..., 2] + g * num_prefix
    pre = np.arange(g)[:, None] * num_prefix + np.arange(num_prefix)[None, :]
    return np.concatenate([pre, flat], axis=1).astype(np.int64)
