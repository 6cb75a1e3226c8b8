"""Building blocks shared by every model family: the one attention function, MLP, drop-path, and the
conservative-propagation rules (:func:`hold_normalisers`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    need_weights: bool = False,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention over ``(..., N, d)`` tensors.

    With ``need_weights=False`` this is the fused kernel (``F.scaled_dot_product_attention``), with ``bias``
    as an additive float mask. With ``need_weights=True`` it computes ``softmax(q kᵀ · scale + bias)``
    explicitly and also returns the probabilities ``(..., Nq, Nk)``. Callers pass ``dropout_p`` only while
    training (``p if self.training else 0.0``); the explicit path applies no dropout to the returned weights.

    Returns:
        ``(out, probs)`` where ``out`` is ``(..., Nq, d_v)`` and ``probs`` is ``None`` on the fused path.
    """
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if not need_weights:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)
        return out, None
    logits = torch.matmul(q if scale == 1.0 else q * scale, k.transpose(-2, -1))  # (..., Nq, Nk)
    if bias is not None:
        logits = logits + bias
    tracked = (q, k) if bias is None else (q, k, bias)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tracked):
        probs = logits.softmax(dim=-1)
    else:  # no autograd: softmax in place, sparing a second (Nq, Nk) buffer (large ones are page-faulted in)
        probs = torch.softmax(logits, dim=-1, out=logits)
    drop = F.dropout(probs, p=dropout_p) if dropout_p > 0 else probs
    return torch.matmul(drop, v), probs


class Mlp(nn.Module):
    """Linear → activation → Linear, with names ``fc1`` / ``fc2``."""

    def __init__(
        self, in_dim: int, hidden_dim: int, out_dim: int | None = None, act: type[nn.Module] = nn.GELU
    ):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = act()
        self.fc2 = nn.Linear(hidden_dim, out_dim or in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def init_linear_and_norm(module: nn.Module, std: float = 0.02) -> None:
    """ViT-style init of every submodule: Linear weights truncated-normal(std), biases 0; LayerNorm 1 / 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (identity at eval or when ``p == 0``)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


def summarize_heads(probs: torch.Tensor, num_prefix: int, store_dtype: torch.dtype = torch.float32):
    """Split per-head probabilities ``(B, heads, Nq, Nk)`` into (head mean, per-head CLS row or None).

    The head mean is ``(B, 1, Nq, Nk)`` (one group) in ``store_dtype``; the CLS row ``(B, heads, Nk)`` is kept
    in float32. Detached: these are records for drawing, not for gradients.
    """
    probs = probs.detach()
    one_head = probs.shape[1] == 1  # then the mean is the probabilities themselves: no copy
    mean = (probs if one_head else probs.mean(dim=1, keepdim=True)).to(store_dtype)  # (B, 1, Nq, Nk)
    cls_row = probs[:, :, 0, :].float().clone() if num_prefix > 0 else None  # (B, heads, Nk)
    return mean, cls_row


# --------------------------------------------------------------------------------------------- token flow


def held_layer_norm(
    x: torch.Tensor,
    normalized_shape: tuple[int, ...],
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``F.layer_norm`` with its normaliser held constant: ``(x - mean) / σ.detach() · weight + bias``.

    Same values; in the backward pass only the centring (linear) stays, so gradient × input through it is
    conservative (the LN rule of Ali et al., ICML 2022, "XAI for Transformers").
    """
    dims = tuple(range(-len(normalized_shape), 0))
    mean = x.mean(dim=dims, keepdim=True)
    sigma = (x.var(dim=dims, unbiased=False, keepdim=True) + eps).sqrt().detach()
    out = (x - mean) / sigma
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def held_gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """GELU as ``x · g(x)`` with the gate ``g = GELU(x) / x`` held constant (the identity rule of AttnLRP,
    Achtibat et al., ICML 2024): same values, and gradient × input passes a unit's relevance through
    unchanged."""
    y = F.gelu(x, approximate=approximate)
    gate = torch.where(x.abs() > 1e-12, y / torch.where(x.abs() > 1e-12, x, 1.0), 0.5)
    return x * gate.detach()


class _Hold(TorchFunctionMode):
    """Routes the three normalising nonlinearities of a transformer to their held versions (see
    :func:`hold_normalisers`); every other operation runs unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.layer_norm:
            return held_layer_norm(*args, **kwargs)
        if func is F.gelu:
            return held_gelu(*args, **kwargs)
        if func in (torch.softmax, torch.Tensor.softmax, F.softmax):
            return func(*args, **kwargs).detach()
        if func is F.scaled_dot_product_attention:
            raise RuntimeError("hold_normalisers needs explicit attention weights (need_weights=True)")
        return func(*args, **kwargs)


@contextlib.contextmanager
def hold_normalisers(enabled: bool = True) -> Iterator[None]:
    """Within this block (this thread only), attention probabilities, LayerNorm's normaliser and GELU's gate
    are held constant in the backward pass; forward values are unchanged.

    This is conservative propagation (Ali et al., ICML 2022: attention heads and LayerNorm; AttnLRP, Achtibat
    et al., ICML 2024: the identity rule for GELU): with those held, a model is a piecewise-linear function of
    its tokens (linear layers, convolutions and pools, residual sums, max pooling's selection), so gradient ×
    input of any token set splits a logit exactly into the tokens' relevances plus what the biases and
    added embeddings after them contribute. Families implement ``forward_with_attention(x, conservative=True)``
    by running their forward pass inside this block (one rule set for every family; the attention function
    must take its explicit path, which ``need_weights=True`` does). The mode is a ``TorchFunctionMode``: it
    lives on this thread's mode stack for the duration of the block only.
    """
    if not enabled:
        yield
        return
    with _Hold():
        yield
