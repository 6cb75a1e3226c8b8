"""Gradients of a class score with respect to every attention map (for gradient-weighted rollout)."""

from __future__ import annotations

import torch
from torch import nn

from .outputs import ModelOutput


def attention_gradients(model: nn.Module, x: torch.Tensor, target: int | None = None) -> ModelOutput:
    """Run ``forward_with_attention`` and fill each map's ``grad_weighted`` = mean_heads (A ⊙ ∂y/∂A)⁺.

    ``y`` is the logit of ``target`` (default: the top class of the first clip). The per-head ``weights``
    are dropped afterwards so the returned output holds no autograd graph.
    """
    with torch.enable_grad():
        out = model.forward_with_attention(x, keep_weights=True)
        maps = [m for m in out.attentions if m.weights is not None]
        if not maps:
            raise ValueError("model returned no attention weights with keep_weights=True")
        for m in maps:
            m.weights.retain_grad()
        if target is None:
            target = int(out.logits[0].argmax())
        out.logits[:, target].sum().backward()
    for m in out.attentions:
        if m.weights is None:
            continue
        a, g = m.weights.detach(), m.weights.grad
        if g is None:  # a map that does not influence the score (e.g. after the CLS is read)
            g = torch.zeros_like(a)
        bg, heads, nq, nk = a.shape
        groups = m.probs.shape[1]
        fused = (a * g).clamp(min=0).mean(dim=1)  # (B*G, Nq, Nk)
        m.grad_weighted = fused.reshape(bg // groups, groups, nq, nk)
        m.weights = None
    out.logits = out.logits.detach()
    out.extras["target"] = target
    return out


def token_flow(model: nn.Module, x: torch.Tensor, target: int | None = None) -> ModelOutput:
    """Conservative relevance of every block's entering tokens to one logit, in one backward pass.

    Runs ``forward_with_attention(x, conservative=True)`` (attention probabilities, LayerNorm's normaliser and
    GELU's gate held constant, see :func:`mvt.layers.hold_normalisers`) and sets each recorded map's
    ``relevance`` to gradient × input of the tokens entering its block, summed over channels: ``(B, G', N_in)``
    float64 (``G'`` sequences per clip as the block ran them). ``y`` is the logit of ``target`` (default: the
    top class of the first clip), summed over the batch. Also ``extras["flow_logit"]`` (that logit) and
    ``extras["flow_pixels"]`` ``(B, T, H, W)``: gradient × input of the clip, summed over colour channels.

    With the normalisers held the model is piecewise linear in its tokens, so at any block the relevances of
    the entering tokens (prefix tokens included) plus the relevance absorbed by the biases and added
    embeddings after that point sum to the logit exactly (``tests/mvt/test_token_flow.py`` checks this for
    every family). The graph and the recorded tokens are dropped before returning.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        try:
            out = model.forward_with_attention(x, conservative=True)
        except TypeError as e:
            if "conservative" not in str(e):
                raise
            raise NotImplementedError(
                f"{type(model).__name__} does not implement forward_with_attention(conservative=True)"
            ) from None
        maps = [m for m in out.attentions if m.tokens is not None]
        if not maps:
            raise ValueError("model recorded no block tokens with conservative=True")
        if target is None:
            target = int(out.logits[0].argmax())
        y = out.logits[:, target].sum()
        grads = torch.autograd.grad(y, [x, *(m.tokens for m in maps)], allow_unused=True)
    b = int(out.logits.shape[0])
    for m, g in zip(maps, grads[1:]):
        t = m.tokens.detach()
        g = torch.zeros_like(t) if g is None else g
        m.relevance = (t.double() * g.double()).sum(-1).reshape(b, -1, t.shape[1])  # (B, G', N_in)
        m.tokens = None
    gx = torch.zeros_like(x) if grads[0] is None else grads[0]
    out.extras["flow_pixels"] = (x.detach().double() * gx.double()).sum(1)  # (B, T, H, W)
    out.extras["flow_logit"] = float(y.detach())
    out.extras["target"] = target
    out.logits = out.logits.detach()
    return out
