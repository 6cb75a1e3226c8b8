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
