"""Sink keys: attention peaks that sit at a fixed position whatever the clip shows.

A trained transformer may park attention on one key — a register-like "sink" — instead of on content. In
``mvt_t.synth``'s last block the top key of the CLS row is the bottom-right corner of the last time step on
about half the clips, on a flat grey clip and after flips or time reversal; its key-pooling window hangs
over the zero padding of that corner. A map that peaks there says nothing about the clip, so the app
names such keys and can leave them out (``viz`` takes ``exclude_sinks``).

Detector (:func:`find_sinks`): run the model on probe clips and on each one mirrored left-right, mirrored
top-bottom and played backwards (content moves, positions stay), plus one flat clip (no content at all).
For every attention map, each input's *top key* is the grid key with the largest attention: the head-mean
CLS row where a single CLS query exists, else the mean attention each key receives. A key is a sink of that
map when it is the top key on the flat clip, **and** on at least ``min_rate`` of the inputs of *every*
variant (original, each flip, reversed) — a content peak would follow the content under the flips; a sink
does not move — **and** takes on average at least ``min_excess`` times a uniform share of the attention (a
key that wins by a hair on nearly flat rows is not a sink). Prefix (CLS) keys are not candidates (the maps
show grid keys only). With few keys (ViViT's temporal maps have 8) chance alone puts a key on top of 1 in 8
clips, which is why both the rate in every variant and the excess are asked for.

:func:`mark_sinks` writes the result into ``ModelOutput.sinks`` of any output of the same model and input
size (maps are matched by their position in ``output.attentions``, their block and view); it computes
nothing (a deferred map stays deferred).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .outputs import AttentionMap, ModelOutput, grid_size

VARIANTS = ("original", "mirror_lr", "mirror_tb", "reversed")
"""The probe variants: as given, flipped along W, flipped along H, flipped along T."""
_FLIP_DIMS = {"original": None, "mirror_lr": 4, "mirror_tb": 3, "reversed": 2}


@dataclass(frozen=True)
class Sink:
    """A position-fixed top key of one attention map."""

    map_index: int
    """Position of the map in ``ModelOutput.attentions``."""
    stage: int
    block: int
    view: int | None
    key: int
    """Position in the map's key sequence (``Nk`` axis, prefix included)."""
    cell: tuple[int, int, int] | None
    """(t, h, w) of the key on its (local) key grid; ``None`` for cross maps (several grids)."""
    rate: float
    """Share of the non-flat probe inputs on which it is the top key."""
    share: float
    """Mean attention it takes over the probe inputs (uniform would be ``1 / grid keys``)."""
    uniform: float
    padded: bool
    """Its key-pooling window reaches into the zero padding (an edge or corner key of a padded pool)."""


def _key_scores(amap: AttentionMap, batch: int) -> np.ndarray:
    """``(Nk,)`` float64 top-key scores of one input: the head-mean CLS row, or the mean attention received."""
    probs = amap.probs()[batch].float()  # (G, Nq, Nk)
    if amap.num_prefix and amap.groups == 1:
        return probs[0, 0].double().numpy()
    return probs.mean(dim=(0, 1)).double().numpy()


def _grid_keys(amap: AttentionMap) -> np.ndarray:
    """Bool ``(Nk,)``: True for grid keys (prefix keys of every segment excluded)."""
    nk = amap.shape[-1]
    ok = np.ones(nk, dtype=bool)
    start = 0
    for seg in amap.segments_k:
        ok[start : start + seg.num_prefix] = False
        start += seg.length
    if amap.k_segments is None:
        ok[: amap.num_prefix] = False
    return ok


def _cell(amap: AttentionMap, key: int) -> tuple[int, int, int] | None:
    if amap.kind == "cross" or amap.k_segments is not None:
        return None
    idx = key - amap.num_prefix
    if not 0 <= idx < grid_size(amap.k_grid):
        return None
    return tuple(int(i) for i in np.unravel_index(idx, amap.k_grid))  # type: ignore[return-value]


def _padded(amap: AttentionMap, cell: tuple[int, int, int] | None) -> bool:
    pool = amap.kv_pool
    if cell is None or pool is None:
        return False
    for i, n, k, s, p in zip(cell, amap.k_grid, pool.kernel, pool.stride, pool.padding):
        if p == 0:
            continue
        n_in = (n - 1) * s + k - 2 * p  # the pooled grid's input length (exact for these pools)
        lo = i * s - p
        if lo < 0 or lo + k > n_in:
            return True
    return False


def _probe_inputs(clips: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    parts, names = [], []
    for name in VARIANTS:
        dim = _FLIP_DIMS[name]
        parts.append(clips if dim is None else clips.flip(dim))
        names += [name] * clips.shape[0]
    flat = clips.mean(dim=(0, 2, 3, 4), keepdim=True).expand(1, *clips.shape[1:])  # the clips' mean colour
    parts.append(flat)
    names.append("flat")
    return torch.cat(parts), names


def find_sinks(
    model: nn.Module,
    clips: torch.Tensor,
    *,
    min_rate: float = 0.25,
    min_excess: float = 2.0,
    batch_size: int = 4,
) -> list[Sink]:
    """The sink keys of every attention map of ``model``, probed with ``clips`` ``(N, 3, T, H, W)`` (normalised
    as the model expects; a few dozen SynthMotion clips are plenty). See the module docstring."""
    if clips.ndim != 5 or clips.shape[0] < 1:
        raise ValueError(f"find_sinks needs probe clips (N, 3, T, H, W), got {tuple(clips.shape)}")
    inputs, names = _probe_inputs(clips)
    tops: list[list[int]] = []
    shares: list[np.ndarray] = []
    maps: list[AttentionMap] = []
    with torch.inference_mode():
        for start in range(0, inputs.shape[0], batch_size):
            out = model.forward_with_attention(inputs[start : start + batch_size])
            maps = out.attentions
            for b in range(out.logits.shape[0]):
                row, share = [], []
                for m in maps:
                    scores = np.where(_grid_keys(m), _key_scores(m, b), -np.inf)
                    row.append(int(np.argmax(scores)))
                    share.append(np.where(np.isfinite(scores), scores, 0.0))
                tops.append(row)
                shares.append(share)
    top = np.asarray(tops)  # (inputs, maps)
    kinds = np.asarray(names)
    flat = top[kinds == "flat"][0]
    found = []
    for i, m in enumerate(maps):
        key = int(flat[i])
        per_variant = [float((top[kinds == v, i] == key).mean()) for v in VARIANTS]
        if min(per_variant) < min_rate:
            continue
        probe = kinds != "flat"
        cell = _cell(m, key)
        mean_share = float(np.mean([s[i][key] for s, k in zip(shares, kinds) if k != "flat"]))
        uniform = 1.0 / max(1, int(_grid_keys(m).sum()))
        if mean_share < min_excess * uniform:
            continue
        found.append(
            Sink(
                map_index=i,
                stage=m.stage,
                block=m.block,
                view=m.view,
                key=key,
                cell=cell,
                rate=float((top[probe, i] == key).mean()),
                share=mean_share,
                uniform=uniform,
                padded=_padded(m, cell),
            )
        )
    return found


def mark_sinks(output: ModelOutput, sinks: list[Sink]) -> ModelOutput:
    """Set ``output.sinks`` from :func:`find_sinks`'s result (in place; returned). Computes nothing."""
    by_map: dict[int, list[int]] = {}
    for s in sinks:
        if s.map_index < len(output.attentions):
            m = output.attentions[s.map_index]
            if (m.block, m.view) == (s.block, s.view) and s.key < m.shape[-1]:
                by_map.setdefault(s.map_index, []).append(s.key)
    for i, keys in by_map.items():
        output.sinks[i] = tuple(sorted(set(keys)))
    return output
