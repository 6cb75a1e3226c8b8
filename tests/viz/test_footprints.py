"""Exact footprints on every family: a single hot token paints its receptive field, and nothing else.

The receptive field (the project's rule: a pool moves tokens only along the axes it strides) is derived here
independently of :meth:`mvt.outputs.Footprint.then`, from each model's config, by running the patch embedding
and the strided poolings as 1-D convolutions with all-ones kernels on one-hot inputs (which input positions
reach which token). A hot token painted with ``paint="box"`` must light exactly that box in T, H and W; the
default painting (nearest-centre) must light a part of it that holds the token's centre.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mvt
import viz
from viz.geometry import PAINT, trace

Chain = list[tuple[int, int, int]]  # (kernel, stride, padding) along one axis, input first


def reach(size: int, chain: Chain) -> np.ndarray:
    """``(n_tokens, size)`` bool: input position p reaches token i through the chain."""
    x = torch.eye(size, dtype=torch.float64)[:, None, :]  # one one-hot input per position
    for k, s, p in chain:
        x = F.conv1d(F.pad(x, (p, p)), torch.ones(1, 1, k, dtype=torch.float64), stride=s)
    return (x[:, 0, :] > 0).numpy().T


def strided(chain3: list[tuple], axis: int) -> Chain:
    """One axis of a chain of 3-D (kernel, stride, padding): the embedding, then pools striding that axis."""
    out = []
    for i, (k, s, p) in enumerate(chain3):
        if i == 0 or int(s[axis]) > 1:
            out.append((int(k[axis]), int(s[axis]), int(p[axis])))
    return out


def expected_box(shape, chain3, token) -> np.ndarray:
    boxes = [reach(n, strided(chain3, a))[token[a]] for a, n in enumerate(shape)]
    return boxes[0][:, None, None] & boxes[1][None, :, None] & boxes[2][None, None, :]


def check_hot_tokens(grid, footprint, shape, chain3):
    """Every corner token and a middle one of ``grid``: box painting = receptive field; default inside it."""
    picks = {tuple(c) for c in itertools.product(*[(0, g - 1) for g in grid])} | {tuple(g // 2 for g in grid)}
    for token in sorted(picks):
        want = expected_box(shape, chain3, token)
        vol = np.zeros(grid)
        vol[token] = 1.0
        box = viz.to_frames(vol, shape, footprint, paint="box")
        np.testing.assert_array_equal(box > 0, want, err_msg=f"token {token} of grid {grid}")
        shown = viz.to_frames(vol, shape, footprint, paint=PAINT) > 0
        assert shown.any() and not (shown & ~want).any(), f"token {token}: painted outside its footprint"


def _run(name: str):
    model = mvt.create_model(name)
    spec = model.spec
    x = torch.zeros(1, 3, spec.num_frames, spec.crop_size, spec.crop_size)
    with torch.no_grad():
        return model, model.forward_with_attention(x)


def _pool(op):
    return (op.kernel, op.stride, op.padding) if op is not None else None


@pytest.mark.parametrize("name", ["mvit_t.untrained", "mmvit_t.untrained"])
def test_mvit_family_footprints_are_exact(name):
    model, out = _run(name)
    shape = tuple(out.input_shape)
    tower = model.cfg if hasattr(model.cfg, "patch_kernel") else model.cfg.tower
    blocks = tower.block_configs()
    views = (
        [model.cfg.views[v] for v in range(len(model.cfg.views))] if hasattr(model.cfg, "views") else [None]
    )
    for v, view in enumerate(views):
        embed = (
            (tower.patch_kernel, tower.patch_stride, tower.patch_padding)
            if view is None
            else (view.kernel, view.stride, view.padding)
        )
        for info in (s for s in out.stages if (s.view or 0) == v):
            pools = [_pool(b.q_pool) for b in blocks if b.stage <= info.stage and b.q_pool is not None]
            check_hot_tokens(info.grid, info.footprint, shape, [embed, *pools])
    # keys of every tower block of view 0: the block's input, then its key/value pooling
    for lay in trace(out):
        m = lay.amap
        if m.kind != "joint" or (m.view or 0) != 0:
            continue
        before = [_pool(b.q_pool) for b in blocks if b.index < m.block and b.q_pool is not None]
        chain = [embed_of(tower), *before, *([_pool(m.kv_pool)] if m.kv_pool else [])]
        keys = lay.keys[0]
        assert keys.footprint is not None and tuple(keys.grid) == tuple(m.k_grid)
        check_hot_tokens(keys.grid, keys.footprint, shape, chain)


def embed_of(tower):
    return (tower.patch_kernel, tower.patch_stride, tower.patch_padding)


def test_mvit_time_footprint_is_one_tubelet():
    """The issue's case: time footprints used to grow from 4 to 20 frames through stride-1 time pools."""
    _, out = _run("mvit_t.untrained")
    for info in out.stages:
        assert (info.footprint.stride[0], info.footprint.kernel[0], info.footprint.padding[0]) == (4, 4, 0)


@pytest.mark.parametrize("name", ["vivit_t1.untrained", "vivit_t3.untrained", "vivit_t4.untrained"])
def test_vivit_tubelets_are_exact(name):
    model, out = _run(name)
    shape = tuple(out.input_shape)
    tub = tuple(model.cfg.tubelet)
    for info in out.stages:
        check_hot_tokens(info.grid, info.footprint, shape, [(tub, tub, (0, 0, 0))])


def test_vivit_factorised_encoder_frame_tokens_cover_their_frames():
    model, out = _run("vivit_t2.untrained")
    shape = tuple(out.input_shape)
    tub = tuple(model.cfg.tubelet)
    spatial, temporal = out.stages[0], out.stages[-1]
    check_hot_tokens(spatial.grid, spatial.footprint, shape, [(tub, tub, (0, 0, 0))])
    frame = (tub[0], shape[1], shape[2])  # a temporal token is one tubelet time step of the whole frame
    assert tuple(temporal.grid[1:]) == (1, 1)
    check_hot_tokens(temporal.grid, temporal.footprint, shape, [(frame, frame, (0, 0, 0))])


def test_hvt_pooled_tokens_paint_exactly_their_spans():
    model, out = _run("hvt_t.untrained")
    shape = tuple(out.input_shape)
    tub = (model.cfg.tubelet, model.cfg.patch_size, model.cfg.patch_size)
    patch_grid = out.extras["patch_grid"]
    spans = out.extras["spans"]
    for lay in trace(out):
        keys = lay.keys[0]
        stage = lay.amap.stage
        n = int(np.prod(keys.grid))
        assert n == len(spans[stage])
        for j in sorted({0, n // 2, n - 1}):
            vol = np.zeros(keys.grid)
            vol.reshape(-1)[j] = 1.0
            patches, fp = keys.paintable(vol)
            box = viz.to_frames(patches, shape, fp, paint="box") > 0
            want = np.zeros(shape, bool)
            a, b = spans[stage][j]
            for flat in range(a, b):
                t, h, w = np.unravel_index(flat, patch_grid)
                want[
                    t * tub[0] : (t + 1) * tub[0],
                    h * tub[1] : (h + 1) * tub[1],
                    w * tub[2] : (w + 1) * tub[2],
                ] = True
            np.testing.assert_array_equal(box, want, err_msg=f"stage {stage} token {j}")
            shown = viz.to_frames(patches, shape, fp) > 0
            assert shown.any() and not (shown & ~want).any()
