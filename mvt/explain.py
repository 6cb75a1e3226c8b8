"""Explanations that need one backward pass: gradients of a class score with respect to every attention map
(gradient-weighted rollout) and the conservative relevance of every block's entering tokens (token flow)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import Capture
from .outputs import ModelOutput


def attention_gradients(model: nn.Module, x: torch.Tensor, target: int | None = None) -> ModelOutput:
    """Run ``forward_with_attention(x, capture=Capture.GRADIENTS)`` and fill ``grad_weighted[i]`` =
    mean_heads (A ⊙ ∂y/∂A)⁺ for every map ``i``.

    ``y`` is the logit of ``target`` (default: the top class of the first clip). The per-head probabilities
    are dropped afterwards (``traced`` is emptied) so the returned output holds no autograd graph.
    """
    with torch.enable_grad():
        out = model.forward_with_attention(x, capture=Capture.GRADIENTS)
        if not out.traced:
            raise ValueError("model recorded no attention weights with Capture.GRADIENTS")
        for w in out.traced.values():
            w.retain_grad()
        if target is None:
            target = int(out.logits[0].argmax())
        out.logits[:, target].sum().backward()
    for i, w in out.traced.items():
        a, g = w.detach(), w.grad
        if g is None:  # a map that does not influence the score (e.g. after the CLS is read)
            g = torch.zeros_like(a)
        bg, heads, nq, nk = a.shape
        groups = out.attentions[i].groups
        fused = (a * g).clamp(min=0).mean(dim=1)  # (B*G, Nq, Nk)
        out.grad_weighted[i] = fused.reshape(bg // groups, groups, nq, nk)
    out.traced.clear()
    out.logits = out.logits.detach()
    out.extras["target"] = target
    return out


def token_flow(model: nn.Module, x: torch.Tensor, target: int | None = None) -> ModelOutput:
    """Conservative relevance of every block's entering tokens to one logit, in one backward pass.

    Runs ``forward_with_attention(x, capture=Capture.FLOW)`` (attention probabilities, LayerNorm's
    normaliser and GELU's gate held constant, see :mod:`mvt.holds`; an operation the rules do not know
    raises :class:`mvt.holds.UnheldOperation`) and sets ``relevance[i]`` of each block's first map ``i`` to
    gradient × input of the tokens entering the block, summed over channels: ``(B, G', N_in)`` float32 (``G'``
    sequences per clip as the block ran them). ``y`` is the logit of ``target`` (default: the top class of
    the first clip), summed over the batch. Also ``extras["flow_logit"]`` (that logit) and
    ``extras["flow_pixels"]`` ``(B, T, H, W)``: gradient × input of the clip, summed over colour channels.

    With the normalisers held the model is piecewise linear in its tokens, so at any block the relevances of
    the entering tokens (prefix tokens included) plus the relevance absorbed by the biases and added
    embeddings after that point sum to the logit exactly (``tests/mvt/test_token_flow.py`` checks this for
    every family). The graph and the recorded tokens are dropped before returning. The maps are deferred
    (``Capture.FLOW`` attends with the fused kernel): reading one computes it.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model.forward_with_attention(x, capture=Capture.FLOW)
        if not out.traced:
            raise ValueError("model recorded no block tokens with Capture.FLOW")
        if target is None:
            target = int(out.logits[0].argmax())
        y = out.logits[:, target].sum()
        positions = list(out.traced)
        grads = torch.autograd.grad(y, [x, *out.traced.values()], allow_unused=True)
    b = int(out.logits.shape[0])
    for i, g in zip(positions, grads[1:]):
        t = out.traced[i].detach()
        rel = torch.zeros(t.shape[:-1], dtype=torch.float32) if g is None else _dot(t, g)  # (B·G', N_in)
        out.relevance[i] = rel.reshape(b, -1, t.shape[1])  # (B, G', N_in)
    out.traced.clear()
    gx = torch.zeros_like(x) if grads[0] is None else grads[0]
    out.extras["flow_pixels"] = _dot(x.detach().movedim(1, -1), gx.movedim(1, -1))  # (B, T, H, W)
    out.extras["flow_logit"] = float(y.detach())
    out.extras["target"] = target
    out.logits = out.logits.detach()
    return out


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a · b)`` summed over the last axis, float32 (the product and the sum in float32; one pass)."""
    return torch.linalg.vecdot(a.float(), b.float())
