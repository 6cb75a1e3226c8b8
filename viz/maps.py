"""Per-map attention volumes: the CLS row (or the attention received) laid out on the key grid.

What a volume means depends on the map (the caption in the UI should say which):

* a map with a CLS query (``num_prefix > 0``, one group): the CLS row over the grid keys — per head from
  ``cls_row``, or the head mean / max. Prefix keys are dropped, the rest is *not* renormalised, so values
  are attention probabilities;
* a map without CLS (HVT, ViViT models 3/4) or a factorised map: the mean attention each key *receives*
  (column mean over all queries of its group), from the head-averaged ``probs``; per-head versions need a
  CLS row and raise;
* factorised maps with a per-group prefix (one CLS per frame): each group's CLS row, laid onto the full grid;
* cross maps (MMViT): one volume per view (:func:`attention_volumes_by_view`).

``exclude_sinks=True`` leaves out the map's sink keys (``ModelOutput.sinks``, found by ``mvt.sinks``: keys that
peak at a fixed position whatever the clip shows): they get the smallest value of the other grid keys, so
the picture and its maximum show the rest. Functions that take a map alone take its ``sinks`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mvt.outputs import AttentionMap, Footprint, ModelOutput, grid_size

from .geometry import _prod, group_index, layout_of, seq_prefix


def _key_values(amap: AttentionMap, head: str | int, batch: int) -> np.ndarray:
    """Values over the whole key sequence (the full sequence for factorised maps), float64, prefix included."""
    g = amap.groups  # known without computing a deferred map
    p = amap.num_prefix
    if g == 1 and p > 0:
        if amap.cls_row is not None:
            rows = amap.cls_row[batch].float()  # (heads, Nk)
            if head == "mean":
                row = rows.mean(0)
            elif head == "max":
                row = rows.max(0).values
            else:
                h = int(head)
                if not -rows.shape[0] <= h < rows.shape[0]:
                    raise ValueError(f"head {h} out of range: this map has {rows.shape[0]} heads")
                row = rows[h]
            return row.double().numpy()
        if head != "mean":
            raise ValueError("per-head maps need AttentionMap.cls_row; this map only has head-averaged probs")
        return amap.probs()[batch, 0, 0].double().numpy()
    if head != "mean":
        raise ValueError(
            "this map has no single CLS query (no CLS token, or factorised groups): only head='mean' "
            "(mean attention received) is available"
        )
    probs = amap.probs()[batch].float()  # (G, Nq, Nk)
    if g == 1:
        return probs.mean(dim=(0, 1)).double().numpy()
    # factorised: per group, its own CLS row (if any) or the mean received; then scatter onto the full grid
    per_group = probs[:, 0, :] if p > 0 else probs.mean(dim=1)  # (G, Nk)
    idx = group_index(amap, amap.k_grid, p)  # (G, Nk) positions in the full sequence
    full = torch.zeros(g * p + grid_size(_prod(amap.group_grid, amap.k_grid)), dtype=torch.float64)
    full.index_add_(0, torch.from_numpy(idx.reshape(-1)), per_group.double().reshape(-1))
    return full.numpy()


def _drop_sinks(amap: AttentionMap, sinks: Sequence[int], vals: np.ndarray) -> np.ndarray:
    """``vals`` over the key sequence with the ``sinks`` keys set to the smallest other grid-key value."""
    if not sinks:
        return vals
    _, g, _, nk = amap.shape
    local = np.zeros(nk, dtype=bool)
    local[list(sinks)] = True
    if g > 1:  # factorised: the sink is a local key position of every group
        full = np.zeros(vals.size, dtype=bool)
        idx = group_index(amap, amap.k_grid, amap.num_prefix)  # (G, Nk)
        full[idx[:, local].reshape(-1)] = True
        sink, keep = full, ~full
        keep[: seq_prefix(amap)] = False
    else:
        sink, keep = local, ~local
        start = 0
        for seg in amap.segments_k:
            keep[start : start + seg.num_prefix] = False
            start += seg.length
    out = vals.copy()
    if keep.any():
        out[sink] = vals[keep].min()
    return out


def attention_volumes_by_view(
    amap: AttentionMap, head: str | int = "mean", batch: int = 0, sinks: Sequence[int] = ()
) -> dict[int, np.ndarray]:
    """One ``(T, H, W)`` float32 volume per key view of ``amap`` (a single entry unless it is a cross map);
    ``sinks``: key positions to leave out (``ModelOutput.sinks_of(amap)``)."""
    vals = _drop_sinks(amap, sinks, _key_values(amap, head, batch))
    if amap.kind == "cross" or amap.k_segments is not None:
        out: dict[int, np.ndarray] = {}
        start = 0
        for seg in amap.segments_k:
            chunk = vals[start + seg.num_prefix : start + seg.length]
            out[seg.view] = chunk.reshape(seg.grid).astype(np.float32)
            start += seg.length
        return out
    p = seq_prefix(amap)
    grid = _prod(amap.group_grid, amap.k_grid)
    return {amap.view or 0: vals[p : p + grid_size(grid)].reshape(grid).astype(np.float32)}


def attention_volume(
    amap: AttentionMap,
    head: str | int = "mean",
    batch: int = 0,
    view: int | None = None,
    sinks: Sequence[int] = (),
) -> np.ndarray:
    """``(T, H, W)`` float32 attention volume on the map's (full) key grid; see the module docstring.

    ``head`` is ``"mean"``, ``"max"`` or a head index. For cross maps ``view`` picks the key view (default:
    the first). The volume lives on ``group_grid ⊙ k_grid`` — for MViT's pooled keys that is the pooled key
    grid, not the query grid. Paint it with :func:`attention_footprint` (or use :func:`map_volume`, which
    also expands HVT's 1-D pooled tokens onto the patch grid).
    """
    vols = attention_volumes_by_view(amap, head=head, batch=batch, sinks=sinks)
    if view is None:
        return next(iter(vols.values()))
    if view not in vols:
        raise ValueError(f"view {view} has no keys in this map; views: {sorted(vols)}")
    return vols[view]


def map_volume(
    output: ModelOutput,
    amap: AttentionMap,
    head: str | int = "mean",
    batch: int = 0,
    view: int | None = None,
    exclude_sinks: bool = False,
) -> tuple[np.ndarray, Footprint]:
    """``(volume, footprint)`` ready for ``viz.to_frames(volume, clip_shape, footprint)``.

    Box tokens (patch embedding composed with 3-D pools) keep the key grid and get its footprint; 1-D pooled
    tokens (HVT) are painted onto the patch grid through their pooling windows (a patch gets the mean of
    the tokens whose window covers it; patches no window covers get 0).
    """
    lay = layout_of(output, amap)
    sinks = output.sinks_of(amap) if exclude_sinks else ()
    vols = attention_volumes_by_view(amap, head=head, batch=batch, sinks=sinks)
    v = next(iter(vols)) if view is None else view
    if v not in vols:
        raise ValueError(f"view {v} has no keys in this map; views: {sorted(vols)}")
    return lay.keys[v].paintable(vols[v])


def attention_footprint(output: ModelOutput, amap: AttentionMap, view: int | None = None) -> Footprint | None:
    """Footprint on the model input of the key grid of ``amap`` (``None`` for 1-D pooled tokens, which have
    no box footprint — use :func:`map_volume` for those)."""
    lay = layout_of(output, amap)
    v = (amap.segments_k[0].view if view is None else view) if amap.kind == "cross" else (amap.view or 0)
    return lay.keys[v].footprint


def stage_volumes(
    output: ModelOutput, head: str | int = "mean", batch: int = 0
) -> list[tuple[int, np.ndarray, Footprint]]:
    """``(stage, volume, footprint)`` for every stage's :func:`stage_map`."""
    return [(s, *stage_volume(output, s, head=head, batch=batch)) for s in stages(output)]


def stages(output: ModelOutput) -> list[int]:
    """The stages (0-based) that have attention maps, in order."""
    return sorted({m.stage for m in output.attentions})


def stage_volume(
    output: ModelOutput, stage: int, head: str | int = "mean", batch: int = 0, exclude_sinks: bool = False
) -> tuple[np.ndarray, Footprint]:
    """``(volume, footprint)`` of the map that stands for ``stage`` (its :func:`stage_map`)."""
    return map_volume(output, stage_map(output, stage), head=head, batch=batch, exclude_sinks=exclude_sinks)


def stage_map(output: ModelOutput, stage: int) -> AttentionMap:
    """The map that stands for a stage: its last self-attention map of view 0 (else any last map)."""
    maps = [m for m in output.attentions if m.stage == stage]
    if not maps:
        raise ValueError(f"no attention maps at stage {stage}")
    own = [m for m in maps if m.kind != "cross" and (m.view or 0) == 0] or [
        m for m in maps if m.kind != "cross"
    ]
    return (own or maps)[-1]
