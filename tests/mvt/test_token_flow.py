"""Token flow is conservative: with attention, LayerNorm's normaliser and GELU's gate held, relevances sum to
the logit (plus what biases and added embeddings take), for every family; forward values are unchanged."""

from __future__ import annotations

import pytest
import torch

import mvt
from mvt import Capture
from mvt.holds import UnheldOperation, held_gelu, held_layer_norm, hold_normalisers

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
    out = model.forward_with_attention(x, capture=Capture.FLOW)
    with torch.no_grad():
        assert torch.allclose(out.logits, model(x), atol=1e-5)  # values are unchanged
    target = int(out.logits[0].argmax())
    y = out.logits[0, target]
    tokens = [out.traced[i] for i in _firsts(out, out.traced)]
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
    rel = sum(float(flow.relevance[i].sum()) for i in _firsts(flow, flow.relevance))
    assert rel == pytest.approx(entering, abs=1e-4 * scale)
    assert not flow.traced and all(r.dtype == torch.float32 for r in flow.relevance.values())
    assert flow.extras["flow_logit"] == pytest.approx(logit, rel=1e-5)
    assert float(flow.extras["flow_pixels"].sum()) == pytest.approx(pixels, abs=1e-4 * scale)


def _firsts(out, kept: dict) -> list[int]:
    """Positions of the first map with an entry in ``kept`` of every view (the tokens entering its first block)."""
    seen: dict = {}
    for i, m in enumerate(out.attentions):
        if i in kept:
            seen.setdefault(m.view or 0, i)
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
    q = torch.randn(1, 2, 4)
    with hold_normalisers(source=q), pytest.raises(UnheldOperation, match="record_attention"):
        torch.nn.functional.scaled_dot_product_attention(q * 2, q, q)


# -- the hold fails closed --------------------------------------------------------------------------------------


class _Unknown(torch.nn.Module):
    """A toy family's block (pre-norm attention + MLP) whose MLP uses an operation the rules do not know."""

    def __init__(self, op: str, dim: int = 8) -> None:
        super().__init__()
        self.op = op
        self.norm = torch.nn.LayerNorm(dim)
        self.fc1, self.fc2 = torch.nn.Linear(dim, 2 * dim), torch.nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        F = torch.nn.functional
        h = self.fc1(self.norm(x))
        a, b = h.chunk(2, dim=-1)
        if self.op == "rms_norm":
            return x + self.fc2(F.rms_norm(a, (a.shape[-1],)))
        if self.op == "silu":
            return x + self.fc2(F.silu(a))
        if self.op == "gelu_gate":  # GEGLU: gelu is known, the gate (a product of two activations) is not
            return x + self.fc2(F.gelu(a) * b)
        if self.op == "group_norm":
            return x + self.fc2(F.group_norm(a.transpose(1, 2), 2).transpose(1, 2))
        return x + self.fc2(F.gelu(a))  # "known": every operation has a rule


class _ToyBlocks(torch.nn.Module):
    """Clip → tokens → one :class:`_Unknown` block → mean → head, with the FLOW capture of the contract."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.embed = torch.nn.Conv3d(3, 8, (4, 16, 16), stride=(4, 16, 16))
        self.block, self.head = _Unknown(op), torch.nn.Linear(8, 3)
        self.captures = frozenset(Capture)

    def forward_with_attention(self, x: torch.Tensor, *, capture: Capture = Capture.EAGER):
        from mvt.layers import capturing, record_attention
        from mvt.outputs import Footprint

        with capturing(self, capture, x) as rec:
            tok = self.embed(x).flatten(2).transpose(1, 2)  # (B, N, 8)
            rec.enter_block(tok)
            q = tok.unsqueeze(1)  # (B, 1 head, N, 8)
            n = tok.shape[1]
            att = record_attention(
                q, q, q, rec, stage=0, block=0, kind="joint", q_grid=(1, 1, n), k_grid=(1, 1, n), num_prefix=0
            )
            logits = self.head(self.block(tok + att[:, 0]).mean(1))
        fp = Footprint((4, 16, 16), (4, 16, 16))
        return rec.output(logits, [], input_shape=tuple(x.shape[2:]), embed=fp, pooling="mean")


@pytest.mark.parametrize("op", ["rms_norm", "silu", "gelu_gate", "group_norm"])
def test_token_flow_refuses_an_operation_it_does_not_know(op):
    torch.manual_seed(0)
    model = _ToyBlocks(op)
    x = torch.randn(1, 3, 8, 32, 32)
    model.forward_with_attention(x)  # the block runs on the other captures
    with pytest.raises(UnheldOperation, match="token flow cannot pass"):
        mvt.token_flow(model, x)


def test_the_same_toy_with_known_operations_gives_relevances_that_add_up():
    torch.manual_seed(0)
    model = _ToyBlocks("known")
    x = torch.randn(1, 3, 8, 32, 32)
    flow = mvt.token_flow(model, x)
    assert list(flow.relevance) == [0] and flow.relevance[0].shape == (1, 1, 8)
    params = [p for n, p in model.named_parameters() if n.endswith("bias") and not n.startswith("embed")]
    out = model.forward_with_attention(x.requires_grad_(True), capture=Capture.FLOW)
    y = out.logits[0, flow.extras["target"]]
    grads = torch.autograd.grad(y, [out.traced[0], *params])
    total = float((out.traced[0] * grads[0]).sum()) + sum(
        float((p * g).sum()) for p, g in zip(params, grads[1:])
    )
    assert total == pytest.approx(float(y), abs=1e-4)
    assert float(flow.relevance[0].sum()) == pytest.approx(float((out.traced[0] * grads[0]).sum()), abs=1e-5)


@pytest.mark.parametrize("fused_backward", [True, False])
def test_held_attention_has_the_values_of_attention_and_the_gradient_of_a_constant_matrix(
    fused_backward, monkeypatch
):
    """Forwards: softmax(scale q kᵀ) v. Backwards: Aᵀ g for v (by one fused call with the kept log-sum-exp on
    the CPU, by chunked recomputation elsewhere), nothing for q and k."""
    from mvt import holds

    if not fused_backward:
        monkeypatch.setattr(holds, "_flash_cpu", lambda: None)
    g = torch.Generator().manual_seed(3)
    for bg, heads, nq, nk, d, dv in [(2, 3, 50, 40, 16, 16), (1, 2, 33, 20, 24, 16)]:
        q = torch.randn(bg, heads, d, nq, generator=g).transpose(-2, -1).requires_grad_()  # any layout
        k = torch.randn(bg, heads, nk, d, generator=g, requires_grad=True)
        v = torch.randn(bg, heads, nk, dv, generator=g, requires_grad=True)
        out = holds.held_attention(q, k, v, 0.3)
        a = (q @ k.transpose(-2, -1) * 0.3).softmax(-1).detach()
        torch.testing.assert_close(out, a @ v, atol=2e-6, rtol=1e-5)
        grad = torch.randn(out.shape, generator=g)
        gq, gk, gv = torch.autograd.grad(out, (q, k, v), grad, allow_unused=True)
        assert gq is None and gk is None
        torch.testing.assert_close(gv, a.transpose(-2, -1) @ grad, atol=5e-6, rtol=1e-5)
