"""Attention statistics per map and head: normalised entropy and mean attention distance.

* **Entropy** ``H / log Nk`` (0 = one key, 1 = uniform), so stages with different key counts compare.
  Per head it is the entropy of the CLS query's row (``cls_row``, the only per-head rows a map keeps);
  the ``"mean"`` entry is the mean over all grid queries of the entropy of the head-averaged row
  (``probs``). Maps without a CLS only have the ``"mean"`` entry.
* **Mean attention distance** (ViT, Raghu et al. 2021) from the head-averaged ``probs``: for every grid
  query, ``Σ_j A_ij d_ij`` over grid keys (prefix keys dropped, the row renormalised over grid keys),
  averaged over queries (at most ``max_queries`` per map, evenly strided). ``d`` uses the true token centres on the model input (pooled query and key grids
  each with their own footprint; HVT's pooled tokens at the mean centre of their window), split into a
  spatial part (pixels, ``√(dy² + dx²)``) and a temporal part (frames, ``|dt|``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mvt.outputs import ModelOutput

from .geometry import MapLayout, group_index, seq_prefix, trace


def _entropy_rows(p: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of ``p`` after renormalising it (numpy: no thread contention on tiny ops)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
    p = p / np.maximum(p.sum(-1, keepdims=True), 1e-30)
    return -(p * np.log(np.maximum(p, 1e-30))).sum(-1)


def _positions(lay: MapLayout, which: str) -> np.ndarray:
    """``(N_seq, 3)`` centres of the full query/key sequence (NaN for prefix tokens)."""
    m = lay.amap
    geoms = lay.queries if which == "q" else lay.keys
    segs = m.segments_q if which == "q" else m.segments_k
    if m.kind != "cross":
        segs = (segs[0],)
    parts = []
    for s in segs:
        v = s.view if m.kind == "cross" else (m.view or 0)
        parts.append(np.full((s.num_prefix if m.kind == "cross" else seq_prefix(m), 3), np.nan))
        parts.append(geoms[v].centres())
    return np.concatenate(parts, axis=0)


def _query_subset(n: int, max_queries: int) -> np.ndarray:
    """Evenly strided (deterministic) subset of at most ``max_queries`` of ``n`` query rows."""
    if n <= max_queries:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_queries).round().astype(np.int64))


def _distances(lay: MapLayout, probs: torch.Tensor, max_queries: int) -> tuple[float, float]:
    """Mean spatial (px) and temporal (frames) attention distance of one map (head mean, batch item)."""
    m = lay.amap
    qpos, kpos = _positions(lay, "q"), _positions(lay, "k")
    g = probs.shape[0]
    p = m.num_prefix
    if g > 1:
        qi, ki = group_index(m, m.q_grid, p), group_index(m, m.k_grid, p)
    else:
        qi = np.arange(len(qpos))[None]
        ki = np.arange(len(kpos))[None]
    per_group = max(1, max_queries // g)
    tot_s = tot_t = 0.0
    count = 0
    for gi in range(g):
        qp, kp = qpos[qi[gi]], kpos[ki[gi]]
        qv, kv = ~np.isnan(qp[:, 0]), ~np.isnan(kp[:, 0])
        if not qv.any() or not kv.any():
            continue
        rows = np.nonzero(qv)[0]
        rows = rows[_query_subset(len(rows), per_group)]
        a = probs[gi][torch.as_tensor(rows)].float().numpy()[:, kv].astype(np.float64)
        a /= np.maximum(a.sum(-1, keepdims=True), 1e-30)
        qp_r, kp_v = qp[rows], kp[kv]
        dt = np.abs(qp_r[:, None, 0] - kp_v[None, :, 0])
        ds = np.sqrt(((qp_r[:, None, 1:] - kp_v[None, :, 1:]) ** 2).sum(-1))
        tot_s += float((a * ds).sum())
        tot_t += float((a * dt).sum())
        count += len(rows)
    if count == 0:
        return math.nan, math.nan
    return tot_s / count, tot_t / count


def attention_stats(
    output: ModelOutput, batch: int = 0, distances: bool = True, max_queries: int = 1024
) -> list[dict]:
    """One row per (attention map, head): ``stage, block, map, kind, view, head, entropy,
    distance_px, distance_frames, source``. ``head`` is an int (per-head CLS entropy; distances are not
    per head and are NaN there) or ``"mean"``. Maps with more than ``max_queries`` grid queries use an
    evenly strided subset of them (deterministic). See the module docstring for definitions."""
    rows: list[dict] = []
    for lay in trace(output):
        m = lay.amap
        probs = m.probs()[batch].detach()  # (G, Nq, Nk)
        nk = probs.shape[-1]
        norm = math.log(nk) if nk > 1 else 1.0
        base = {"stage": m.stage, "block": m.block, "map": lay.index, "kind": m.kind, "view": m.view}
        if m.cls_row is not None:
            ent = _entropy_rows(m.cls_row[batch].float().numpy()) / norm  # (heads,)
            for h, e in enumerate(ent.tolist()):
                rows.append(
                    base
                    | {
                        "head": h,
                        "entropy": e,
                        "distance_px": math.nan,
                        "distance_frames": math.nan,
                        "source": "cls_row",
                    }
                )
        p = m.num_prefix
        grid_q = probs[:, p:, :] if probs.shape[1] > p else probs
        sub = torch.as_tensor(_query_subset(grid_q.shape[1], max(1, max_queries // grid_q.shape[0])))
        ent_mean = float((_entropy_rows(grid_q[:, sub].float().numpy()) / norm).mean())
        ds, dt = _distances(lay, probs, max_queries) if distances else (math.nan, math.nan)
        rows.append(
            base
            | {
                "head": "mean",
                "entropy": ent_mean,
                "distance_px": ds,
                "distance_frames": dt,
                "source": "probs",
            }
        )
    return rows
