"""Attention statistics: normalised entropy and mean attention distance on true token centres."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import viz
from mvt.outputs import Footprint, PoolOp
from tests.viz.synthetic import amap, output


def _rows(stats, head="mean"):
    return [r for r in stats if r["head"] == head]


def test_entropy_is_one_for_uniform_and_zero_for_one_hot():
    grid = (1, 2, 2)
    uniform = torch.full((1, 1, 5, 5), 0.2)
    onehot = torch.zeros(1, 1, 5, 5)
    onehot[..., 2] = 1.0
    out = output(
        [amap(uniform, grid, grid, 1), amap(onehot, grid, grid, 1, block=1)], input_shape=(1, 16, 16)
    )
    stats = viz.attention_stats(out)
    mean = _rows(stats)
    assert mean[0]["entropy"] == pytest.approx(1.0)
    assert mean[1]["entropy"] == pytest.approx(0.0, abs=1e-9)
    per_head = [r for r in stats if r["head"] != "mean"]
    assert {r["head"] for r in per_head} == {0, 1}  # from cls_row, one row per head
    assert all(math.isnan(r["distance_px"]) for r in per_head)


def test_distance_in_pixels_and_frames_uses_token_centres():
    # 1×1×4 tokens of 16 px: query i attends to key (i + 1) mod 4 → distances 16, 16, 16, 48 px
    n = 4
    probs = torch.zeros(1, 1, n, n)
    for i in range(n):
        probs[0, 0, i, (i + 1) % n] = 1.0
    m = amap(probs, (1, 1, n), (1, 1, n), 0)
    out = output([m], input_shape=(1, 16, 64), embed=Footprint((1, 16, 16), (1, 16, 16)), pooling="mean")
    row = _rows(viz.attention_stats(out))[0]
    assert row["distance_px"] == pytest.approx((16 + 16 + 16 + 48) / 4)
    assert row["distance_frames"] == pytest.approx(0.0)
    # a temporal map over 3 tubelets of 2 frames: every query attends to the first → 0, 2, 4 frames
    pt = torch.zeros(1, 4, 3, 3)
    pt[..., 0] = 1.0
    mt = amap(pt, (3, 1, 1), (3, 1, 1), 0, kind="temporal", group_grid=(1, 2, 2))
    out_t = output([mt], input_shape=(6, 32, 32), embed=Footprint((2, 16, 16), (2, 16, 16)), pooling="mean")
    rt = _rows(viz.attention_stats(out_t))[0]
    assert rt["distance_frames"] == pytest.approx(2.0)
    assert rt["distance_px"] == pytest.approx(0.0)


def test_pooled_queries_and_keys_each_use_their_own_footprint():
    # input grid 1×4×4 (stride 8 px); queries pooled by 2 → centres 7.5 + 16 i ... keys unpooled
    grid = (1, 4, 4)
    qpool = PoolOp((1, 2, 2), (1, 2, 2), (0, 0, 0))
    q = qpool.out_grid(grid)  # (1, 2, 2)
    probs = torch.zeros(1, 1, 4, 16)
    probs[0, 0, 0, 0] = 1.0  # query (0,0) → key (0,0)
    probs[0, 0, 1:, 15] = 1.0  # the others → key (3,3)
    m = amap(probs, q, grid, 0, in_grid=grid, q_pool=qpool)
    out = output([m], input_shape=(1, 32, 32), embed=Footprint((1, 8, 8), (1, 8, 8)), pooling="mean")
    row = _rows(viz.attention_stats(out))[0]
    qc = np.array([[7.5, 7.5], [7.5, 23.5], [23.5, 7.5], [23.5, 23.5]])
    kc = np.array([[3.5, 3.5], [27.5, 27.5], [27.5, 27.5], [27.5, 27.5]])
    expected = np.linalg.norm(qc - kc, axis=1).mean()
    assert row["distance_px"] == pytest.approx(expected)


def test_stats_figure_accepts_several_models():
    grid = (1, 2, 2)
    out = output([amap(torch.full((1, 1, 5, 5), 0.2), grid, grid, 1)], input_shape=(1, 16, 16))
    fig = viz.stats_figure({"a": viz.attention_stats(out), "b": viz.attention_stats(out)})
    names = {t.name for t in fig.data}
    assert {"a", "b"} <= names
    assert all(isinstance(t.y, np.ndarray) for t in fig.data)


def test_token_grid_figure_hover_has_clipped_footprints():
    grid = (2, 4, 4)
    probs = torch.full((1, 1, 33, 33), 1 / 33)
    emb = Footprint((2, 4, 4), (3, 7, 7), (1, 3, 3))
    out = output([amap(probs, grid, grid, 1)], input_shape=(4, 16, 16), embed=emb)
    fig = viz.token_grid_figure(out)
    (trace,) = fig.data
    data = np.asarray(trace.customdata)
    assert data.dtype == np.float32 and data.shape == (32, 11)
    np.testing.assert_array_equal(data[0, :4], [0, 0, 0, 0])
    np.testing.assert_array_equal(data[0, 4:10], [0, 2, 0, 4, 0, 4])  # frames [0, 2), y [0, 4), x [0, 4)
    np.testing.assert_array_equal(data[5, 4:10], [0, 2, 1, 8, 1, 8])  # token (0, 1, 1): 4·1 - 3 = 1 … 8
    assert data[:, 10] == pytest.approx(np.full(32, 1 / 33), rel=1e-5)  # uniform attention
