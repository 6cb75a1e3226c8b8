r"""Attention rollout through pooled, factorised and cross-view attention.

Classic rollout (Abnar & Zuidema 2020) treats every block of a ViT as the token-mixing matrix
``½(Ā + I)`` (head-averaged attention plus the residual, rows summing to 1) and multiplies them. Hierarchical
video transformers change the number of tokens inside a block, so the factors are no longer square. We write
every block as a linear token-mixing operator from its ``N_in`` input tokens to its ``N_out`` output tokens
and compose those instead. This derivation is ours (no published rollout handles pooled attention).

**Pooling as matrices.** A 3-D pooling (MViT's q/k/v conv pools, the skip MaxPool, HVT's MaxPool1d written on
a ``(1, 1, N)`` grid) becomes the row-stochastic matrix ``P`` whose row ``o`` is uniform over the input tokens
in ``o``'s window. Windows hanging over the edge only count real tokens and the row is renormalised (a
choice: the learned conv weights are signed and a max pool picks per channel, so no exact linear operator
exists; the uniform window is the neutral one). Prefix (CLS) tokens map to themselves. Pools are separable,
``P = P_t ⊗ P_h ⊗ P_w``, so ``r · P`` is computed axis by axis with three small matrices
(:func:`viz.geometry.pool_matrix` builds the sparse matrix for inspection and tests).

**One block.** An MViT block computes ``x_out = pool_skip(x) + proj(A · pool_kv(x))`` (plus an MLP, which does
not mix tokens). Replacing values by the tokens they come from gives the operator

.. math::  M = ½ \left( \widehat{B} + P_{skip} \right), \qquad B = Ā\,P_{kv}\;(+\,P_q\text{ for MViTv2 residual pooling}),

where ``B̂`` is ``B`` with each row renormalised to sum to 1 (with residual pooling the attention branch is
``A·v + q``: two row-stochastic parts, hence the renormalisation; the CLS query gets no ``q`` term, as in
torchvision with ``residual_with_cls_embed=False``). ``P_skip`` is the identity when the block keeps its
grid. ``M`` is ``N_out × N_in`` and row-stochastic. Without pooling it is exactly Abnar's ``½(Ā + I)``.
HVT pools *after* the block: ``M = P_post · ½(Ā + I)``.

**Factorised attention (ViViT).** A spatial map is one attention per frame, a temporal map one per spatial
position (``group_grid``); together they are one block-diagonal ``N × N`` operator on the full grid (applied
group by group, never materialised). Sequential sub-layers (model 3: time then space, each with its own
residual) compose as ``M_block = ½(Ā_s + I) · ½(Ā_t + I)`` — the space-time product of
TimeSformer-rolled-attention, with residuals. Parallel head groups (model 4: half the heads over time, half
over space, concatenated) mix as one operator ``Ā = Σ_i (h_i / h) Ā_i`` weighted by head counts. A shared
prefix token attending inside every group is the mean of its per-group rows.

**Cross-view attention (MMViT).** The cross block attends over the concatenation of all views' (pooled)
tokens; the operator is ``Ā`` on the concatenated sequence, then split per view and mapped back through
each view's ``P_kv``; each view keeps its own residual ``P_skip``.

**Composition.** ``R = M_L ⋯ M_1`` maps final tokens to first-grid tokens, and the explanation is one row
of it: ``e_cls · R`` for a CLS classifier, or ``(1/N_L) 1ᵀ · R`` for a mean-pooled head (HVT, ViViT 3/4).
We never form ``R``: the row vector is propagated from the last block down, ``r ← r · M_l``, which costs
one ``Nq × Nk`` vector-matrix product and three small per-axis products per block. Every ``M_l`` is
row-stochastic, so ``r`` keeps total mass 1; the returned map is its grid part (the first-grid CLS is a
learned constant and is dropped).

**Gradient-weighted rollout.** Same composition with ``Ā`` replaced by ``mean_heads (A ⊙ ∂y/∂A)⁺``
(``ModelOutput.grad_weighted``, filled by ``mvt.attention_gradients``), each row renormalised; a row with no
positive evidence contributes only its residual path (``M = P_skip`` for that row).
"""

from __future__ import annotations

import numpy as np
import torch

from mvt.outputs import AttentionMap, ModelOutput, PoolOp, grid_size

from .geometry import MapLayout, TokenGeom, apply_left, group_index, pool_factors, seq_prefix, trace

_DT = torch.float64


def _split(r: torch.Tensor, p: int, grid) -> tuple[torch.Tensor, torch.Tensor]:
    return r[:p], r[p:].reshape(tuple(int(g) for g in grid))


def _pool_left(r: torch.Tensor, p: int, pool: PoolOp | None, in_grid, out_grid) -> torch.Tensor:
    """``r · P`` for a sequence vector ``r`` (prefix + out grid) → (prefix + in grid)."""
    if pool is None:
        if tuple(in_grid) != tuple(out_grid):
            raise ValueError(
                f"rollout: tokens go from grid {tuple(in_grid)} to {tuple(out_grid)} with no pool"
            )
        return r
    pre, g = _split(r, p, out_grid)
    back = apply_left(g, pool_factors(pool, tuple(in_grid)))
    return torch.cat([pre, back.reshape(-1)])


def _matrix(
    output: ModelOutput, lay: MapLayout, mode: str, batch: int, sinks: tuple[int, ...]
) -> torch.Tensor:
    """The raw ``(G, Nq, Nk)`` float32 matrix of one map (rows are normalised lazily by :class:`_Op`); the
    ``sinks`` keys' columns are zero (their rows are renormalised by :class:`_Op`)."""
    if mode == "attention":
        a = lay.amap.probs()[batch]
    else:
        if lay.index not in output.grad_weighted:
            raise ValueError(
                "gradient rollout needs ModelOutput.grad_weighted: run mvt.attention_gradients(model, x, target)"
            )
        a = output.grad_weighted[lay.index][batch]
    a = a.detach().float()
    if sinks:
        a = a.clone()
        a[..., list(sinks)] = 0.0
    return a


class _Op:
    """The row-normalised attention ``Ā`` of one map as an operator on full query / key sequences.

    Rows are normalised on the vector side (``w · Ā = (w / s) · A`` with ``s`` the row sums; rows with
    ``s = 0`` — no positive gradient evidence — are zero rows), so the big matrix is never copied.
    """

    def __init__(self, m: AttentionMap, a: torch.Tensor, nq_full: int, nk_full: int, normalise: bool = True):
        self.a = a
        self.nq_full, self.nk_full = nq_full, nk_full
        # softmax rows sum to 1 (fp16 storage: to ~1e-3), so only gradient maps need their row sums
        s = a.sum(-1).double() if normalise else torch.ones(a.shape[:2], dtype=_DT)  # (G, Nq)
        self.nz = (s > 0).double()
        self.inv = torch.where(s > 0, 1.0 / s.clamp(min=1e-300), torch.zeros_like(s))
        if a.shape[0] > 1:
            self.qi = torch.from_numpy(group_index(m, m.q_grid, m.num_prefix)).reshape(-1)
            self.ki = torch.from_numpy(group_index(m, m.k_grid, m.num_prefix)).reshape(-1)
        else:
            self.qi = self.ki = None
            if tuple(a.shape[1:]) != (nq_full, nk_full):
                raise ValueError(
                    f"rollout: map {m.stage}.{m.block} has probs {tuple(a.shape[1:])}, expected ({nq_full}, {nk_full})"
                )

    def row_sums(self) -> torch.Tensor:
        """Row sums of ``Ā`` on the full query sequence (1, or 0 for rows with no evidence)."""
        if self.qi is None:
            return self.nz[0]
        out = torch.zeros(self.nq_full, dtype=_DT)
        out.index_add_(0, self.qi, self.nz.reshape(-1))
        return out

    def left(self, w: torch.Tensor) -> torch.Tensor:
        """``w · Ā`` for ``w`` on the full query sequence → full key sequence."""
        if self.qi is None:
            return ((w * self.inv[0]).float() @ self.a[0]).double()
        wq = (w[self.qi].reshape(self.a.shape[:2]) * self.inv).float()  # (G, Nq)
        rk = torch.einsum("gq,gqk->gk", wq, self.a).double()
        out = torch.zeros(self.nk_full, dtype=_DT)
        out.index_add_(0, self.ki, rk.reshape(-1))
        return out


def _layers(layouts: list[MapLayout]) -> list[list[MapLayout]]:
    """Group maps into token-mixing layers: parallel head groups of one block form one layer."""
    out: list[list[MapLayout]] = []
    for lay in layouts:
        m = lay.amap
        if out and m.head_range is not None and m.kind != "cross":
            prev = out[-1][0].amap
            if (
                prev.head_range is not None
                and (prev.stage, prev.block, prev.view) == (m.stage, m.block, m.view)
                and prev.kind != "cross"
                and lay.inputs[lay.views[0]].grid == out[-1][0].inputs[lay.views[0]].grid
            ):
                out[-1].append(lay)
                continue
        out.append([lay])
    return out


def _seq_len(geom: TokenGeom, p: int) -> int:
    return p + grid_size(geom.grid)


def _layer_back(
    output: ModelOutput,
    layer: list[MapLayout],
    r: dict[int, torch.Tensor],
    rpre: dict[int, int],
    mode: str,
    batch: int,
    exclude_sinks: bool = False,
) -> None:
    """Replace ``r[v]`` (on the layer's outputs) by ``r[v] · M`` (on the layer's inputs), in place.

    ``rpre[v]`` is the number of prefix tokens of ``r[v]``'s sequence.
    """
    lay0 = layer[0]
    m0 = lay0.amap
    cross = m0.kind == "cross"
    # 1. post-pool (HVT): output tokens → query tokens
    rq: dict[int, torch.Tensor] = {}
    for v in lay0.views:
        if v not in r:
            continue
        p = _prefix(m0, v)
        out_geom, q_geom = lay0.outputs[v], lay0.queries[v]
        want = _seq_len(out_geom, p)
        if r[v].numel() != want and r[v].numel() - rpre[v] == p:
            # the next stage's grid tokens are this stage's prefix tokens (ViViT model 2: the temporal
            # transformer runs over the per-frame CLS outputs); the next stage's own CLS is a learned constant
            moved = torch.zeros(want, dtype=_DT)
            moved[:p] = r[v][rpre[v] :]
            r[v] = moved
        if r[v].numel() != want:
            raise ValueError(
                f"rollout: the sequence of view {v} changes from {_seq_len(out_geom, p)} to {r[v].numel()} tokens "
                f"after map {lay0.index} in a way the AttentionMap records do not describe"
            )
        rq[v] = _pool_left(r[v], p, m0.post_pool, q_geom.grid, out_geom.grid)
    if not rq:
        return
    # 2. concatenated query vector and the layer's attention operator(s)
    if cross:
        segs_q, segs_k = m0.segments_q, m0.segments_k
        parts = [rq.get(s.view, torch.zeros(s.length, dtype=_DT)) for s in segs_q]
        rcat = torch.cat(parts)
        nq, nk = sum(s.length for s in segs_q), sum(s.length for s in segs_k)
    else:
        v = lay0.views[0]
        rcat = rq[v]
        nq = rcat.numel()
        nk = _seq_len(lay0.keys[v], _prefix(m0, v))
    heads = [
        (lay.amap.head_range[1] - lay.amap.head_range[0]) if lay.amap.head_range else lay.amap.heads
        for lay in layer
    ]
    total = float(sum(heads))
    sinks = [output.sinks.get(lay.index, ()) if exclude_sinks else () for lay in layer]
    ops = [
        (
            _Op(lay.amap, _matrix(output, lay, mode, batch, s), nq, nk, normalise=mode == "grad" or bool(s)),
            h / total,
        )
        for lay, h, s in zip(layer, heads, sinks)
    ]
    rowsum = sum(w * op.row_sums() for op, w in ops)
    resid = torch.zeros(nq, dtype=_DT)
    if m0.residual_pool:
        start = 0
        for s in m0.segments_q if cross else (None,):
            p, length = (s.num_prefix, s.length) if s is not None else (_prefix(m0, lay0.views[0]), nq)
            resid[start + p : start + length] = 1.0
            start += length
    s_b = rowsum + resid
    nz = s_b > 1e-12
    w_b = torch.where(nz, 0.5 * rcat / s_b.clamp(min=1e-300), torch.zeros_like(rcat))
    w_s = torch.where(nz, 0.5 * rcat, rcat)
    rk = sum(w * op.left(w_b) for op, w in ops)
    # 3. back to each view's input tokens: keys through kv-pool, residual q-pool, skip pool
    qstart = kstart = 0
    qsegs = m0.segments_q if cross else [None]
    ksegs = {s.view: s for s in m0.segments_k} if cross else {}
    koff: dict[int, int] = {}
    if cross:
        for s in m0.segments_k:
            koff[s.view] = kstart
            kstart += s.length
    new: dict[int, torch.Tensor] = {}
    for s in qsegs:
        v = s.view if s is not None else lay0.views[0]
        p = s.num_prefix if s is not None else _prefix(m0, v)
        length = s.length if s is not None else nq
        in_geom, q_geom = lay0.inputs[v], lay0.queries[v]
        if cross:
            ks = ksegs.get(v)
            rk_v = rk[koff[v] : koff[v] + ks.length] if ks is not None else None
        else:
            rk_v = rk
        acc = torch.zeros(_seq_len(in_geom, p), dtype=_DT)
        if rk_v is not None:
            acc += _pool_left(rk_v, p, m0.kv_pool, in_geom.grid, lay0.keys[v].grid)
        wq = w_b[qstart : qstart + length] * resid[qstart : qstart + length]
        if m0.residual_pool:
            acc += _pool_left(wq, p, m0.q_pool, in_geom.grid, q_geom.grid)
        skip = m0.skip_pool
        if skip is None and tuple(q_geom.grid) != tuple(in_geom.grid):
            skip = m0.q_pool  # the residual must be pooled like the queries; use the q window
        acc += _pool_left(w_s[qstart : qstart + length], p, skip, in_geom.grid, q_geom.grid)
        new[v] = acc
        qstart += length
    if cross and set(ksegs) - set(new):
        raise ValueError(
            f"rollout: cross map {lay0.index} has keys from views {sorted(set(ksegs) - set(new))} that send "
            "no queries; such blocks are not supported"
        )
    r.update(new)
    for v in new:
        rpre[v] = _prefix(m0, v)


def _prefix(m: AttentionMap, view: int) -> int:
    if m.kind == "cross":
        for s in m.segments_q:
            if s.view == view:
                return s.num_prefix
    return seq_prefix(m)


def rollout_vector(
    output: ModelOutput,
    mode: str = "attention",
    stop_stage: int | None = None,
    batch: int = 0,
    exclude_sinks: bool = False,
) -> tuple[dict[int, torch.Tensor], dict[int, TokenGeom], dict[int, int]]:
    """The propagated row vectors per view, their token geometry and prefix counts (see module docstring).

    ``exclude_sinks``: the sink keys of every map (``ModelOutput.sinks``) get no attention; each row's
    attention is renormalised over the other keys."""
    if mode not in ("attention", "grad"):
        raise ValueError(f"rollout mode must be 'attention' or 'grad', got {mode!r}")
    if not output.attentions:
        raise ValueError("this output has no attention maps")
    layouts = trace(output)
    if stop_stage is not None:
        layouts = [lay for lay in layouts if lay.amap.stage >= stop_stage]
        if not layouts:
            raise ValueError(f"no attention maps at stage >= {stop_stage}")
    # start: the classifier's read-out on the final tokens of view 0
    last_geom: dict[int, TokenGeom] = {}
    prefix: dict[int, int] = {}
    for lay in layouts:
        for v in lay.views:
            last_geom[v] = lay.outputs[v]
            prefix[v] = _prefix(lay.amap, v)
    v0 = min(last_geom)
    n = _seq_len(last_geom[v0], prefix[v0])
    start = torch.zeros(n, dtype=_DT)
    if output.pooling == "cls" and prefix[v0] > 0:
        start[0] = 1.0
    else:
        start[prefix[v0] :] = 1.0 / (n - prefix[v0])
    r = {v0: start}
    for v in last_geom:
        if v != v0:
            r[v] = torch.zeros(_seq_len(last_geom[v], prefix[v]), dtype=_DT)
    rpre = dict(prefix)
    for layer in reversed(_layers(layouts)):
        _layer_back(output, layer, r, rpre, mode, batch, exclude_sinks)
    first_geom: dict[int, TokenGeom] = {}
    first_prefix: dict[int, int] = {}
    for lay in layouts:
        for v in lay.views:
            if v not in first_geom:
                first_geom[v] = lay.inputs[v]
                first_prefix[v] = _prefix(lay.amap, v)
    return r, first_geom, first_prefix


def rollout(
    output: ModelOutput,
    mode: str = "attention",
    stop_stage: int | None = None,
    batch: int = 0,
    view: int = 0,
    exclude_sinks: bool = False,
) -> np.ndarray:
    """Attention rollout of the classifier's read-out back to the first token grid: float32 ``(T, H, W)``.

    ``mode="attention"`` uses the head-averaged probabilities, ``mode="grad"`` the gradient-weighted maps
    (run ``mvt.attention_gradients`` first). ``stop_stage=s`` stops at the first block of stage ``s`` and
    returns the map on that block's input grid. The map is the grid part of the propagated row vector
    (non-negative; sums to at most 1, the rest sits on prefix tokens). For HVT the first grid is the 1-D
    patch sequence, returned reshaped to the patch grid; a ``stop_stage`` past the first pool returns the
    1-D grid (use :func:`rollout_volume` to paint it). See the module docstring for the derivation.
    """
    vol, _ = _rollout_on_grid(output, mode, stop_stage, batch, view, exclude_sinks)
    return vol


def _rollout_on_grid(output, mode, stop_stage, batch, view, exclude_sinks=False):
    r, geoms, prefix = rollout_vector(
        output, mode=mode, stop_stage=stop_stage, batch=batch, exclude_sinks=exclude_sinks
    )
    if view not in r:
        raise ValueError(f"view {view} is not in this output; views: {sorted(r)}")
    geom = geoms[view]
    grid = r[view][prefix[view] :].reshape(tuple(geom.grid)).numpy().astype(np.float32)
    if geom.footprint is None and not geom.chain:
        grid = grid.reshape(geom.base_shape)
    return grid, geom


def rollout_volume(
    output: ModelOutput,
    mode: str = "attention",
    stop_stage: int | None = None,
    batch: int = 0,
    view: int | str = 0,
    exclude_sinks: bool = False,
):
    """``(volume, footprint)`` of :func:`rollout`, ready for ``viz.to_frames``.

    ``view="all"`` (multi-view models, MMViT) combines every view's share of the read-out: each view's
    token masses are divided by the input volume a token stands for (stride product) and painted onto the
    model input with that view's footprint, then summed. The result is already at input resolution, so the
    footprint returned is ``None``.
    """
    r, geoms, prefix = rollout_vector(
        output, mode=mode, stop_stage=stop_stage, batch=batch, exclude_sinks=exclude_sinks
    )
    if view != "all":
        if view not in r:
            raise ValueError(f"view {view} is not in this output; views: {sorted(r)}")
        grid = r[view][prefix[view] :].reshape(tuple(geoms[view].grid)).numpy()
        return geoms[view].paintable(grid)
    from .render import to_frames

    shape = tuple(int(s) for s in output.input_shape)
    total = np.zeros(shape, np.float32)
    for v, geom in geoms.items():
        grid = r[v][prefix[v] :].reshape(tuple(geom.grid)).numpy()
        vol, fp = geom.paintable(grid)
        area = float(np.prod(fp.stride))
        total += to_frames(vol / area, shape, footprint=fp)
    return total, None
