"""The adding-a-model guide followed once for real: a toy fifth family (``tests/toy_family.py``) registers
through the zoo, satisfies the contract and its output goes through viz, with no change anywhere else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mvt
import viz
from mvt.models.contract import VideoModel

from . import toy_family


@pytest.fixture(scope="module")
def toy():
    with toy_family.registered() as names:
        assert names == ["toy_t.untrained"]
        yield mvt.create_model("toy_t.untrained")
    assert "toy_t.untrained" not in mvt.list_models()  # gone again for every other test


def test_the_toy_registers_and_satisfies_the_contract(toy):
    assert isinstance(toy, VideoModel)
    assert (
        toy.spec.family == "toy" and not toy.spec.trained and toy.spec.labels == mvt.get_spec("hvt_t").labels
    )
    assert "toy_t" in mvt.list_archs()


def test_the_toy_output_goes_through_viz(toy):
    spec = toy.spec
    x = torch.randn(
        1, 3, spec.num_frames, spec.crop_size, spec.crop_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        out = toy.forward_with_attention(x)
        torch.testing.assert_close(out.logits, toy(x), atol=1e-5, rtol=1e-5)
    clip = tuple(x.shape[2:])
    (stage, vol, fp), *rest = viz.stage_volumes(out)
    assert stage == 0 and not rest and vol.shape == (4, 7, 7)  # the key grid: 16×112² in 4×16×16 tubelets
    frames = viz.to_frames(vol, clip, fp)
    assert frames.shape == clip and np.isfinite(frames).all() and frames.max() > 0
    rolled, rfp = viz.rollout_volume(out)
    rolled_frames = viz.to_frames(rolled, clip, rfp)
    assert rolled_frames.shape == clip and (rolled_frames >= 0).all() and rolled_frames.max() > 0
    grads = mvt.attention_gradients(toy, x)
    assert viz.rollout(grads, mode="grad").ndim == 3
    flow = mvt.token_flow(toy, x)  # token flow: no code in the family beyond the capture contract
    vol, fp = viz.flow_volume(flow)
    assert vol.shape == (4, 7, 7) and np.isfinite(vol).all() and viz.to_frames(vol, clip, fp).shape == clip
    with torch.no_grad():  # the default view: the fast path, CLS rows now, the matrix only when read
        lazy = toy.forward_with_attention(x, capture=mvt.Capture.LAZY)
    (_, lazy_vol, _), *_ = viz.stage_volumes(lazy)
    np.testing.assert_allclose(lazy_vol, viz.stage_volumes(out)[0][1], atol=1e-6)
    assert not lazy.probs_ready  # the stage volume came from the CLS rows
