"""Training ViViT model 2's temporal half on cached per-frame tokens (`--frame-cache`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mvt
from mvt import synth
from mvt.models.vivit import ViViT, ViViTConfig
from mvt.train import TrainConfig, frame_cache, to_input, train

SPEC = mvt.ModelSpec(
    name="tiny2.untrained",
    arch="tiny2",
    tag="untrained",
    num_frames=4,
    frame_stride=1,
    crop_size=32,
    resize_size=32,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    label_set="synthmotion",
)


def _model(variant: int = 2) -> ViViT:
    torch.manual_seed(0)
    cfg = ViViTConfig(
        variant=variant, num_frames=4, image_size=32, dim=32, heads=2, depth=2, temporal_depth=2, mlp_dim=64
    )
    return ViViT(cfg, num_classes=len(synth.CLASSES))


def _cfg(**kw) -> TrainConfig:
    base = dict(arch="tiny2", steps=6, batch_size=4, eval_clips=4, warmup_steps=1, lr=1e-2, log_every=3)
    return TrainConfig.from_flat(**{**base, **kw})


def test_cache_labels_oversample_the_focus_classes():
    cfg = _cfg(focus_classes=("rotate_cw", "rotate_ccw"), focus_share=0.5, seed=3)
    labels = frame_cache.cache_labels(4000, cfg)
    rotation = np.isin(labels, [synth.CLASSES.index("rotate_cw"), synth.CLASSES.index("rotate_ccw")])
    assert 0.58 < rotation.mean() < 0.67  # half forced + a quarter of the uniform half
    assert set(np.unique(labels)) == set(range(len(synth.CLASSES)))
    assert np.array_equal(labels, frame_cache.cache_labels(4000, cfg))
    assert np.bincount(frame_cache.cache_labels(4000, _cfg()), minlength=8).min() > 400


def test_cache_holds_the_frozen_encoders_tokens_of_augmented_clips():
    model = _model()
    cfg = _cfg(seed=5)
    tokens, labels = frame_cache.build_cache(model, cfg, SPEC, 10, chunk=4, log=lambda _: None)
    assert tokens.shape == (10, 2, 32) and labels.shape == (10,)
    # clip 5 (second chunk) by hand: same class, scene and symmetry as the cache drew
    forced = frame_cache.cache_labels(10, cfg)
    clip = synth.generate(1, 5, frames=4, size=32, start=5, labels=forced[5:6])
    op = int(np.random.default_rng([5, 6, 4]).integers(synth.NUM_SYMMETRIES, size=4)[1])
    x = to_input(synth.apply_symmetry(clip.clips[0], op)[None], SPEC)
    with torch.no_grad():
        torch.testing.assert_close(tokens[5:6], model.frame_tokens(x))
    assert int(labels[5]) == synth.symmetry_label(int(forced[5]), op)


def test_frame_cache_training_changes_only_the_temporal_half(tmp_path):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logs: list[str] = []
    result = train(_cfg(frame_cache=12), out=tmp_path, model=model, spec=SPEC, log=logs.append)
    assert result.steps == 6 and np.isfinite(result.final_loss)
    assert sum("(cached frame tokens)" in line for line in logs) == 2
    after = mvt.weights.load_file(result.path)
    for key, value in before.items():
        trained = key.startswith(frame_cache.TRAINED_MODULES)
        assert torch.equal(after[key], value) != trained or (trained and "norm" in key), key


def test_frame_cache_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ValueError, match="no per-frame tokens"):
        train(_cfg(frame_cache=4), model=_model(variant=4), spec=SPEC, log=lambda _: None)
    with pytest.raises(ValueError, match="--frame-cache trains only"):
        train(_cfg(frame_cache=4, step_class_weight=1.0), model=_model(), spec=SPEC, log=lambda _: None)
    with pytest.raises(ValueError, match="needs --steps"):
        train(_cfg(frame_cache=4, steps=None), model=_model(), spec=SPEC, log=lambda _: None)
