"""Ask a point: exact geometry (a property over grids, chains, crops and every family), rows that sum to 1,
and frame × frame matrices that are the token matrix summed over the right blocks."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

import mvt
from mvt.outputs import Footprint, PoolOp, grid_size
from tests.viz.test_families import MODELS
from viz.geometry import TokenGeom, footprint_grid
from viz.query import (
    Geometry,
    Sampling,
    axis_token,
    locate,
    map_probs,
    span_of,
    time_slots,
    token_centre,
    token_row,
)

RNG = np.random.default_rng(32)


def _samplings(frames: int, crop: int, n: int = 3, seed: int = 0) -> list[Sampling]:
    """Random clips (wide, tall, square) read the way a model reads them: frame times from a random start
    and rate, the short side resized to ``crop`` or more, then the centre crop."""
    rng = np.random.default_rng(seed)
    out = []
    for shape in [(crop, crop), (int(crop * 0.75), crop), (crop, int(crop * 0.6))][:n]:
        h, w = (int(v * rng.uniform(1.0, 3.0)) for v in shape)
        start, step = rng.uniform(0, 5), rng.uniform(0.02, 0.2)
        times = start + step * np.arange(frames)
        resize = crop + int(rng.integers(0, crop // 4 + 1))
        out.append(Sampling.of(times, (h, w), resize, crop))
    return out


def _positions(grid, limit: int = 80, seed: int = 0) -> list[tuple[int, int, int]]:
    """Every corner, the middle and random positions of ``grid`` (every position when there are few)."""
    every = list(itertools.product(*[range(int(g)) for g in grid]))
    if len(every) <= limit:
        return every
    rng = np.random.default_rng(seed)
    corners = set(itertools.product(*[(0, int(g) - 1) for g in grid])) | {tuple(int(g) // 2 for g in grid)}
    picks = {every[i] for i in rng.choice(len(every), limit, replace=False)}
    return sorted(corners | picks)


def _round_trip(geom: TokenGeom, pos, sampling: Sampling) -> tuple[int, int, int] | None:
    """The token a click at token ``pos``'s footprint centre, seen on the clip, lands in."""
    t, x, y = sampling.to_clip(token_centre(geom, pos))
    point, why = sampling.to_input(t, x, y)
    assert why is None, f"the centre of {pos} falls outside the input ({why})"
    return locate(geom, point)


# -- the property over synthetic grids and chains ----------------------------------------------------------------


def _random_footprint(rng) -> tuple[Footprint, tuple[int, int, int]]:
    """Strides 1–8, kernels from the stride to three times it, padding up to half the kernel, on 16×64×64."""
    shape = (16, 64, 64)
    while True:
        stride, kernel, padding = [], [], []
        for _ in range(3):
            s = int(rng.integers(1, 9))
            k = s + int(rng.integers(0, 2 * s + 1))
            p = int(rng.integers(0, k // 2 + 1))
            stride.append(s), kernel.append(k), padding.append(p)
        fp = Footprint(tuple(stride), tuple(kernel), tuple(padding))
        if min(footprint_grid(fp, shape)) >= 1:
            return fp, shape


@pytest.mark.parametrize("seed", range(24))
def test_centre_of_any_box_token_returns_it(seed):
    rng = np.random.default_rng(seed)
    fp, shape = _random_footprint(rng)
    grid = footprint_grid(fp, shape)
    geom = TokenGeom(grid, fp, grid, grid, fp)
    sampling = _samplings(shape[0], shape[1], n=1, seed=seed)[0]
    checked = 0
    for pos in _positions(grid, seed=seed):
        centre = token_centre(geom, pos)
        if not all(0 <= c < n for c, n in zip(centre, shape)):  # a padded edge token centred off the input
            continue
        assert _round_trip(geom, pos, sampling) == pos, (fp, grid, pos)
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("seed", range(8))
def test_centre_of_any_pooled_1d_token_returns_it(seed):
    """HVT's tokens: a 1-D raster of patches pooled again and again (odd windows, no padding, like HVT's
    MaxPool1d); each token's centre patch leads back to it through every window."""
    rng = np.random.default_rng(100 + seed)
    frames, side = int(rng.integers(1, 5)), int(rng.integers(3, 9))
    fp = Footprint((2, 16, 16), (2, 16, 16))
    base_shape = (frames, side, side)
    base = (1, 1, grid_size(base_shape))
    geom = TokenGeom(base, None, base, base_shape, fp)
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.choice([3, 5]))
        pool = PoolOp((1, 1, k), (1, 1, int(rng.integers(1, k))), (0, 0, 0), kind="max")
        if pool.out_grid(geom.grid)[2] < 1:
            break
        geom = geom.then(pool)
    shape = (2 * frames, 16 * side, 16 * side)
    sampling = _samplings(shape[0], shape[1], n=1, seed=seed)[0]
    for pos in _positions(geom.grid, seed=seed):
        assert _round_trip(geom, pos, sampling) == pos, (geom.chain, pos)
        lo, hi = span_of(geom, pos)
        assert 0 <= lo < hi <= grid_size(base_shape)


def test_axis_token_ties_go_to_the_later_token_and_uncovered_is_none():
    # stride 2, kernel 4: position 4.0 is covered by tokens 1 ([2, 6)) and 2 ([4, 8)), centres 4 and 6
    assert axis_token(4.0, 4, 2, 4, 0) == 1
    assert axis_token(5.0, 4, 2, 4, 0) == 2  # equidistant from 4 and 6: the later
    assert axis_token(9.5, 4, 2, 2, 0) is None  # beyond the last window


# -- the clip → input sampling ------------------------------------------------------------------------------------


def test_sampling_matches_the_reader_and_the_crop(tmp_path):
    """A bright dot at a clip position lands where :meth:`Sampling.to_input` says, after the real decode and
    crop; a dot in the cropped-away strip is said to be cropped; a time before the first frame is outside."""
    h, w, x, y = 90, 160, 70.5, 30.5
    video = np.zeros((6, h, w, 3), dtype=np.uint8)
    video[:, int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255
    path = mvt.write_video(video, tmp_path / "dot.mp4", fps=10)
    clip = mvt.read_clip(path, num_frames=4, stride=1, size=56, start_s=0.1)
    spec = mvt.get_spec("mvit_t.untrained")
    frames = mvt.resize_and_crop(clip.frames, replace(spec, resize_size=56, crop_size=48))
    s = Sampling.of(clip.times, (h, w), 56, 48)
    assert s.resized == clip.frames.shape[1:3]
    point, why = s.to_input(float(clip.times[1]), x, y)
    assert why is None and point[0] == pytest.approx(1.5)
    lum = frames[1].astype(float).sum(-1)
    cy, cx = np.unravel_index(lum.argmax(), lum.shape)
    assert abs(cy + 0.5 - point[1]) <= 1.5 and abs(cx + 0.5 - point[2]) <= 1.5
    assert s.to_input(float(clip.times[1]), 5.0, y) == (None, "cropped")
    assert s.to_input(float(clip.times[0]) - 0.2, x, y) == (None, "window")
    t, x2, y2 = s.to_clip(point)
    assert (t, x2, y2) == pytest.approx((clip.times[1], x, y))
    x0, y0, x1, y1 = s.crop_box()
    assert (y0, y1) == (4 / 56, 52 / 56) and x0 == pytest.approx(1 - x1) and 0 < x0 < x1 < 1


# -- every family --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(MODELS))
def family(request):
    name, frames = MODELS[request.param]
    model = mvt.create_model(name)
    spec = model.spec
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, frames or spec.num_frames, spec.crop_size, spec.crop_size, generator=g)
    with torch.no_grad():
        out = model.forward_with_attention(x)
    return request.param, Geometry(out)


def test_centre_of_every_token_returns_it_at_every_stage(family):
    key, geo = family
    shape = geo.output.input_shape
    for sampling in _samplings(shape[0], shape[1], seed=len(key)):
        for stage in geo.stages:
            for amap in geo.maps(stage):
                geom = geo.layouts[id(amap)].queries[amap.view or 0]
                for pos in _positions(geom.grid, limit=40, seed=stage):
                    assert _round_trip(geom, pos, sampling) == pos, (key, stage, amap.kind, pos)
                    answer = geo.query(token_centre(geom, pos), stage)
                    assert answer.missing is None
                    assert {t.kind: t.position for t in answer.tokens}[amap.kind] == pos


def test_query_rows_sum_to_one_and_paint_on_the_key_grid(family):
    key, geo = family
    tol = 2e-3  # float16 storage of big maps
    for stage in geo.stages:
        for amap in geo.maps(stage):
            geom = geo.layouts[id(amap)].queries[amap.view or 0]
            for pos in _positions(geom.grid, limit=10):
                row, prefix = token_row(amap, pos)
                assert row.sum() + prefix == pytest.approx(1.0, abs=tol), (key, stage, pos)
                assert (row >= 0).all()
        answer = geo.query(token_centre(geom, pos), stage)
        assert answer.volume is not None and np.isfinite(answer.volume).all()
        if answer.footprint is not None:
            assert footprint_grid(answer.footprint, geo.output.input_shape) == answer.volume.shape


def _dense(amap) -> np.ndarray:
    """The map as one full ``(N, N)`` grid-to-grid matrix (explicit loops; each group's block in place)."""
    probs = map_probs(amap)[0].double().numpy()
    p = amap.num_prefix
    full_q = tuple(g * q for g, q in zip(amap.group_grid, amap.q_grid))
    full_k = tuple(g * k for g, k in zip(amap.group_grid, amap.k_grid))
    m = np.zeros((grid_size(full_q), grid_size(full_k)))
    for gi, g in enumerate(itertools.product(*[range(n) for n in amap.group_grid])):
        for qi, q in enumerate(itertools.product(*[range(n) for n in amap.q_grid])):
            row = np.ravel_multi_index(tuple(a + b for a, b in zip(g, q)), full_q)
            for ki, k in enumerate(itertools.product(*[range(n) for n in amap.k_grid])):
                m[row, np.ravel_multi_index(tuple(a + b for a, b in zip(g, k)), full_k)] = probs[
                    gi, p + qi, p + ki
                ]
    return m


def test_frame_matrix_rows_sum_to_one_and_are_the_block_sums(family):
    key, geo = family
    frames = geo.output.input_shape[0]
    for stage in geo.stages:
        fm = geo.frame_matrix(stage)
        assert np.allclose(fm.values.sum(axis=1), 1.0)
        assert ((fm.mass > 0) & (fm.mass <= 1 + 1e-3)).all()
        amap = geo.frame_map(stage)
        if key.startswith("vivit") and any(m.kind == "temporal" for m in geo.maps(stage)):
            assert amap.kind == "temporal"  # factorised ViViT: the temporal map's own matrix
        lay = geo.layouts[id(amap)]
        wq, _ = time_slots(lay.queries[amap.view or 0], frames)
        wk, _ = time_slots(lay.keys[amap.view or 0], frames)
        d = _dense(amap)
        blocks = wq.T @ d @ wk  # the token matrix summed over each (query time, key time) block
        want = blocks / blocks.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(fm.values, want, atol=2e-3 if key == "vivit_1" else 1e-5)
        if np.all(wq.max(axis=1) == 1):  # one-hot: the block sums are plain sums of entries
            t_q = wq.argmax(axis=1)
            t_k = wk.argmax(axis=1)
            i, j = 0, min(1, wk.shape[1] - 1)
            assert blocks[i, j] == pytest.approx(d[np.ix_(t_q == i, t_k == j)].sum())
