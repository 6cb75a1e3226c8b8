"""Attention volumes: CLS rows per head, attention received, factorised layout, cross views, HVT spans."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import viz
from mvt.outputs import Footprint, PoolOp, Segment
from tests.viz.synthetic import amap, output, stochastic


def test_cls_row_per_head_mean_and_max_on_the_key_grid():
    q, k = (2, 4, 4), (2, 2, 2)
    probs = stochastic(1, 1, 33, 9)
    m = amap(probs, q, k, 1, heads=3, cls_row=stochastic(1, 3, 9, seed=5))
    rows = m.cls_row[0].numpy()
    assert viz.attention_volume(m).shape == k
    np.testing.assert_allclose(viz.attention_volume(m, head=1), rows[1, 1:].reshape(k), rtol=1e-6)
    np.testing.assert_allclose(viz.attention_volume(m, head="mean"), rows.mean(0)[1:].reshape(k), rtol=1e-6)
    np.testing.assert_allclose(viz.attention_volume(m, head="max"), rows.max(0)[1:].reshape(k), rtol=1e-6)
    with pytest.raises(ValueError, match="head 7"):
        viz.attention_volume(m, head=7)


def test_no_cls_map_shows_mean_attention_received():
    grid = (1, 2, 3)
    probs = stochastic(1, 1, 6, 6, seed=2)
    m = amap(probs, grid, grid, 0)
    np.testing.assert_allclose(viz.attention_volume(m), probs[0, 0].mean(0).reshape(grid).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="head='mean'"):
        viz.attention_volume(m, head=0)


def test_factorised_groups_are_laid_out_on_the_full_grid():
    t, h, w = 3, 2, 2
    probs = torch.zeros(1, t, h * w, h * w)
    for g in range(t):
        probs[0, g, :, g % 4] = 1.0  # in frame g every query looks at spatial token g % 4
    m = amap(probs, (1, h, w), (1, h, w), 0, kind="spatial", group_grid=(t, 1, 1))
    vol = viz.attention_volume(m)
    assert vol.shape == (t, h, w)
    for g in range(t):
        expected = np.zeros((h, w))
        expected[divmod(g % 4, w)] = 1.0
        np.testing.assert_allclose(vol[g], expected)
    # temporal groups: one per spatial position, tokens over time
    probs_t = torch.zeros(1, h * w, t, t)
    probs_t[0, :, :, 2] = 1.0  # every position attends to time 2
    mt = amap(probs_t, (t, 1, 1), (t, 1, 1), 0, kind="temporal", group_grid=(1, h, w))
    vt = viz.attention_volume(mt)
    np.testing.assert_allclose(vt[2], 1.0)
    np.testing.assert_allclose(vt[:2], 0.0)


def test_cross_map_gives_one_volume_per_view():
    qs = (Segment(0, 1, (2, 4, 4)), Segment(1, 1, (2, 2, 2)))
    ks = (Segment(0, 1, (2, 2, 2)), Segment(1, 1, (2, 1, 1)))
    nq, nk = sum(s.length for s in qs), sum(s.length for s in ks)
    probs = stochastic(1, 1, nq, nk, seed=3)
    m = amap(probs, (2, 4, 4), (2, 2, 2), 1, kind="cross", q_segments=qs, k_segments=ks)
    vols = viz.attention_volumes_by_view(m)
    assert {v: a.shape for v, a in vols.items()} == {0: (2, 2, 2), 1: (2, 1, 1)}
    row = probs[0, 0, 0].numpy()
    np.testing.assert_allclose(vols[1].reshape(-1), row[10:], rtol=1e-6)
    np.testing.assert_allclose(viz.attention_volume(m, view=0).reshape(-1), row[1:9], rtol=1e-6)
    with pytest.raises(ValueError, match="view 5"):
        viz.attention_volume(m, view=5)


def test_hvt_pooled_token_lights_its_span_of_patches():
    """A 1-D pooled token is painted onto exactly the patches of its pooling window."""
    n0 = 12
    post = PoolOp((1, 1, 3), (1, 1, 2), (0, 0, 0), "max")
    n1 = post.out_grid((1, 1, n0))[2]  # 5
    m0 = amap(stochastic(1, 1, n0, n0), (1, 1, n0), (1, 1, n0), 0, in_grid=(1, 1, n0), post_pool=post)
    probs = torch.zeros(1, 1, n1, n1)
    probs[..., 3] = 1.0  # everything attends to pooled token 3 = patches [6, 9)
    m1 = amap(probs, (1, 1, n1), (1, 1, n1), 0, stage=1, block=1, in_grid=(1, 1, n1))
    emb = Footprint((1, 16, 16), (1, 16, 16))
    out = output(
        [m0, m1], input_shape=(1, 48, 64), embed=emb, pooling="mean", extras={"patch_grid": (1, 3, 4)}
    )
    vol, fp = viz.map_volume(out, m1)
    assert vol.shape == (1, 3, 4) and fp == emb
    flat = vol.reshape(-1)
    assert set(np.nonzero(flat)[0]) == {6, 7, 8}
    # patches 6 and 8 are also covered by tokens 2 and 4 (no attention): the mean of the covering tokens
    np.testing.assert_allclose(flat[[6, 7, 8]], [0.5, 1.0, 0.5])
    frames = viz.to_frames(vol, out.input_shape, fp)
    assert frames.shape == (1, 48, 64)
    assert frames[0, 16:32, 48:64].min() == 1.0  # patch 7 = row 1, col 3
    assert frames[0, :16].max() == 0.0


def test_attention_footprint_follows_kv_pooling():
    grid = (2, 8, 8)
    kv = PoolOp((3, 3, 3), (1, 4, 4), (1, 1, 1))
    m = amap(stochastic(1, 1, 129, 9), grid, kv.out_grid(grid), 1, in_grid=grid, kv_pool=kv)
    emb = Footprint((2, 4, 4), (3, 7, 7), (1, 3, 3))
    out = output([m], input_shape=(4, 32, 32), embed=emb)
    fp = viz.attention_footprint(out, m)
    assert fp == emb.then(kv)
    assert fp.stride == (2, 16, 16)
    vol, fp2 = viz.map_volume(out, m)
    assert vol.shape == (2, 2, 2) and fp2 == fp


def test_hvt_pooling_windows_agree_with_the_models_spans():
    """viz derives HVT's token windows from the post-pools; they must equal the model's own spans."""
    import mvt

    model = mvt.create_model("hvt_t.untrained")
    spec = model.spec
    x = torch.randn(1, 3, spec.num_frames, spec.crop_size, spec.crop_size)
    with torch.no_grad():
        out = model.forward_with_attention(x)
    spans = out.extras["spans"]
    lays = viz.trace(out)
    for s in range(1, len(out.stages)):
        lay = next(lay for lay in lays if lay.amap.stage == s)
        geom = lay.keys[0]
        n = geom.grid[2]
        for i in sorted({0, n // 2, n - 1}):
            hot = np.zeros(geom.grid, np.float32)
            hot[0, 0, i] = 1.0
            vol, _ = geom.paintable(hot)
            lit = np.nonzero(vol.reshape(-1))[0]
            start, stop = spans[s][i]
            assert (lit.min(), lit.max() + 1) == (start, stop)
