"""Ask a point: where one spot of the clip looks, in a model, stage by stage; and which times attend to which.

A clicked clip position (time in seconds, x and y in the clip's pixels) goes through the model's own
sampling (:class:`Sampling`): its frame times, the resize of the short side and the centre crop to its input.
On the input it lands in one token of each grid (:func:`locate`): the token whose footprint covers it and
whose centre is nearest (ties go to the later token, as the nearest-centre painting does) — MViT's pooled
query grid of a stage, ViViT's tubelet, HVT's 1-D pooled token followed through each pooling window. That
token's attention row over its keys (:meth:`Geometry.query`) is a volume on the key grid, painted with the
keys' own footprints. :meth:`Geometry.frame_matrix` sums a map's token matrix into time × time.

Coordinates are continuous, in pixels (frames for time) from the first edge: pixel ``i`` spans ``[i, i + 1)``.
A footprint window ``[lo, lo + kernel)`` (``mvt.outputs.Footprint``) has its centre at ``lo + kernel / 2``;
frame ``k`` of a model, seen at clip time ``times[k]``, is the input time ``k + ½``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mvt.outputs import AttentionMap, Footprint, Grid, ModelOutput, grid_size

from .geometry import MapLayout, TokenGeom, _prod, apply_right, pool_factors, trace

Point = tuple[float, float, float]
"""A position on a model input: (frame, y, x), continuous (see the module docstring)."""
PARTS = ("joint", "spatial", "temporal")
"""The kinds of self-attention a stage's query can have: one joint map, or a spatial and a temporal one."""


def map_probs(amap: AttentionMap) -> torch.Tensor:
    """``(B, G, Nq, Nk)`` head-mean probabilities of a map, computing a deferred matrix once (``probs`` is a
    property on older records and a method on newer ones)."""
    p = amap.probs
    return p() if callable(p) else p


# -- the model's sampling: clip → input -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """How a model saw a clip: the clip time of each input frame, the clip's (H, W), the size its short side
    was resized to (``resized``: (H', W')) and the top-left of the centre ``crop × crop`` square it kept."""

    times: tuple[float, ...]
    clip_hw: tuple[int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]
    crop: int

    @classmethod
    def of(cls, times, clip_hw: tuple[int, int], resize: int, crop: int) -> Sampling:
        """The sampling of ``mvt.read_clip(size=resize)`` then ``mvt.resize_and_crop`` (same arithmetic)."""
        h, w = (int(v) for v in clip_hw)
        scale = resize / min(h, w)
        hw = (max(1, round(h * scale)), resize) if w <= h else (resize, max(1, round(w * scale)))
        if min(hw) != resize:  # resize_and_crop's own resize (a side shorter than the crop)
            s2 = resize / min(hw)
            hw = (max(crop, round(hw[0] * s2)), max(crop, round(hw[1] * s2)))
        top, left = (hw[0] - crop) // 2, (hw[1] - crop) // 2
        return cls(tuple(float(t) for t in times), (h, w), hw, (top, left), int(crop))

    @property
    def frame_s(self) -> float:
        """Seconds between the model's frames (the median step; 0 for a single frame)."""
        steps = np.diff(np.asarray(self.times))
        steps = steps[steps > 0]
        return float(np.median(steps)) if len(steps) else 0.0

    @property
    def span(self) -> tuple[float, float]:
        """The clip seconds the frames stand for: half a frame step either side of the first and last."""
        half = self.frame_s / 2
        return self.times[0] - half, self.times[-1] + half

    def frame_at(self, t: float) -> float | None:
        """Input time (``k + ½`` at frame ``k``'s clip time, linear between frames) of clip time ``t``;
        ``None`` outside :attr:`span`."""
        lo, hi = self.span
        if not lo <= t <= hi or (lo == hi and t != lo):
            return None
        times = np.asarray(self.times)
        centres = np.arange(len(times)) + 0.5
        if self.frame_s == 0.0 or np.any(np.diff(times) <= 0):  # padded clips repeat a time: nearest frame
            return float(np.abs(times - t).argmin()) + 0.5
        if t < times[0] or t > times[-1]:  # the half frame outside the first or last frame's time
            return float(np.clip(0.5 + (t - times[0]) / self.frame_s, 0.0, len(times) - 1e-9))
        return float(np.interp(t, times, centres))

    def time_of(self, frame: float) -> float:
        """Clip time of input time ``frame`` (the inverse of :meth:`frame_at`)."""
        times = np.asarray(self.times)
        f = float(frame) - 0.5
        if self.frame_s == 0.0 or np.any(np.diff(times) <= 0) or not 0 <= f <= len(times) - 1:
            k = int(np.clip(np.floor(f + 0.5), 0, len(times) - 1))
            return float(times[k] + (f - k) * self.frame_s)
        return float(np.interp(f, np.arange(len(times)), times))

    def to_input(self, t: float, x: float, y: float) -> tuple[Point | None, str | None]:
        """``(point on the input, None)``, or ``(None, reason)``: ``"window"`` (the model did not see that
        time) or ``"cropped"`` (the resize and centre crop left that spot out)."""
        f = self.frame_at(t)
        if f is None:
            return None, "window"
        (h, w), (h1, w1), (top, left) = self.clip_hw, self.resized, self.offset
        yi, xi = y * h1 / h - top, x * w1 / w - left
        if not (0 <= yi < self.crop and 0 <= xi < self.crop):
            return None, "cropped"
        return (f, yi, xi), None

    def to_clip(self, point: Point) -> tuple[float, float, float]:
        """``(t, x, y)`` on the clip of a point on the input (the inverse of :meth:`to_input`)."""
        f, yi, xi = point
        (h, w), (h1, w1), (top, left) = self.clip_hw, self.resized, self.offset
        return self.time_of(f), (xi + left) * w / w1, (yi + top) * h / h1

    def crop_box(self) -> tuple[float, float, float, float]:
        """The part of the clip the model kept, as fractions of its width and height: (x0, y0, x1, y1)."""
        (h1, w1), (top, left) = self.resized, self.offset
        return left / w1, top / h1, (left + self.crop) / w1, (top + self.crop) / h1


# -- which token covers a point ---------------------------------------------------------------------------------


def axis_token(u: float, n: int, stride: int, kernel: int, padding: int) -> int | None:
    """The token along one axis whose window ``[i·stride − padding, … + kernel)`` covers ``u`` and whose centre
    is nearest (ties: the later token); ``None`` when no window covers it."""
    lo = np.arange(int(n)) * int(stride) - int(padding)
    inside = (lo <= u) & (u < lo + int(kernel))
    if not inside.any():
        return None
    dist = np.where(inside, np.abs(u - (lo + kernel / 2.0)) - 1e-9 * np.arange(int(n)), np.inf)
    return int(dist.argmin())


def _box(point: Point, grid: Grid, fp: Footprint) -> tuple[int, ...] | None:
    idx = [axis_token(u, n, s, k, p) for u, n, s, k, p in zip(point, grid, fp.stride, fp.kernel, fp.padding)]
    return None if None in idx else tuple(idx)  # type: ignore[return-value]


def locate(geom: TokenGeom, point: Point) -> tuple[int, int, int] | None:
    """The position on ``geom``'s grid of the token that covers ``point`` (see :func:`axis_token`), or
    ``None``: outside every footprint, or (1-D pooled tokens) on a patch no pooling window kept."""
    if geom.footprint is not None:
        return _box(point, geom.grid, geom.footprint)  # type: ignore[return-value]
    base = _box(point, geom.base_shape, geom.base_footprint)
    if base is None:
        return None
    pos = np.unravel_index(np.ravel_multi_index(base, geom.base_shape), geom.base_grid)
    for pool, in_grid in geom.chain:
        out = pool.out_grid(in_grid)
        nxt = [
            axis_token(int(i) + 0.5, n, s, k, p)
            for i, n, s, k, p in zip(pos, out, pool.stride, pool.kernel, pool.padding)
        ]
        if None in nxt:
            return None
        pos = nxt
    return tuple(int(i) for i in pos)  # type: ignore[return-value]


def span_of(geom: TokenGeom, pos: tuple[int, int, int]) -> tuple[int, int]:
    """``[first, last + 1)`` raster indices of the first grid's tokens that token ``pos`` of a 1-D pooled grid
    was pooled from (its windows composed, clipped to the grid; along the pooled axis)."""
    lo, hi = int(pos[2]), int(pos[2]) + 1
    for pool, in_grid in reversed(geom.chain):
        s, k, p = int(pool.stride[2]), int(pool.kernel[2]), int(pool.padding[2])
        lo, hi = max(lo * s - p, 0), min((hi - 1) * s - p + k, int(in_grid[2]))
    return lo, hi


def token_centre(geom: TokenGeom, pos: tuple[int, int, int]) -> Point:
    """The centre of token ``pos``'s footprint on the input; for a 1-D pooled token, the centre of the patch at
    the middle of its span (the one its windows are centred on)."""
    if geom.footprint is not None:
        fp = geom.footprint
        return tuple(  # type: ignore[return-value]
            int(i) * s - p + k / 2.0 for i, s, k, p in zip(pos, fp.stride, fp.kernel, fp.padding)
        )
    lo, hi = span_of(geom, pos)
    flat = np.ravel_multi_index((*pos[:2], (lo + hi - 1) // 2), geom.base_grid)
    base = np.unravel_index(flat, geom.base_shape)
    return _box_centre(base, geom.base_footprint)


def _box_centre(pos, fp: Footprint) -> Point:
    return tuple(int(i) * s - p + k / 2.0 for i, s, k, p in zip(pos, fp.stride, fp.kernel, fp.padding))  # type: ignore[return-value]


# -- a token's row ---------------------------------------------------------------------------------------------


def _split(amap: AttentionMap, pos: tuple[int, int, int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A full-grid position as (its group's position in ``group_grid``, its position in the local grid)."""
    g = tuple(int(p) if int(n) > 1 else 0 for p, n in zip(pos, amap.group_grid))
    local = tuple(int(p) - a for p, a in zip(pos, g))
    return g, local


def token_row(amap: AttentionMap, pos: tuple[int, int, int], batch: int = 0) -> tuple[np.ndarray, float]:
    """Query ``pos`` (a position on the map's full query grid)'s head-mean attention over the full key grid:
    ``(values (T, H, W) float64, prefix mass)``. A factorised map's query sees only its own group's keys (the
    rest are 0); prefix (CLS) keys are left out of the volume and their share returned beside it."""
    g, local = _split(amap, pos)
    p = amap.num_prefix
    group = int(np.ravel_multi_index(g, amap.group_grid))
    row = map_probs(amap)[batch, group, p + int(np.ravel_multi_index(local, amap.q_grid))]
    row = row.double().numpy()  # (Nk,)
    full = _prod(amap.group_grid, amap.k_grid)
    keys = np.stack(np.unravel_index(np.arange(grid_size(amap.k_grid)), amap.k_grid), axis=1) + np.asarray(g)
    out = np.zeros(grid_size(full), dtype=np.float64)
    out[np.ravel_multi_index(keys.T, full)] = row[p:]
    return out.reshape(full), float(row[:p].sum())


# -- a stage's maps, answers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """The query token of one map: its position on the map's full query grid (t, h, w) of ``grid``, the
    map's kind and block, and where it sits on the input: ``frames`` ``[first, last + 1)``; for box tokens
    ``window`` ((lo, hi) frames, y, x, clipped to the input), ``footprint`` and ``patches`` (first-grid tokens
    per axis it was pooled from); for 1-D pooled tokens ``span`` ([first, last + 1) first-grid tokens)."""

    kind: str
    block: int
    position: tuple[int, int, int]
    grid: Grid
    frames: tuple[int, int]
    window: tuple[tuple[float, float], ...] | None = None
    footprint: Footprint | None = None
    patches: tuple[int, int, int] | None = None
    span: tuple[int, int] | None = None


@dataclass(frozen=True)
class Answer:
    """Where the token at a point looks at one stage: the query ``tokens`` (one per map: a joint map, or a
    spatial and a temporal one), each map's row painted with its keys' footprints (``parts``: kind →
    (volume, footprint)), their sum (``volume``/``footprint``; the parts share one key grid) and each map's
    share on prefix (CLS) keys. ``missing``: why no token covers the point at this stage (``None``: one does)."""

    stage: int
    point: Point
    tokens: tuple[Token, ...] = ()
    parts: dict[str, tuple[np.ndarray, Footprint]] = field(default_factory=dict)
    volume: np.ndarray | None = None
    footprint: Footprint | None = None
    prefix: dict[str, float] = field(default_factory=dict)
    missing: str | None = None


@dataclass(frozen=True)
class FrameMatrix:
    """A map's attention summed into time × time: ``values[i, j]`` is the share of the attention of the
    queries at time ``i`` that goes to the keys at time ``j`` (grid keys only: rows sum to 1), ``mass[i]`` the
    share of their attention on grid keys before that (the rest is on CLS/prefix keys). Times are the query
    and key grids' time slots; ``q_frames`` / ``k_frames`` give each slot's input frames ``[first, last + 1)``."""

    stage: int
    kind: str
    block: int
    values: np.ndarray
    mass: np.ndarray
    q_frames: tuple[tuple[int, int], ...]
    k_frames: tuple[tuple[int, int], ...]


class Geometry:
    """One output's token geometry (:func:`viz.geometry.trace`, walked once) and the questions asked of it:
    :meth:`query` (a point → each stage's query token and its row) and :meth:`frame_matrix`."""

    def __init__(self, output: ModelOutput) -> None:
        self.output = output
        self.layouts: dict[int, MapLayout] = {id(lay.amap): lay for lay in trace(output)}
        self.stages = sorted({m.stage for m in output.attentions})

    def maps(self, stage: int) -> list[AttentionMap]:
        """The maps a query at ``stage`` reads: the stage's last self-attention map of view 0, or its last
        spatial and last temporal maps (factorised ViViT)."""
        own = [m for m in self.output.attentions if m.stage == stage and m.kind != "cross"]
        own = [m for m in own if (m.view or 0) == 0] or own
        if not own:
            raise ValueError(f"no self-attention maps at stage {stage}")
        last = {m.kind: m for m in own}
        if "joint" in last and own[-1].kind == "joint":
            return [last["joint"]]
        return [last[k] for k in ("spatial", "temporal") if k in last] or [own[-1]]

    def _token(self, amap: AttentionMap, geom: TokenGeom, pos: tuple[int, int, int]) -> Token:
        shape = self.output.input_shape
        fp = geom.footprint
        if fp is None:
            lo, hi = span_of(geom, pos)
            ends = np.ravel_multi_index([(pos[0], pos[0]), (pos[1], pos[1]), (lo, hi - 1)], geom.base_grid)
            slots = np.unravel_index(ends, geom.base_shape)[0]  # time slots of the first and last patch
            bfp = geom.base_footprint
            first = max(0, int(slots[0]) * bfp.stride[0] - bfp.padding[0])
            last = min(int(shape[0]), int(slots[1]) * bfp.stride[0] - bfp.padding[0] + bfp.kernel[0])
            return Token(amap.kind, amap.block, pos, geom.grid, (first, last), span=(lo, hi))
        window = tuple(
            (max(0.0, float(i * s - p)), min(float(n), float(i * s - p + k)))
            for i, s, k, p, n in zip(pos, fp.stride, fp.kernel, fp.padding, shape)
        )
        frames = (int(window[0][0]), int(np.ceil(window[0][1])))
        patches = tuple(max(1, int(s) // int(e)) for s, e in zip(fp.stride, geom.base_footprint.stride))
        return Token(amap.kind, amap.block, pos, geom.grid, frames, window, fp, patches)  # type: ignore[arg-type]

    def query(self, point: Point, stage: int, batch: int = 0) -> Answer:
        """Where the token at ``point`` (on the input) looks at ``stage``: an :class:`Answer`."""
        tokens, parts, prefix = [], {}, {}
        for amap in self.maps(stage):
            lay = self.layouts[id(amap)]
            v = amap.view or 0
            pos = locate(lay.queries[v], point)
            if pos is None:
                why = (
                    "no pooling window of this stage kept that patch" if lay.queries[v].chain else "no token"
                )
                return Answer(stage, point, missing=why)
            tokens.append(self._token(amap, lay.queries[v], pos))
            row, prefix[amap.kind] = token_row(amap, pos, batch)
            parts[amap.kind] = lay.keys[v].paintable(row)
        volume, footprint = _combine(list(parts.values()), self.output.input_shape)
        return Answer(stage, point, tuple(tokens), parts, volume, footprint, prefix)

    def frame_map(self, stage: int) -> AttentionMap:
        """The map a stage's frame × frame matrix reads: its temporal map where it has one (factorised
        ViViT: the temporal encoder's own), else the one :meth:`maps` gives."""
        maps = self.maps(stage)
        return next((m for m in maps if m.kind == "temporal"), maps[0])

    def frame_matrix(self, stage: int, batch: int = 0) -> FrameMatrix:
        """The :class:`FrameMatrix` of :meth:`frame_map` at ``stage``."""
        amap = self.frame_map(stage)
        lay = self.layouts[id(amap)]
        v = amap.view or 0
        wq, q_frames = time_slots(lay.queries[v], self.output.input_shape[0])
        wk, k_frames = time_slots(lay.keys[v], self.output.input_shape[0])
        num = block_sums(amap, wq, wk, batch)
        rows = num.sum(axis=1)
        weight = wq.sum(axis=0)
        values = num / np.where(rows > 0, rows, 1.0)[:, None]
        mass = rows / np.where(weight > 0, weight, 1.0)
        return FrameMatrix(stage, amap.kind, amap.block, values, mass, q_frames, k_frames)


def _combine(parts: list[tuple[np.ndarray, Footprint]], shape: Grid) -> tuple[np.ndarray, Footprint | None]:
    """The sum of painted parts: on their shared grid, else painted onto the input first."""
    if len(parts) == 1 or all(p[1] == parts[0][1] and p[0].shape == parts[0][0].shape for p in parts):
        return np.sum([p[0] for p in parts], axis=0).astype(np.float32), parts[0][1]
    from .render import to_frames

    return np.sum([to_frames(v, shape, footprint=fp) for v, fp in parts], axis=0).astype(np.float32), None


# -- time × time -------------------------------------------------------------------------------------------------


def _frames_of(n: int, stride: int, kernel: int, padding: int, frames: int) -> tuple[tuple[int, int], ...]:
    lo = np.arange(n) * stride - padding
    return tuple((int(max(a, 0)), int(min(a + kernel, frames))) for a in lo)


def time_slots(geom: TokenGeom, frames: int) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
    """``(W, frames of each slot)``: ``W`` ``(N, S)`` float64 is how each token of ``geom``'s grid (raster
    order) shares out over the ``S`` time slots (rows sum to 1): one-hot on its time index for box tokens;
    for 1-D pooled tokens, the share of its pooling windows' first-grid tokens in each time slot."""
    if geom.footprint is not None:
        t, hw = int(geom.grid[0]), int(geom.grid[1]) * int(geom.grid[2])
        w = np.repeat(np.eye(t), hw, axis=0)  # (N, T)
        fp = geom.footprint
        return w, _frames_of(t, fp.stride[0], fp.kernel[0], fp.padding[0], frames)
    slots = int(geom.base_shape[0])
    per = grid_size(geom.base_shape) // slots
    field = np.repeat(np.eye(slots), per, axis=1).reshape(slots, *geom.base_grid)  # (S, *base grid)
    x = torch.from_numpy(field)
    for pool, in_grid in geom.chain:
        x = apply_right(x, pool_factors(pool, in_grid))
    w = x.reshape(slots, -1).T.numpy()  # (N, S)
    bfp = geom.base_footprint
    return w, _frames_of(slots, bfp.stride[0], bfp.kernel[0], bfp.padding[0], frames)


def block_sums(amap: AttentionMap, wq: np.ndarray, wk: np.ndarray, batch: int = 0) -> np.ndarray:
    """``Σ_g Wq[g's queries]ᵀ · A_g (grid part) · Wk[g's keys]``: the map's grid-to-grid attention summed into
    query slots × key slots, ``(Sq, Sk)`` float64 (prefix queries and keys left out)."""
    p = amap.num_prefix
    probs = map_probs(amap)[batch][:, p:, p:].double()  # (G, nq, nk)
    qi = _cells(amap, amap.q_grid)  # (G, nq) full-grid raster indices
    ki = _cells(amap, amap.k_grid)
    wq_g = torch.from_numpy(wq)[torch.from_numpy(qi)]  # (G, nq, Sq)
    wk_g = torch.from_numpy(wk)[torch.from_numpy(ki)]  # (G, nk, Sk)
    return torch.einsum("gqs,gqk,gkr->sr", wq_g, probs, wk_g).numpy()


def _cells(amap: AttentionMap, local: Grid) -> np.ndarray:
    """``(G, |local|)`` full-grid raster index of each group's tokens (group position + local position)."""
    full = _prod(amap.group_grid, local)
    gpos = np.stack(np.unravel_index(np.arange(grid_size(amap.group_grid)), amap.group_grid), axis=1)
    lpos = np.stack(np.unravel_index(np.arange(grid_size(local)), local), axis=1)
    pos = gpos[:, None, :] + lpos[None, :, :]  # (G, L, 3)
    return np.ravel_multi_index(tuple(np.moveaxis(pos, -1, 0)), full)
