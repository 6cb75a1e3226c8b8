"""One preprocessing: resize/crop to the uint8 frames the model sees, then normalise; inference and training
use the same two functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mvt
from mvt.preprocess import normalise, preprocess, resize_and_crop
from mvt.train import to_input

K400 = mvt.get_spec("mvit_v2_s.k400")  # short side 256, crop 224
SYNTH = mvt.get_spec("hvt_t.untrained")  # 112, no resize


def _frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _reference(frames: np.ndarray, spec: mvt.ModelSpec) -> np.ndarray:
    """The semantics the app's pipeline always had: float bilinear antialiased resize of the short side,
    centre crop, rounded back to uint8."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    if min(h, w) != spec.resize_size:
        s = spec.resize_size / min(h, w)
        size = (max(spec.crop_size, round(h * s)), max(spec.crop_size, round(w * s)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    h, w = x.shape[-2:]
    top, left = (h - spec.crop_size) // 2, (w - spec.crop_size) // 2
    x = x[:, :, top : top + spec.crop_size, left : left + spec.crop_size]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("shape", [(3, 240, 320), (2, 256, 300), (2, 300, 256), (2, 100, 130), (2, 224, 224)])
def test_resize_and_crop_gives_the_frames_the_model_sees(shape):
    frames = _frames(*shape)
    out = resize_and_crop(frames, K400)
    assert out.dtype == np.uint8 and out.shape == (shape[0], 224, 224, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, _reference(frames, K400))


def test_no_resize_when_the_short_side_is_already_right():
    frames = _frames(2, 256, 300)
    np.testing.assert_array_equal(resize_and_crop(frames, K400), frames[:, 16:240, 38:262])
    still = np.full((2, 120, 160, 3), 77, np.uint8)  # a flat frame stays flat through the resize
    assert (resize_and_crop(still, K400) == 77).all()


def test_preprocess_is_resize_and_crop_then_normalise():
    frames = _frames(4, 180, 240)
    x = preprocess(frames, K400)
    assert x.shape == (1, 3, 4, 224, 224) and x.dtype == torch.float32
    torch.testing.assert_close(x, normalise(resize_and_crop(frames, K400), K400), rtol=0, atol=0)
    crop = resize_and_crop(frames, K400).astype(np.float32) / 255.0
    expect = (crop - np.array(K400.mean, np.float32)) / np.array(K400.std, np.float32)  # (T, S, S, 3)
    np.testing.assert_allclose(x[0].permute(1, 2, 3, 0).numpy(), expect, atol=1e-6, rtol=0)


def test_training_input_is_the_same_normalisation():
    clips = np.stack([_frames(16, 112, 112, seed=s) for s in range(2)])
    batch = to_input(clips, SYNTH)
    assert batch.shape == (2, 3, 16, 112, 112)
    for i in range(2):  # a crop-size clip needs no resize: training and inference see the same tensor
        torch.testing.assert_close(batch[i : i + 1], preprocess(clips[i], SYNTH), rtol=0, atol=0)


def test_bad_frames_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match="uint8 frames"):
        resize_and_crop(np.zeros((2, 8, 8, 3), np.float32), K400)
    with pytest.raises(ValueError, match="resize_and_crop them first"):
        normalise(_frames(2, 256, 256), K400)  # not cropped: normalise never resizes behind the caller's back
