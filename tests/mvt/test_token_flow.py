"""Token flow is conservative: with attention, LayerNorm's normaliser and GELU's gate held, relevances sum to
the logit (plus what biases and added embeddings take), for every family; forward values are unchanged."""

from __future__ import annotations

import pytest
import torch

import mvt
from mvt.layers import held_gelu, held_layer_norm, hold_normalisers

MODELS = [
    "mvit_t.untrained",
    "mmvit_t.untrained",
    "vivit_t1.untrained",
    "vivit_t2.untrained",
    "vivit_t3.untrained",
    "vivit_t4.untrained",
    "hvt_t.untrained",
]
ADDITIVE = ("bias", "pos_embed", "cls_token", "class_token", "class_pos", "spatial_pos", "temporal_pos")
"""Parameters that are *added* to activations (the rest multiply them, or only enter held attention)."""
BEFORE_FIRST_BLOCK = ("conv_proj.", "pos_encoding.", "patch_embed.", "encoder.pos_embed", "encoder.cls_token")


def _additive(name: str) -> bool:
    return name.split(".")[-1] in ADDITIVE


def _upstream(name: str) -> bool:
    """Used before the first block (so already inside the first block's entering tokens)."""
    if name in ("pos_embed",):  # HVT's embedding position table (blocks own the later ones)
        return True
    stem = name.split(".", 2)[-1] if name.startswith("views.") else name
    return stem.startswith(BEFORE_FIRST_BLOCK)


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = mvt.create_model(name)
    with torch.no_grad():  # random but not tiny weights, so holding the normalisers matters
        for n, p in model.named_parameters():
            if _additive(n):
                p.normal_(0, 0.2)
    return model


@pytest.mark.parametrize("name", MODELS)
def test_relevances_add_up_to_the_logit(name):
    model = _model(name)
    spec = model.spec
    x = torch.randn(
        1, 3, spec.num_frames, spec.crop_size, spec.crop_size, generator=torch.Generator().manual_seed(1)
    )
    x.requires_grad_(True)
    params = [(n, p) for n, p in model.named_parameters() if _additive(n)]
    out = model.forward_with_attention(x, conservative=True)
    with torch.no_grad():
        assert torch.allclose(out.logits, model(x), atol=1e-5)  # values are unchanged
    target = int(out.logits[0].argmax())
    y = out.logits[0, target]
    firsts = {}
    for m in out.attentions:
        if m.tokens is not None:
            firsts.setdefault(m.view or 0, m)
    tokens = [m.tokens for m in firsts.values()]
    grads = torch.autograd.grad(y, [x, *tokens, *(p for _, p in params)], allow_unused=True)
    gx, gt, gp = grads[0], grads[1 : 1 + len(tokens)], grads[1 + len(tokens) :]
    share = {n: float((p * g).sum().detach()) if g is not None else 0.0 for (n, p), g in zip(params, gp)}
    pixels = float((x * gx).sum())
    logit = float(y)
    scale = max(1.0, abs(logit), sum(abs(v) for v in share.values()))
    # the clip and every additive parameter
    assert pixels + sum(share.values()) == pytest.approx(logit, abs=2e-4 * scale)
    # the tokens entering the first block (every view) and the additive parameters after them
    entering = sum(float((t * g).sum()) for t, g in zip(tokens, gt))
    after = sum(v for n, v in share.items() if not _upstream(n))
    assert entering + after == pytest.approx(logit, abs=2e-4 * scale)
    # and mvt.token_flow reports those relevances per token
    flow = mvt.token_flow(model, x.detach(), target)
    rel = sum(
        float(m.relevance.sum()) for m in flow.attentions if m.relevance is not None and m in _firsts(flow)
    )
    assert rel == pytest.approx(entering, abs=1e-4 * scale)
    assert flow.extras["flow_logit"] == pytest.approx(logit, rel=1e-5)
    assert float(flow.extras["flow_pixels"].sum()) == pytest.approx(pixels, abs=1e-4 * scale)


def _firsts(out) -> list:
    seen: dict = {}
    for m in out.attentions:
        if m.relevance is not None:
            seen.setdefault(m.view or 0, m)
    return list(seen.values())


def test_plain_gradient_times_input_is_not_conservative():
    """Without the holds the same sum misses the logit: the rules are what makes it add up."""
    model = _model("vivit_t1.untrained")
    x = torch.randn(1, 3, 16, 112, 112, generator=torch.Generator().manual_seed(1), requires_grad=True)
    params = [(n, p) for n, p in model.named_parameters() if _additive(n)]
    out = model.forward_with_attention(x)
    y = out.logits[0, 0]
    grads = torch.autograd.grad(y, [x, *(p for _, p in params)], allow_unused=True)
    total = float((x * grads[0]).sum()) + sum(
        float((p * g).sum()) for (_, p), g in zip(params, grads[1:]) if g is not None
    )
    assert abs(total - float(y)) > 1e-2


def test_held_functions_keep_values_and_hold_their_gates():
    x = torch.randn(4, 8, requires_grad=True)
    w, b = torch.randn(8), torch.randn(8)
    torch.testing.assert_close(
        held_layer_norm(x, (8,), w, b, 1e-6), torch.nn.functional.layer_norm(x, (8,), w, b, 1e-6)
    )
    for approx in ("none", "tanh"):
        torch.testing.assert_close(held_gelu(x, approx), torch.nn.functional.gelu(x, approximate=approx))
    # linear in x once held: gradient × input reproduces the value (LN: up to the bias)
    y = held_layer_norm(x, (8,), w, None, 1e-6)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close((g * x).sum(), y.sum(), atol=1e-4, rtol=1e-4)
    y = held_gelu(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close((g * x).sum(), y.sum())
    with hold_normalisers():
        a = torch.randn(3, 5, requires_grad=True)
        p = a.softmax(-1)
    assert not p.requires_grad  # attention probabilities are constants
    with hold_normalisers(), pytest.raises(RuntimeError, match="explicit"):
        torch.nn.functional.scaled_dot_product_attention(
            torch.randn(1, 2, 4), torch.randn(1, 2, 4), torch.randn(1, 2, 4)
        )
