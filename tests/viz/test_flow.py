"""Token flow on token grids (every family) and the Spearman correlation used to compare maps with it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mvt
import viz
from viz.flow import flow_map, flow_tokens


def test_spearman():
    a = np.arange(10.0)
    assert viz.spearman(a, a**3) == pytest.approx(1.0)
    assert viz.spearman(a, -a) == pytest.approx(-1.0)
    assert viz.spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)  # ties share their mean rank
    assert math.isnan(viz.spearman(np.ones(5), a[:5]))
    assert viz.spearman([1, np.nan, 3, 4], [2, 5, 6, 8]) == pytest.approx(1.0)  # NaN pairs dropped
    with pytest.raises(ValueError, match="equal shapes"):
        viz.spearman(a, a[:3])


@pytest.mark.parametrize(
    "name",
    ["mvit_t.untrained", "mmvit_t.untrained", "vivit_t2.untrained", "vivit_t3.untrained", "hvt_t.untrained"],
)
def test_flow_volumes_lie_on_the_input_grid_and_keep_every_relevance(name):
    torch.manual_seed(0)
    model = mvt.create_model(name)
    spec = model.spec
    x = torch.randn(
        1, 3, spec.num_frames, spec.crop_size, spec.crop_size, generator=torch.Generator().manual_seed(2)
    )
    out = mvt.token_flow(model, x)
    amap = flow_map(out)
    prefix, grid = flow_tokens(out, amap)
    rel = out.relevance[out.position(amap)]
    assert prefix.sum() + grid.sum() == pytest.approx(float(rel.double().sum()), rel=1e-9, abs=1e-9)
    vol, fp = viz.flow_volume(out)
    assert vol.size == grid.size and np.isfinite(vol).all()
    if fp is not None:
        assert viz.to_frames(vol, tuple(x.shape[2:]), fp).shape == tuple(x.shape[2:])
    rollout = viz.rollout(out)  # token flow keeps the attention maps too: rollout ends on the same grid
    assert rollout.size == vol.size
    last = max(viz.stages(out))
    assert viz.flow_volume(out, stage=last)[0].size > 0
    with pytest.raises(ValueError, match="no token relevances at stage"):
        viz.flow_volume(out, stage=99)
