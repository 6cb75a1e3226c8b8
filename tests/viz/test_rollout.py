"""Rollout through pooling, factorised and 1-D pooled attention: known answers and dense references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import viz
from mvt.outputs import Footprint, PoolOp
from tests.viz.synthetic import amap, dense_pool, output, stochastic
from viz.geometry import pool_axis
from viz.rollout import rollout_vector


def test_pool_axis_window_excludes_padding_and_renormalises():
    m = pool_axis(5, kernel=3, stride=2, padding=1)
    expected = np.array(
        [
            [1 / 2, 1 / 2, 0, 0, 0],
            [0, 1 / 3, 1 / 3, 1 / 3, 0],
            [0, 0, 0, 1 / 2, 1 / 2],
        ]
    )
    np.testing.assert_allclose(m, expected)


@pytest.mark.parametrize(
    "pool, grid",
    [
        (PoolOp((3, 3, 3), (1, 2, 2), (1, 1, 1)), (2, 5, 6)),
        (PoolOp((1, 3, 3), (1, 2, 2), (0, 1, 1), "max"), (3, 4, 4)),
        (PoolOp((3, 3, 3), (1, 4, 4), (1, 1, 1)), (2, 8, 8)),
        (PoolOp((1, 1, 3), (1, 1, 2), (0, 0, 0), "max"), (1, 1, 9)),
    ],
)
def test_pool_matrix_rows_sum_to_one_and_match_dense_windows(pool, grid):
    m = viz.pool_matrix(pool, grid, num_prefix=1).toarray()
    np.testing.assert_allclose(m.sum(1), 1.0)
    np.testing.assert_allclose(m, dense_pool(pool, grid, 1))


def _dense_abnar(probs: list[torch.Tensor]) -> np.ndarray:
    """Abnar & Zuidema's joint attention: aug = ½(A + I), joint = aug_L ⋯ aug_1 (dense)."""
    joint = None
    for a in probs:
        aug = 0.5 * (a[0, 0].double().numpy() + np.eye(a.shape[-1]))
        joint = aug if joint is None else aug @ joint
    return joint


def test_no_pooling_equals_classic_dense_rollout():
    grid = (2, 3, 3)
    n = 1 + 18
    probs = [stochastic(1, 1, n, n, seed=s) for s in range(4)]
    out = output([amap(p, grid, grid, 1, block=i) for i, p in enumerate(probs)], input_shape=(2, 24, 24))
    joint = _dense_abnar(probs)
    np.testing.assert_allclose(viz.rollout(out), joint[0, 1:].reshape(grid), rtol=1e-5, atol=1e-7)
    # mass is conserved through the whole chain (rows are stochastic)
    r, _, _ = rollout_vector(out)
    assert float(r[0].sum()) == pytest.approx(1.0, abs=1e-6)


def _pooled_maps(seed: int = 0, identity: bool = False):
    """Two MViTv2-like blocks: block 0 pools q (and the skip) by 2 in h, w; block 1 pools kv."""
    qpool = PoolOp((3, 3, 3), (1, 2, 2), (1, 1, 1))
    kv0 = qpool if identity else PoolOp((3, 3, 3), (1, 4, 4), (1, 1, 1))
    skip = PoolOp((1, 3, 3), (1, 2, 2), (0, 1, 1), "max")
    g0, g1 = (2, 8, 8), (2, 4, 4)
    k0 = kv0.out_grid(g0)
    kv1 = None if identity else PoolOp((3, 3, 3), (1, 2, 2), (1, 1, 1))
    k1 = g1 if kv1 is None else kv1.out_grid(g1)
    n0q, n0k, n1k = 1 + int(np.prod(g1)), 1 + int(np.prod(k0)), 1 + int(np.prod(k1))
    if identity:
        p0 = torch.eye(n0q)[None, None]
        p1 = torch.eye(n0q)[None, None]
    else:
        p0 = stochastic(1, 1, n0q, n0k, seed=seed)
        p1 = stochastic(1, 1, n0q, n1k, seed=seed + 1)
    m0 = amap(
        p0,
        g1,
        k0,
        1,
        block=0,
        in_grid=g0,
        q_pool=qpool,
        kv_pool=kv0,
        skip_pool=skip,
        residual_pool=not identity,
    )
    m1 = amap(p1, g1, k1, 1, block=1, stage=1, in_grid=g1, kv_pool=kv1, residual_pool=not identity)
    emb = Footprint(stride=(2, 4, 4), kernel=(3, 7, 7), padding=(1, 3, 3))
    return [m0, m1], emb, (g0, g1)


def _dense_block(m, in_grid) -> np.ndarray:
    """M = ½(B̂ + P_skip), B = Ā P_kv (+ P_q on grid rows), B̂ row-normalised — built densely."""
    a = m.probs()[0, 0].double().numpy()
    pkv = dense_pool(m.kv_pool, in_grid, 1)
    b = a @ pkv
    if m.residual_pool:
        pq = dense_pool(m.q_pool, in_grid, 1)
        b[1:] += pq[1:]
    b /= b.sum(1, keepdims=True)
    pskip = dense_pool(m.skip_pool, in_grid, 1)
    return 0.5 * (b + pskip)


def test_pooled_rollout_equals_dense_operator_composition():
    maps, emb, (g0, g1) = _pooled_maps()
    out = output(maps, input_shape=(4, 32, 32), embed=emb)
    dense = _dense_block(maps[1], g1) @ _dense_block(maps[0], g0)
    assert dense.shape == (1 + 32, 1 + 128)
    np.testing.assert_allclose(dense.sum(1), 1.0)
    np.testing.assert_allclose(viz.rollout(out), dense[0, 1:].reshape(g0), rtol=1e-5, atol=1e-8)


def test_identity_attention_gives_the_pooling_only_map():
    maps, emb, (g0, g1) = _pooled_maps(identity=True)
    out = output(maps, input_shape=(4, 32, 32), embed=emb, pooling="mean")
    # Ā = I, so every block is ½(P_kv + P_skip): only the pools move mass
    m0 = 0.5 * (dense_pool(maps[0].kv_pool, g0, 1) + dense_pool(maps[0].skip_pool, g0, 1))
    m1 = np.eye(1 + 32)
    start = np.r_[0.0, np.full(32, 1 / 32)]
    expected = (start @ m1 @ m0)[1:].reshape(g0)
    got = viz.rollout(out)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    assert got.sum() == pytest.approx(1.0, abs=1e-6)
    # with a CLS read-out and identity attention the CLS only ever sees itself: nothing reaches the grid
    cls_out = output(maps, input_shape=(4, 32, 32), embed=emb, pooling="cls")
    assert np.abs(viz.rollout(cls_out)).max() == 0.0


def test_single_hot_key_spreads_over_its_pooling_window():
    grid = (2, 4, 4)
    kv = PoolOp((1, 2, 2), (1, 2, 2), (0, 0, 0))
    k_grid = kv.out_grid(grid)  # (2, 2, 2)
    nq, nk = 1 + 32, 1 + 8
    hot = 1 + 5  # key (t=1, h=0, w=1)
    probs = torch.zeros(1, 1, nq, nk)
    probs[..., hot] = 1.0
    out = output([amap(probs, grid, k_grid, 1, in_grid=grid, kv_pool=kv)], input_shape=(2, 32, 32))
    vol = viz.rollout(out)
    expected = np.zeros(grid)
    expected[1, 0:2, 2:4] = 0.5 / 4  # ½ (attention branch) spread over the 2×2 window of key (1, 0, 1)
    np.testing.assert_allclose(vol, expected, atol=1e-7)


def _group_dense(m) -> np.ndarray:
    """Full-sequence operator of a factorised map (explicit loops over groups and tokens)."""
    from viz.geometry import group_index

    g = m.probs().shape[1]
    p = m.num_prefix
    qi = group_index(m, m.q_grid, p)
    n = g * p + int(np.prod(m.group_grid)) * int(np.prod(m.q_grid))
    a = np.zeros((n, n))
    for gi in range(g):
        for j, row in enumerate(qi[gi]):
            for k, col in enumerate(qi[gi]):
                a[row, col] += m.probs()[0, gi, j, k].item()
    return a


def test_factorised_space_then_time_matches_dense_product():
    grid = (3, 2, 2)
    sp = amap(
        stochastic(1, 3, 4, 4, seed=1),
        (1, 2, 2),
        (1, 2, 2),
        0,
        kind="spatial",
        group_grid=(3, 1, 1),
        in_grid=grid,
    )
    tm = amap(
        stochastic(1, 4, 3, 3, seed=2),
        (3, 1, 1),
        (3, 1, 1),
        0,
        kind="temporal",
        group_grid=(1, 2, 2),
        in_grid=grid,
    )
    out = output([sp, tm], input_shape=(6, 16, 16), pooling="mean")
    eye = np.eye(12)
    block = 0.5 * (_group_dense(tm) + eye) @ (0.5 * (_group_dense(sp) + eye))
    np.testing.assert_allclose(_group_dense(sp).sum(1), 1.0)
    expected = (np.full(12, 1 / 12) @ block).reshape(grid)
    np.testing.assert_allclose(viz.rollout(out), expected, rtol=1e-5)


def test_parallel_head_groups_mix_by_head_count():
    grid = (3, 2, 2)
    tm = amap(
        stochastic(1, 4, 3, 3, seed=3),
        (3, 1, 1),
        (3, 1, 1),
        0,
        kind="temporal",
        group_grid=(1, 2, 2),
        in_grid=grid,
        heads=6,
        head_range=(0, 2),
    )
    sp = amap(
        stochastic(1, 3, 4, 4, seed=4),
        (1, 2, 2),
        (1, 2, 2),
        0,
        kind="spatial",
        group_grid=(3, 1, 1),
        in_grid=grid,
        heads=6,
        head_range=(2, 6),
    )
    out = output([tm, sp], input_shape=(6, 16, 16), pooling="mean")
    a = (2 / 6) * _group_dense(tm) + (4 / 6) * _group_dense(sp)
    block = 0.5 * (a + np.eye(12))
    expected = (np.full(12, 1 / 12) @ block).reshape(grid)
    np.testing.assert_allclose(viz.rollout(out), expected, rtol=1e-5)


def test_factorised_encoder_follows_per_frame_cls_tokens():
    """ViViT model 2: temporal CLS → frame token 1 → frame 1's CLS → patch (0, 2)."""
    t, h, w = 2, 1, 3
    sp = torch.zeros(1, t, 1 + h * w, 1 + h * w)
    sp[:, :, :, 0] = 1.0  # everything attends to its frame's CLS ...
    sp[:, 1, 0, :] = 0.0
    sp[:, 1, 0, 1 + 2] = 1.0  # ... except frame 1's CLS, which looks at patch (0, 2)
    spatial = amap(sp, (1, h, w), (1, h, w), 1, kind="spatial", group_grid=(t, 1, 1), in_grid=(t, h, w))
    tp = torch.zeros(1, 1, 1 + t, 1 + t)
    tp[..., 1 + 1] = 1.0  # the temporal CLS (and every frame) looks at frame 1
    temporal = amap(tp, (t, 1, 1), (t, 1, 1), 1, stage=1, block=1, kind="temporal", in_grid=(t, 1, 1))
    out = output([spatial, temporal], input_shape=(4, 16, 48), embed=Footprint((2, 16, 16), (2, 16, 16)))
    vol = viz.rollout(out)
    expected = np.zeros((t, h, w))
    expected[1, 0, 2] = 0.25  # ½ through the temporal block, ½ through the spatial block
    np.testing.assert_allclose(vol, expected, atol=1e-7)


def test_hvt_post_pool_spreads_mean_readout_over_windows():
    n = 8
    post = PoolOp((1, 1, 3), (1, 1, 2), (0, 0, 0), "max")
    probs = torch.eye(n)[None, None]  # identity attention: the block only pools
    m = amap(probs, (1, 1, n), (1, 1, n), 0, in_grid=(1, 1, n), post_pool=post)
    out = output([m], input_shape=(1, 32, 64), pooling="mean", extras={"patch_grid": (1, 2, 4)})
    vol = viz.rollout(out)
    expected = np.array([1, 1, 2, 1, 2, 1, 1, 0]) / 9.0  # 3 pooled tokens of 1/3, windows [0,3) [2,5) [4,7)
    np.testing.assert_allclose(vol.reshape(-1), expected, atol=1e-7)
    assert vol.shape == (1, 2, 4)  # the patch grid


def test_grad_mode_needs_gradients_and_zero_rows_keep_the_residual():
    grid = (1, 2, 2)
    probs = [stochastic(1, 1, 5, 5, seed=s) for s in range(2)]
    maps = [amap(p, grid, grid, 1, block=i) for i, p in enumerate(probs)]
    out = output(maps, input_shape=(1, 16, 16))
    with pytest.raises(ValueError, match="attention_gradients"):
        viz.rollout(out, mode="grad")
    out.grad_weighted[0] = 3.0 * probs[0]  # unnormalised: rollout renormalises rows
    out.grad_weighted[1] = torch.zeros_like(probs[1])  # no positive evidence anywhere in block 1
    joint = _dense_abnar([probs[0]])
    np.testing.assert_allclose(viz.rollout(out, mode="grad"), joint[0, 1:].reshape(grid), rtol=1e-5)
    with pytest.raises(ValueError, match="mode"):
        viz.rollout(out, mode="flow")


def test_stop_stage_returns_the_stage_input_grid():
    maps, emb, (g0, g1) = _pooled_maps()
    out = output(maps, input_shape=(4, 32, 32), embed=emb)
    vol = viz.rollout(out, stop_stage=1)
    assert vol.shape == g1
    dense = _dense_block(maps[1], g1)
    np.testing.assert_allclose(vol, dense[0, 1:].reshape(g1), rtol=1e-5, atol=1e-8)
    volume, fp = viz.rollout_volume(out, stop_stage=1)
    assert fp.stride == (2, 8, 8)  # the embedding (2, 4, 4) after the q pool (1, 2, 2)
    assert viz.to_frames(volume, out.input_shape, fp).shape == out.input_shape


def test_all_views_rollout_is_a_density_on_the_input():
    """view='all' paints each view's token masses as densities (mass / pixels per token) and sums them."""
    maps, emb, (g0, g1) = _pooled_maps()
    out = output(maps, input_shape=(4, 32, 32), embed=emb)
    combined, fp = viz.rollout_volume(out, view="all")
    assert fp is None and combined.shape == (4, 32, 32)
    vol, fp0 = viz.rollout_volume(out)
    assert fp0 == emb  # the embedding footprint: the input shape matches the first grid
    expected = viz.to_frames(vol / np.prod(fp0.stride), (4, 32, 32), fp0)
    np.testing.assert_allclose(combined, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="view 3"):
        viz.rollout_volume(out, view=3)


def test_cross_view_block_matches_dense_concatenated_operator():
    """MMViT: per-view self-attention, then one cross block over the concatenated views."""
    from mvt.outputs import Segment

    g0, g1 = (1, 2, 2), (1, 1, 2)
    s0 = amap(stochastic(1, 1, 5, 5, seed=7), g0, g0, 1, block=0, view=0)
    s1 = amap(stochastic(1, 1, 3, 3, seed=8), g1, g1, 1, block=0, view=1)
    segs = (Segment(0, 1, g0), Segment(1, 1, g1))
    cross = amap(
        stochastic(1, 1, 8, 8, seed=9), g0, g0, 1, block=1, kind="cross", q_segments=segs, k_segments=segs
    )
    emb = Footprint((1, 8, 8), (1, 8, 8))
    out = output(
        [s0, s1, cross],
        input_shape=(1, 16, 16),
        embed=emb,
        extras={"view_embeds": {0: emb, 1: Footprint((1, 16, 8), (1, 16, 8))}},
    )
    m_cross = 0.5 * (cross.probs()[0, 0].double().numpy() + np.eye(8))
    m_self = np.zeros((8, 8))
    m_self[:5, :5] = 0.5 * (s0.probs()[0, 0].double().numpy() + np.eye(5))
    m_self[5:, 5:] = 0.5 * (s1.probs()[0, 0].double().numpy() + np.eye(3))
    row = np.eye(8)[0] @ m_cross @ m_self
    r, _, _ = rollout_vector(out)
    np.testing.assert_allclose(r[0].numpy(), row[:5], rtol=1e-6)
    np.testing.assert_allclose(r[1].numpy(), row[5:], rtol=1e-6)
    np.testing.assert_allclose(viz.rollout(out, view=1), row[6:].reshape(g1), rtol=1e-6)
