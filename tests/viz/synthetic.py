"""Synthetic AttentionMaps / ModelOutputs with known structure, and dense reference operators.

The dense helpers here are deliberately written with explicit loops (independent of viz's Kronecker
factors) so tests compare two implementations.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from mvt.outputs import AttentionMap, Footprint, ModelOutput, PoolOp, StageInfo


def stochastic(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(*shape, generator=g) + 0.05
    return a / a.sum(-1, keepdim=True)


def dense_pool(pool: PoolOp | None, grid, num_prefix: int) -> np.ndarray:
    """Explicit-loop pool matrix (prefix identity; uniform over in-range window cells)."""
    n_in = int(np.prod(grid))
    if pool is None:
        return np.eye(num_prefix + n_in)
    out = pool.out_grid(grid)
    n_out = int(np.prod(out))
    m = np.zeros((num_prefix + n_out, num_prefix + n_in))
    m[:num_prefix, :num_prefix] = np.eye(num_prefix)
    for o, (ot, oh, ow) in enumerate(itertools.product(*[range(n) for n in out])):
        cells = []
        for dt, dh, dw in itertools.product(*[range(k) for k in pool.kernel]):
            t = ot * pool.stride[0] - pool.padding[0] + dt
            h = oh * pool.stride[1] - pool.padding[1] + dh
            w = ow * pool.stride[2] - pool.padding[2] + dw
            if 0 <= t < grid[0] and 0 <= h < grid[1] and 0 <= w < grid[2]:
                cells.append((t * grid[1] + h) * grid[2] + w)
        for c in cells:
            m[num_prefix + o, num_prefix + c] = 1.0 / len(cells)
    return m


def amap(
    probs: torch.Tensor,
    q_grid,
    k_grid,
    num_prefix: int,
    *,
    stage: int = 0,
    block: int = 0,
    kind: str = "joint",
    heads: int = 2,
    cls_row: torch.Tensor | None = None,
    **kw,
) -> AttentionMap:
    if cls_row is None and num_prefix and probs.shape[1] == 1:
        cls_row = probs[:, 0, 0, :].unsqueeze(1).repeat(1, heads, 1)
    return AttentionMap(
        stage=stage,
        block=block,
        kind=kind,
        heads=heads,
        q_grid=tuple(q_grid),
        k_grid=tuple(k_grid),
        num_prefix=num_prefix,
        head_mean=probs,
        cls_row=cls_row,
        **kw,
    )


def output(maps, input_shape=(4, 32, 32), embed=None, pooling="cls", extras=None, stages=None) -> ModelOutput:
    embed = embed or Footprint(stride=(1, 8, 8), kernel=(1, 8, 8))
    if stages is None:
        g = maps[0].in_grid or maps[0].q_grid
        stages = [StageInfo(0, g, 8, int(np.prod(g)), maps[0].num_prefix, embed)]
    return ModelOutput(
        logits=torch.zeros(1, 3),
        attentions=list(maps),
        stages=stages,
        input_shape=tuple(input_shape),
        embed=embed,
        pooling=pooling,
        extras=dict(extras or {}),
    )
