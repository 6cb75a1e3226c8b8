"""captum attributions (lens.attribute) return finite (T, H, W) volumes quickly on a tiny video model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lens import attribute
from lens.explain.attribution import _cells
from lens.explain.methods import names


class TinyVideoNet(nn.Module):
    """Tubelet conv → stage tap (B, C, T, H, W) → mean → linear; exposes ``stage_taps`` like mvt models."""

    def __init__(self, classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(2, 4, 4))
        self.stage_taps = nn.ModuleList([nn.Identity()])
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.stage_taps[0](torch.nn.functional.gelu(self.embed(x)))  # (B, 8, T/2, H/4, W/4)
        return self.head(z.mean(dim=(2, 3, 4)))


@pytest.fixture(scope="module")
def tiny():
    model = TinyVideoNet().eval()
    x = torch.randn(1, 3, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    return model, x


@pytest.mark.parametrize("method", names(["captum"]))
def test_every_method_returns_a_finite_volume_with_progress(tiny, method):
    model, x = tiny
    calls: list[float] = []
    opts = {"n_steps": 4, "internal_batch_size": 2} if method == "integrated_gradients" else {}
    if method == "occlusion":
        opts = {"window": (3, 2, 8, 8)}
    if method == "feature_ablation":
        opts = {"cell": (2, 8, 8)}
    vol = attribute(model, x, method, target=1, progress=calls.append, **opts)
    assert vol.shape == (4, 16, 16) and vol.dtype == np.float32
    assert np.isfinite(vol).all()
    assert np.abs(vol).sum() > 0
    assert calls and calls[-1] == pytest.approx(1.0) and all(0 < c <= 1 for c in calls)
    assert not model.training


def test_occlusion_uses_tubelet_windows(tiny):
    model, x = tiny
    vol = attribute(model, x, "occlusion", target=0, window=(3, 2, 8, 8), strides=(3, 2, 8, 8))
    # non-overlapping windows: the volume is constant on each 2×8×8 tubelet
    blocks = vol.reshape(2, 2, 2, 8, 2, 8)
    assert np.allclose(blocks, blocks[:, :1, :, :1, :, :1])


def test_feature_mask_cells_are_token_aligned():
    mask = _cells((4, 16, 16), (2, 8, 8))
    assert mask.shape == (1, 1, 4, 16, 16)
    assert int(mask.max()) + 1 == 8
    assert (mask[0, 0, :2, :8, :8] == 0).all() and (mask[0, 0, 2:, 8:, 8:] == 7).all()


def test_gradcam_on_a_stage_tap_and_errors(tiny):
    model, x = tiny
    vol = attribute(model, x, "gradcam", target=2, stage=0)
    assert vol.shape == (4, 16, 16) and (vol >= 0).all()
    with pytest.raises(ValueError, match="unknown explanation method"):
        attribute(model, x, "lrp")
    with pytest.raises(ValueError, match="not a captum attribution"):
        attribute(model, x, "rollout")
    with pytest.raises(ValueError, match="one clip"):
        attribute(model, x[0], "saliency")
    with pytest.raises(ValueError, match="stage_taps"):
        attribute(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 16 * 16, 2)), x, "gradcam")


def test_gradcam_on_a_real_model_stage_tap():
    """Real taps: HVT's carries a 1-D pooled sequence, painted through its spans onto the clip."""
    import mvt

    model = mvt.create_model("hvt_t.untrained")
    spec = model.spec
    x = torch.randn(
        1, 3, spec.num_frames, spec.crop_size, spec.crop_size, generator=torch.Generator().manual_seed(0)
    )
    vol = attribute(model, x, "gradcam", stage=-1)
    assert vol.shape == tuple(x.shape[2:]) and np.isfinite(vol).all() and (vol >= 0).all()
    assert vol.max() > 0
