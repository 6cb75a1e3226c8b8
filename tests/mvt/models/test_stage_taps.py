"""Every stage tap of every small model sees gradient from the class score (Grad-CAM is never all zero)."""

import pytest
import torch

import mvt

SMALL = [a for a in mvt.list_archs() if mvt.get_spec(a).label_set == "synthmotion"]
"""Every small (SynthMotion-size) architecture, so a new family is checked without editing this file."""


@pytest.mark.parametrize("arch", SMALL)
def test_every_stage_tap_receives_gradient(arch):
    model = mvt.create_model(f"{arch}.untrained")
    spec = model.spec
    x = torch.randn(1, 3, spec.num_frames, spec.crop_size, spec.crop_size)
    grads: dict[int, torch.Tensor] = {}

    def keep(i):
        def hook(module, inputs, output):
            output.register_hook(lambda g: grads.__setitem__(i, g))

        return hook

    handles = [tap.register_forward_hook(keep(i)) for i, tap in enumerate(model.stage_taps)]
    try:
        x.requires_grad_(True)
        logits = model(x)
        logits[0, int(logits[0].argmax())].backward()
    finally:
        for h in handles:
            h.remove()
    assert sorted(grads) == list(range(len(model.stage_taps)))
    for i, g in grads.items():
        assert g.ndim == 5, f"stage {i} tap must carry (B, C, T, H, W), got {tuple(g.shape)}"
        assert g.abs().sum() > 0, f"stage {i} tap of {arch} gets no gradient from the class score"
