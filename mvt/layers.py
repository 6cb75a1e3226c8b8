"""Building blocks shared by every model family: the one attention function, MLP, drop-path, and the
records of attention probabilities (head means, CLS rows, probabilities computed later from kept q and k), and
the conservative-propagation rules (:func:`hold_normalisers`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

LAZY = "lazy"
"""``attention(..., need_weights=LAZY)``: fused kernel now, probabilities later (:class:`DeferredProbs`)."""
BIG_MAP = 1 << 20
"""Head-averaged maps with at least this many entries per group are stored as float16 (:func:`map_dtype`)."""
_CHUNK_BYTES = 1 << 25
"""Budget of one chunk of explicit probabilities when a :class:`DeferredProbs` is computed (fits in L3)."""


def map_dtype(nq: int, nk: int, threshold: int | None = None) -> torch.dtype:
    """How a head-averaged ``(Nq, Nk)`` map is stored: float16 from ``threshold`` (default :data:`BIG_MAP`)
    entries on (a ViViT-B map is 3137² ≈ 9.8 M entries: 20 MB instead of 39 MB), else float32. Row sums of
    a float16 map are 1 to ~1e-3; bench/README.md gives the measured effect on rollout and statistics."""
    return torch.float16 if nq * nk >= (BIG_MAP if threshold is None else threshold) else torch.float32


def capture_mode(keep_weights: bool, lazy: bool, conservative: bool = False) -> bool | Literal["lazy"]:
    """The ``need_weights`` of ``forward_with_attention(x, keep_weights=..., lazy=..., conservative=...)``'s
    attention calls."""
    if lazy and (keep_weights or conservative):
        what = "keep_weights" if keep_weights else "conservative"
        raise ValueError(f"lazy=True computes probabilities later, outside autograd: it cannot {what}")
    return LAZY if lazy else True


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    need_weights: bool | Literal["lazy"] = False,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention over ``(..., N, d)`` tensors.

    With ``need_weights=False`` this is the fused kernel (``F.scaled_dot_product_attention``), with ``bias``
    as an additive float mask. With ``need_weights=True`` it computes ``softmax(q kᵀ · scale + bias)``
    explicitly and also returns the probabilities ``(..., Nq, Nk)``. Callers pass ``dropout_p`` only while
    training (``p if self.training else 0.0``); the explicit path applies no dropout to the returned weights.

    With ``need_weights=LAZY`` (inference only, no bias) the output comes from the fused kernel and the
    probabilities are a :class:`DeferredProbs` holding ``q`` and ``k``: nothing ``(Nq, Nk)`` is computed
    until someone asks (a CLS row is a ``1 × Nk`` product per head, the full map one chunked pass).

    Returns:
        ``(out, probs)`` where ``out`` is ``(..., Nq, d_v)`` and ``probs`` is ``None`` on the fused path.
    """
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if need_weights == LAZY:
        if bias is not None or dropout_p > 0:
            raise ValueError("lazy attention weights take no bias and no dropout (inference only)")
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
        return out, DeferredProbs(q, k, scale)
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


def summarize_heads(
    probs: torch.Tensor | DeferredProbs, num_prefix: int, store_dtype: torch.dtype | None = None
):
    """Split per-head probabilities ``(B, heads, Nq, Nk)`` into (head mean, per-head CLS row or None).

    The head mean is ``(B, 1, Nq, Nk)`` (one group) in ``store_dtype`` (default :func:`map_dtype`); the CLS
    row ``(B, heads, Nk)`` is kept in float32. Detached: these are records for drawing, not for gradients.
    A :class:`DeferredProbs` gives a deferred head mean and its CLS rows computed now (``1 × Nk`` per head).
    """
    if store_dtype is None:
        store_dtype = map_dtype(probs.shape[-2], probs.shape[-1])
    if isinstance(probs, DeferredProbs):
        cls_row = probs.first_rows() if num_prefix > 0 else None  # (B, heads, Nk)
        b, _, nq, nk = probs.per_head_shape
        return probs.reshape(b, 1, nq, nk).to(store_dtype), cls_row
    probs = probs.detach()
    one_head = probs.shape[1] == 1  # then the mean is the probabilities themselves: no copy
    mean = (probs if one_head else probs.mean(dim=1, keepdim=True)).to(store_dtype)  # (B, 1, Nq, Nk)
    cls_row = probs[:, :, 0, :].float().clone() if num_prefix > 0 else None  # (B, heads, Nk)
    return mean, cls_row


class DeferredProbs:
    """Head-averaged attention probabilities not computed yet: the (detached) queries ``(BG, heads, Nq, d)``
    and keys ``(BG, heads, Nk, d)`` of one attention call, kept until :meth:`compute` is first called.

    :meth:`compute` (thread-safe, computed once, then q and k are dropped) returns what an eager capture
    stores: ``mean_heads softmax(scale · q kᵀ)`` viewed as :attr:`shape` in :attr:`dtype`, computed in chunks
    of query rows (never every head's full matrix at once). :meth:`first_rows` gives the per-head
    probabilities of query 0 (the CLS row): a ``1 × Nk`` product per head. An ``AttentionMap`` holding one
    computes it on first read of ``probs`` (see :class:`mvt.outputs.AttentionMap`).
    """

    def __init__(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        scale: float,
        *,
        shape: tuple[int, ...] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        # own copies: a view would keep the whole fused qkv buffer (values too) alive. Under autocast q and k
        # may differ in dtype (bf16 products, fp32 concatenations); they are computed later without it.
        common = torch.promote_types(q.dtype, k.dtype)
        self._q, self._k = q.detach().to(common).contiguous(), k.detach().to(common).contiguous()
        self.scale = scale
        bg, heads, nq, _ = q.shape
        self.per_head_shape = (bg, heads, nq, int(k.shape[2]))
        self.shape = tuple(shape) if shape is not None else (bg, 1, nq, int(k.shape[2]))
        self.dtype = dtype
        self._value: torch.Tensor | None = None
        self._lock = threading.Lock()

    def _derived(self, shape: tuple[int, ...], dtype: torch.dtype) -> DeferredProbs:
        if self._q is None:
            raise RuntimeError("these probabilities were already computed; reshape the tensor instead")
        new = DeferredProbs.__new__(DeferredProbs)
        new.__dict__.update(self.__dict__)
        new.shape, new.dtype, new._lock = tuple(int(s) for s in shape), dtype, threading.Lock()
        return new

    def reshape(self, *shape: int) -> DeferredProbs:
        """The same probabilities, to be viewed as ``shape`` (e.g. ``(B, G, Nq, Nk)``) once computed."""
        return self._derived(shape, self.dtype)

    def to(self, dtype: torch.dtype) -> DeferredProbs:
        """The same probabilities, to be stored as ``dtype`` once computed."""
        return self._derived(self.shape, dtype)

    @property
    def ready(self) -> bool:
        return self._value is not None

    def first_rows(self) -> torch.Tensor:
        """``(BG, heads, Nk)`` float32: every head's probabilities for query 0 (the CLS query)."""
        if self._q is None:
            raise RuntimeError("first_rows() must be taken before compute() drops the queries")
        q0 = self._q[:, :, :1]  # (BG, heads, 1, d)
        logits = torch.matmul(q0 if self.scale == 1.0 else q0 * self.scale, self._k.transpose(-2, -1))
        return logits.softmax(dim=-1)[:, :, 0].float()  # (BG, heads, Nk)

    def compute(self) -> torch.Tensor:
        """The head-mean probabilities as :attr:`shape` / :attr:`dtype` (computed on the first call only)."""
        with self._lock:
            if self._value is None:
                with torch.inference_mode():
                    mean = head_mean_softmax(self._q, self._k, self.scale)  # (BG, Nq, Nk)
                self._value = mean.to(self.dtype).view(self.shape)
                self._q = self._k = None
            return self._value


def head_mean_softmax(
    q: torch.Tensor, k: torch.Tensor, scale: float, chunk_bytes: int = _CHUNK_BYTES
) -> torch.Tensor:
    """``mean_heads softmax(scale · q kᵀ)``: ``(BG, Nq, Nk)`` float32 from ``(BG, heads, Nq, d)`` queries and
    ``(BG, heads, Nk, d)`` keys, in chunks of query rows of at most ``chunk_bytes`` of probabilities."""
    bg, heads, nq, _ = q.shape
    nk = k.shape[2]
    kt = k.transpose(-2, -1)  # (BG, heads, d, Nk)
    out = torch.empty(bg, nq, nk, dtype=torch.float32, device=q.device)
    per_item = heads * nq * nk * 4
    if per_item * bg <= chunk_bytes:  # small maps (HVT frames, SynthMotion sizes): one batched product
        logits = torch.matmul(q if scale == 1.0 else q * scale, kt)  # (BG, heads, Nq, Nk)
        return torch.softmax(logits, dim=-1, out=logits).float().mean(dim=1)
    rows = max(1, chunk_bytes // (heads * nk * 4))
    for b in range(bg):
        for r0 in range(0, nq, rows):
            qc = q[b, :, r0 : r0 + rows]  # (heads, R, d)
            logits = torch.matmul(qc if scale == 1.0 else qc * scale, kt[b])  # (heads, R, Nk)
            probs = torch.softmax(logits, dim=-1, out=logits).float()
            torch.mean(probs, dim=0, out=out[b, r0 : r0 + rows])  # (R, Nk)
    return out


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
