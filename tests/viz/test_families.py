"""Every family's real (untrained, small) output gives maps whose shapes match the clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mvt
import viz
from viz.rollout import rollout_vector

# (model name, frames override) — small variants; HVT's per-frame image model runs on 2 frames
MODELS = {
    "mvit": ("mvit_t.untrained", None),
    "vivit_1": ("vivit_t1.untrained", None),
    "vivit_2": ("vivit_t2.untrained", None),
    "vivit_3": ("vivit_t3.untrained", None),
    "vivit_4": ("vivit_t4.untrained", None),
    "hvt_tubelet": ("hvt_t.untrained", None),
    "hvt_per_frame": ("hvt_ti_1.untrained", 2),
    "mmvit": ("mmvit_t.untrained", None),
}


def _family_module(key: str) -> str:
    return "mvt.models." + key.split("_")[0]


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    key = request.param
    name, frames = MODELS[key]
    assert name in mvt.list_models(), f"{name} ({_family_module(key)}) is not registered"
    model = mvt.create_model(name)
    spec = model.spec
    x = torch.randn(
        1,
        3,
        frames or spec.num_frames,
        spec.crop_size,
        spec.crop_size,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        out = model.forward_with_attention(x)
    return key, model, x, out


def test_stage_maps_and_rollout_match_the_clip(case):
    _, _, x, out = case
    clip = tuple(x.shape[2:])
    assert tuple(out.input_shape) == clip
    stages = viz.stage_volumes(out)
    assert len(stages) == len({m.stage for m in out.attentions})
    for _, vol, fp in stages:
        frames = viz.to_frames(vol, clip, fp)
        assert frames.shape == clip and np.isfinite(frames).all()
        assert frames.max() > 0
    for m in out.attentions:  # every map of every kind has a volume on its key grid
        for vol in viz.attention_volumes_by_view(m).values():
            assert vol.ndim == 3 and np.isfinite(vol).all()
    vol, fp = viz.rollout_volume(out)
    frames = viz.to_frames(vol, clip, fp)
    assert frames.shape == clip and (frames >= 0).all() and frames.max() > 0
    combined, none = viz.rollout_volume(out, view="all")
    assert none is None and combined.shape == clip and combined.max() > 0
    r, _, _ = rollout_vector(out)
    total = sum(float(v.sum()) for v in r.values())
    assert 0 < total <= 1.0 + 1e-5  # row-stochastic operators never create mass
    first = viz.rollout(out)
    assert first.ndim == 3 and first.min() >= 0
    over = viz.overlay(np.zeros((*clip, 3), np.uint8), frames)
    assert over.shape == (*clip, 3) and over.dtype == np.uint8


def test_statistics_and_token_grid_figure(case):
    _, _, _, out = case
    stats = viz.attention_stats(out, max_queries=256)
    mean = [r for r in stats if r["head"] == "mean"]
    assert len(mean) == len(out.attentions)
    for r in mean:
        assert 0.0 <= r["entropy"] <= 1.0 + 1e-6
        assert np.isfinite(r["distance_px"]) and np.isfinite(r["distance_frames"])
        assert 0 <= r["distance_px"] <= np.hypot(*out.input_shape[1:])
    fig = viz.token_grid_figure(out, max_tokens=2000)
    assert len(fig.data) == len({m.stage for m in out.attentions})
    for trace in fig.data:
        assert isinstance(trace.x, np.ndarray) and trace.x.dtype == np.float32
        assert trace.x.min() >= -8 and trace.x.max() <= out.input_shape[2] + 8
    heat = viz.stage_heatmaps_figure(out)
    assert len(heat.data) > 0


def test_gradient_rollout(case):
    key, model, x, _ = case
    out = mvt.attention_gradients(model, x)
    vol = viz.rollout(out, mode="grad")
    assert vol.ndim == 3 and np.isfinite(vol).all() and vol.min() >= 0
