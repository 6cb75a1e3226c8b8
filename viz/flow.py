"""Token flow laid out on token grids, and rank correlations between explanations.

``mvt.token_flow`` fills ``ModelOutput.relevance``: the conservative relevance (Ali et al., ICML 2022;
AttnLRP's identity rule for GELU) of the tokens entering each block, ``(B, G', N_in)``. Here those numbers
become volumes on the block's input grid (:func:`flow_volume`): the input tokens (the first block's, the same
grid rollout ends on) or the tokens a stage reads last (the last block of the stage). Relevance is signed —
negative tokens speak against the class — and is not renormalised: on the input grid the tokens' relevances
and the prefix tokens' add up, with what biases and added embeddings after the first block take, to the
explained logit.

:func:`spearman` is the rank correlation used to ask how well cheaper maps (rollout, gradient rollout,
last-stage attention) agree with token flow on the same tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from mvt.outputs import AttentionMap, Footprint, ModelOutput, grid_size

from .geometry import group_index, layout_of


def _flow_maps(output: ModelOutput, view: int) -> list[AttentionMap]:
    maps = [m for i, m in enumerate(output.attentions) if i in output.relevance and (m.view or 0) == view]
    if not maps:
        raise ValueError("this output has no token relevances: run mvt.token_flow(model, x, target)")
    return maps


def flow_map(output: ModelOutput, stage: int | None = None, view: int = 0) -> AttentionMap:
    """The map whose entering tokens stand for ``stage``: the first block's (``stage=None``: the input
    tokens) or the last block of ``stage`` (the tokens the stage reads last, on its own grid)."""
    maps = _flow_maps(output, view)
    if stage is None:
        return maps[0]
    own = [m for m in maps if m.stage == stage]
    if not own:
        raise ValueError(f"no token relevances at stage {stage}")
    return own[-1]


def flow_tokens(output: ModelOutput, amap: AttentionMap, batch: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(prefix relevances, grid relevances)`` of ``amap``'s entering tokens, float64: the grid part over the
    block's full input grid in raster order (factorised blocks run per group: their groups are scattered
    back onto the full grid)."""
    rel = output.relevance.get(output.position(amap))
    if rel is None:
        raise ValueError("this map has no token relevances")
    r = rel[batch].double()  # (G', N_in)
    groups = int(r.shape[0])
    if groups == 1:
        p = amap.num_prefix  # one sequence per clip: the block's prefix tokens, then its whole input grid
        seq = r[0]
        return seq[:p].numpy(), seq[p:].numpy()
    if groups != grid_size(amap.group_grid):
        raise ValueError(
            f"relevance has {groups} sequences per clip, the map {grid_size(amap.group_grid)} groups"
        )
    idx = torch.from_numpy(group_index(amap, amap.q_grid, amap.num_prefix)).reshape(-1)
    full = torch.zeros(
        groups * amap.num_prefix + grid_size(tuple(g * q for g, q in zip(amap.group_grid, amap.q_grid))),
        dtype=torch.float64,
    )
    full.index_add_(0, idx, r.reshape(-1))
    p = groups * amap.num_prefix
    return full[:p].numpy(), full[p:].numpy()


def flow_volume(
    output: ModelOutput, stage: int | None = None, view: int = 0, batch: int = 0
) -> tuple[np.ndarray, Footprint]:
    """``(volume, footprint)`` of token flow, ready for ``viz.to_frames``: the relevance of the tokens
    entering the first block (``stage=None``) or the last block of ``stage`` (see :func:`flow_map`), on
    that block's input grid (HVT's 1-D pooled tokens painted through their spans)."""
    amap = flow_map(output, stage, view)
    _, grid = flow_tokens(output, amap, batch)
    geom = layout_of(output, amap).inputs[view]
    return geom.paintable(grid.reshape(tuple(int(g) for g in geom.grid)))


def flow_grid(output: ModelOutput, stage: int | None = None, view: int = 0, batch: int = 0) -> np.ndarray:
    """Token flow on the entering tokens' own grid (no painting): float64, shaped like the block input."""
    amap = flow_map(output, stage, view)
    _, grid = flow_tokens(output, amap, batch)
    geom = layout_of(output, amap).inputs[view]
    return grid.reshape(tuple(int(g) for g in geom.grid))


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.arange(x.size, dtype=np.float64)
    vals, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]  # ties share their mean rank


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two equally shaped arrays (ties get their mean rank); NaN when either is
    constant or they have fewer than 2 finite pairs."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"spearman needs equal shapes, got {np.shape(a)} and {np.shape(b)}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2:
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    den = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / den) if den > 0 else float("nan")
