"""The sink detector finds mvit_t.synth's padding corner, and nothing once the key pooling has no padding;
maps and rollout can leave sinks out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mvt
import viz
from mvt import synth
from mvt.sinks import find_sinks, mark_sinks
from mvt.train import to_input

N_PROBES, SEED = 8, 4321


@pytest.fixture(scope="module")
def probes():
    return synth.generate(N_PROBES, SEED, frames=16, size=112).clips


def _unpadded(model: torch.nn.Module) -> torch.nn.Module:
    """The same trained weights with every key/value pooling run without padding (keys shrink to the
    windows that fit inside the grid), queries unchanged."""
    for blk in model.blocks:
        blk.attn.fuse_qkv_pool = False
        for pool in (blk.attn.pool_k, blk.attn.pool_v):
            if pool is not None:
                pool.pool.padding = (0, 0, 0)
    return model


def test_detector_finds_the_mvit_padding_corner(probes):
    model = mvt.create_model("mvit_t.synth")
    sinks = find_sinks(model, to_input(probes, model.spec))
    last = len(model.blocks) - 1
    corner = [s for s in sinks if s.block == last]
    assert len(corner) == 1
    s = corner[0]
    assert s.cell == (3, 3, 3) and s.key == 1 + 63 and s.padded  # bottom-right corner of the last time step
    assert s.rate >= 0.4 and s.share > 2 * s.uniform
    x = to_input(probes[:1], model.spec)
    with torch.no_grad():
        out = mark_sinks(model.forward_with_attention(x), sinks)
    amap = out.attentions[s.map_index]
    assert out.sinks == {s.map_index: (s.key,)} and out.sinks_of(amap) == (s.key,) and amap.block == last
    # leaving it out: the volume's maximum moves off the corner, rollout keeps its mass (≤ 1)
    vol = viz.attention_volume(amap)
    kept = viz.attention_volume(amap, sinks=out.sinks_of(amap))
    assert (
        kept[3, 3, 3] == np.delete(kept.ravel(), 63).min()
        and np.delete(kept.ravel(), 63).tolist() == np.delete(vol.ravel(), 63).tolist()
    )
    plain, without = viz.rollout(out), viz.rollout(out, exclude_sinks=True)
    assert not np.allclose(plain, without) and 0 < without.sum() <= 1 + 1e-6


def test_no_sink_in_a_model_without_key_padding(probes):
    model = _unpadded(mvt.create_model("mvit_t.synth"))
    x = to_input(probes, model.spec)
    with torch.no_grad():
        out = model.forward_with_attention(x[:1])
    assert out.attentions[-1].k_grid == (2, 2, 2)  # the corner window that reached into the padding is gone
    assert find_sinks(model, x) == []
