"""mvt.quantize: the opt-in int8 linears are a labelled approximation of the fp32 model, never a silent swap."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import mvt
from mvt.quantize import DynamicInt8Linear, quantize_linears


def test_a_quantised_linear_approximates_the_fp32_one():
    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    x = torch.randn(5, 7, 64)
    for reduce_range in (False, True):
        q = DynamicInt8Linear(lin, reduce_range=reduce_range)
        assert torch.equal(q.weight, lin.weight) and torch.equal(q.bias, lin.bias)  # fp32 kept for readers
        y, ref = q(x), lin(x)
        assert y.shape == ref.shape == (5, 7, 32)
        err = ((y - ref).abs().max() / ref.abs().max()).item()
        assert 0 < err < (0.04 if reduce_range else 0.02), err  # measured: 0.021 / 0.012 (bench/README.md)


def test_quantize_linears_copies_and_keeps_everything_else():
    model = mvt.create_model("mvit_t.untrained")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyTorch's deprecation notice is silenced, nothing else is
        q = quantize_linears(model)
    assert q is not model and q.spec == model.spec
    assert not any(isinstance(m, DynamicInt8Linear) for m in model.modules()), "the original is untouched"
    linears = [m for m in q.modules() if isinstance(m, nn.Linear)]
    assert linears and all(isinstance(m, DynamicInt8Linear) for m in linears)
    assert any(isinstance(m, nn.Conv3d) for m in q.modules()), "convolutions stay fp32"


@pytest.mark.parametrize("arch", ["mvit_t", "vivit_t1", "hvt_t", "mmvit_t"])
def test_int8_models_run_both_capture_paths_close_to_fp32(arch):
    model = mvt.create_model(f"{arch}.untrained")
    spec = model.spec
    x = torch.randn(
        1, 3, spec.num_frames, spec.crop_size, spec.crop_size, generator=torch.Generator().manual_seed(1)
    )
    q = quantize_linears(model)
    with torch.inference_mode():
        ref = model.forward_with_attention(x, capture="lazy")
        fast, lazy = q(x), q.forward_with_attention(x, capture="lazy")
    assert torch.equal(fast, lazy.logits)
    torch.testing.assert_close(lazy.logits, ref.logits, atol=0.1, rtol=0.1)
    for a, b in zip(ref.attentions, lazy.attentions):
        if a.cls_row is not None:
            torch.testing.assert_close(b.cls_row, a.cls_row, atol=0.05, rtol=0)
