"""Conservative propagation for token flow: the held functions, and the mode that applies them and refuses
what it does not know.

With attention probabilities, LayerNorm's normaliser and GELU's gate held constant in the backward pass
(Ali et al., ICML 2022, "XAI for Transformers": attention heads and LayerNorm; AttnLRP, Achtibat et al.,
ICML 2024: the identity rule for GELU), a transformer is a piecewise-linear function of its tokens (linear
layers, convolutions and pools, residual sums, max pooling's selection), so gradient × input of any token
set splits a logit exactly into the tokens' relevances plus what the biases and added embeddings after them
contribute. Forward values are unchanged.

:func:`hold_normalisers` applies the rules by intercepting torch functions (a ``TorchFunctionMode``, this
thread only, for the duration of the block), and it **fails closed**: every operation whose result depends
on the clip (the ``source`` tensor, followed through every op) must be one it knows — a held function, a
linear or selecting operation, or a product with at most one clip-dependent factor. Anything else
(``F.rms_norm``, ``F.silu``, ``torch.sigmoid``, ``F.group_norm``, a gate ``a * gelu(b)``, the fused
attention kernel outside :func:`mvt.layers.record_attention`, …) raises :class:`UnheldOperation` instead of
giving relevances that silently do not add up.

Why intercept rather than have families call held functions explicitly: explicit calls cannot notice the
call a family makes *without* them (a new block with ``F.rms_norm`` would run and return wrong numbers);
the interceptor sees every operation on the way from the clip to the logits, so a family needs no token-flow
code at all and an operation nobody wrote a rule for stops the method. Parameters are not followed (only
what depends on ``source``), so computations on weights alone (tables, stacked norms) need no rule.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode, handle_torch_function, has_torch_function
from torch.utils._pytree import tree_leaves

_BACKWARD_CHUNK_BYTES = 1 << 24
"""Budget of one chunk of recomputed probabilities in :func:`held_attention`'s backward pass."""


class UnheldOperation(RuntimeError):
    """Token flow met an operation on the clip's path that conservative propagation has no rule for."""


# --------------------------------------------------------------------------------------------- held functions


def fused_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, dropout_p: float = 0.0
) -> torch.Tensor:
    """``F.scaled_dot_product_attention``; values narrower than the queries are zero-padded (the fused CPU
    kernel wants equal widths) and the padding's outputs dropped."""
    dv = v.shape[-1]
    if dv < q.shape[-1]:
        v = F.pad(v, (0, q.shape[-1] - dv))
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)
    return out[..., :dv] if out.shape[-1] != dv else out


def _flash_cpu():  # noqa: ANN202
    """The fused CPU kernel that also returns the rows' log-sum-exp (``None`` where torch has none)."""
    return getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


class _HeldAttention(torch.autograd.Function):
    """``A v`` with ``A = softmax(scale · q kᵀ)`` held: forwards the fused kernel; backwards only
    ``∂/∂v = Aᵀ g`` (no gradient reaches q or k).

    On the CPU ``Aᵀ g`` is itself one fused attention call: with the rows' log-sum-exp ``ℓ`` kept from the
    forward pass, ``Aᵀ g = c ⊙ softmax_i(k_j · scale q_i − ℓ_i) g`` where ``c_j = Σ_i A_ij`` is
    ``exp`` of that call's own log-sum-exp (keys ``[scale q, −ℓ]``, queries ``[k, 1]``). Elsewhere ``A`` is
    recomputed in chunks of query rows."""

    @staticmethod
    def forward(ctx, q, k, v, scale):  # noqa: ANN001, ANN205
        flash, d, dv = _flash_cpu(), q.shape[-1], v.shape[-1]
        lse = None
        if (
            flash is not None
            and q.device.type == "cpu"
            and q.dtype == k.dtype == v.dtype == torch.float32
            and dv <= d
        ):
            q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))  # the kernel's layout
            out, lse = flash(q, k, F.pad(v, (0, d - dv)) if dv < d else v, 0.0, False, scale=scale)
            out = out[..., :dv] if dv < d else out
        else:
            out = fused_attention(q, k, v, scale)
        ctx.save_for_backward(q, k, lse)
        ctx.scale, ctx.v_shape = scale, v.shape
        return out

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        q, k, lse = ctx.saved_tensors
        dv = ctx.v_shape[-1]
        if lse is not None:
            keys = torch.cat((q * ctx.scale, -lse.unsqueeze(-1)), dim=-1)  # (BG, heads, Nq, d + 1)
            queries = torch.cat((k, k.new_ones(*k.shape[:-1], 1)), dim=-1)  # (BG, heads, Nk, d + 1)
            values = F.pad(g.to(q.dtype), (0, keys.shape[-1] - dv))  # (BG, heads, Nq, d + 1)
            out, col = _flash_cpu()(queries, keys, values, 0.0, False, scale=1.0)
            return None, None, (out[..., :dv] * col.exp().unsqueeze(-1)).to(g.dtype), None
        bg, heads, nq, _ = q.shape
        nk = k.shape[2]
        kt = k.transpose(-2, -1)  # (BG, heads, d, Nk)
        gv = None  # (BG, heads, Nk, d_v)
        rows = max(1, _BACKWARD_CHUNK_BYTES // max(1, bg * heads * nk * q.element_size()))
        for r0 in range(0, nq, rows):
            qc = q[:, :, r0 : r0 + rows]  # (BG, heads, R, d)
            logits = torch.matmul(qc if ctx.scale == 1.0 else qc * ctx.scale, kt)  # (BG, heads, R, Nk)
            probs = torch.softmax(logits, dim=-1, out=logits)
            part = torch.matmul(probs.transpose(-2, -1), g[:, :, r0 : r0 + rows].to(probs.dtype))
            gv = part if gv is None else gv.add_(part)
        return None, None, gv.to(g.dtype), None


def held_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Attention ``(BG, heads, Nq, d_v)`` with its probabilities held constant in the backward pass: the
    same values as the fused kernel, a gradient for ``v`` only. Never builds every row of ``(Nq, Nk)`` at
    once, forwards or backwards. :func:`hold_normalisers` knows it (it is how ``Capture.FLOW`` attends)."""
    if has_torch_function((q, k, v)):
        return handle_torch_function(held_attention, (q, k, v), q, k, v, scale)
    return _HeldAttention.apply(q, k, v, scale)


class _HeldNormalise(torch.autograd.Function):
    """``(x - mean) / σ`` over the last dims; backwards with ``σ`` a constant (only the centring stays)."""

    @staticmethod
    def forward(ctx, x, normalized_shape, eps):  # noqa: ANN001, ANN205
        out, _, rstd = torch.native_layer_norm(x, normalized_shape, None, None, eps)
        ctx.save_for_backward(rstd)
        ctx.dims = tuple(range(-len(normalized_shape), 0))
        return out

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        (rstd,) = ctx.saved_tensors
        return (g - g.mean(ctx.dims, keepdim=True)) * rstd, None, None


def held_layer_norm(
    x: torch.Tensor,
    normalized_shape: tuple[int, ...] | list[int],
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``F.layer_norm`` with its normaliser held constant: the same values; in the backward pass
    ``(x - mean) / σ · weight + bias`` with ``σ`` a constant, so only the centring (linear) stays and gradient
    × input through it is conservative (the LN rule of Ali et al., ICML 2022). The affine part is plain
    autograd (its parameters get gradients only when asked for)."""
    out = _HeldNormalise.apply(x, list(normalized_shape), eps)
    if weight is not None and bias is not None:
        return torch.addcmul(bias, out, weight)
    if weight is not None:
        return out * weight
    return out + bias if bias is not None else out


class _HeldGelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, approximate):  # noqa: ANN001, ANN205
        y = F.gelu(x, approximate=approximate)
        gate = torch.div(y, x).nan_to_num_(nan=0.5)  # GELU(x)/x; its limit at x = 0 is Φ(0) = 1/2
        ctx.save_for_backward(gate)
        return y

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        (gate,) = ctx.saved_tensors
        return g * gate, None


def held_gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """GELU as ``x · g(x)`` with the gate ``g = GELU(x) / x`` held constant (the identity rule of AttnLRP,
    Achtibat et al., ICML 2024): same values, and gradient × input passes a unit's relevance through
    unchanged."""
    return _HeldGelu.apply(x, approximate)


# --------------------------------------------------------------------------------------------- the rules

_HELD = {F.layer_norm: held_layer_norm, F.gelu: held_gelu}
_SOFTMAX = {torch.softmax, torch.Tensor.softmax, F.softmax}


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_LINEAR = _names(
    # sums, negation, copies and casts
    "add add_ __add__ __radd__ __iadd__ sub sub_ __sub__ __rsub__ __isub__ neg __neg__ __pos__ sum mean "
    "cumsum clone contiguous to float double half bfloat16 type_as copy_ "
    # layout: views, indexing, joins and splits
    "view view_as reshape reshape_as flatten unflatten permute transpose t movedim swapaxes squeeze "
    "unsqueeze expand expand_as broadcast_to repeat repeat_interleave tile flip roll __getitem__ "
    "__setitem__ select narrow index_select gather take_along_dim split split_with_sizes tensor_split chunk "
    "unbind cat concat concatenate stack hstack vstack pad unfold T mT real "
    # selections and linear resampling: piecewise linear, no offset
    "max_pool1d max_pool2d max_pool3d max_pool1d_with_indices max_pool2d_with_indices "
    "max_pool3d_with_indices adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d avg_pool1d "
    "avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d interpolate "
    "masked_fill masked_fill_ where relu relu_ dropout"
)
"""Operations linear (or piecewise linear through 0) in every clip-dependent input."""
_PRODUCT = _names(
    "mul mul_ __mul__ __rmul__ __imul__ matmul __matmul__ __rmatmul__ mm bmm einsum linear conv1d conv2d "
    "conv3d addcmul addcmul_ addmm baddbmm addbmm outer div div_ __truediv__ __itruediv__"
)
"""Products: linear in each factor, so allowed while at most one factor depends on the clip (and, for a
division, only the numerator)."""
_FACTORS = {name: (0, 1) for name in ("linear", "conv1d", "conv2d", "conv3d")} | {
    name: (1, 2) for name in ("addcmul", "addcmul_", "addmm", "baddbmm", "addbmm")
}
"""Argument positions of the factors of products that also add a term (the rest of ``_PRODUCT``: all)."""
_CONSTANT = _names(
    "detach detach_ data zeros_like ones_like empty_like full_like rand_like randn_like new_zeros new_ones "
    "new_empty new_full new_tensor"
)
"""Results that do not depend on the values of their inputs (or are cut from the graph)."""


def _name(func) -> str:  # noqa: ANN001
    name = getattr(func, "__name__", "")
    if name == "__get__":  # a property getter (Tensor.T, Tensor.data, ...): the property's name
        return getattr(getattr(func, "__self__", None), "__name__", name)
    return name


class _Hold(TorchFunctionMode):
    """Applies the held functions and follows the clip: see :func:`hold_normalisers`."""

    def __init__(self, source: torch.Tensor | None) -> None:
        super().__init__()
        self._marked: dict[int, weakref.ref] = {}
        if source is not None:
            self._mark(source)

    def _mark(self, t: object) -> None:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            self._marked[id(t)] = weakref.ref(t)

    def _follows(self, t: object) -> bool:
        ref = self._marked.get(id(t))
        return ref is not None and ref() is t

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func in _SOFTMAX:  # attention probabilities are constants
            return func(*args, **kwargs).detach()
        inputs = [t for t in tree_leaves((args, kwargs)) if self._follows(t)]
        if func in _HELD:
            out = _HELD[func](*args, **kwargs)
        else:
            out = func(*args, **kwargs)
        if not inputs:
            return out
        name = _name(func)
        in_place = name == "__setitem__" or (name.endswith("_") and not name.startswith("__"))
        results = [args[0]] if in_place else tree_leaves(out)
        floating = [t for t in results if isinstance(t, torch.Tensor) and t.is_floating_point()]
        if not floating or name in _CONSTANT:
            return out
        if func in _HELD or func is held_attention or name in _LINEAR:
            pass
        elif func is F.scaled_dot_product_attention:
            raise UnheldOperation(
                "token flow met the fused attention kernel called directly: attention must go through "
                "mvt.layers.record_attention, which holds the probabilities"
            )
        elif name in _PRODUCT:
            self._check_product(name, args)
        else:
            where = getattr(func, "__module__", None) or "torch.Tensor"
            raise UnheldOperation(
                f"token flow cannot pass {where}.{name}: conservative propagation knows layer_norm and "
                "gelu (held), softmax attention (held), and linear, selecting and product operations; an "
                "operation it does not know (a normaliser such as rms_norm or group_norm, a gate such as "
                "silu or sigmoid) would make the relevances wrong. Give it a rule in mvt.holds, or use "
                "another method for this model."
            )
        for t in floating:
            self._mark(t)
        return out

    def _check_product(self, name: str, args: tuple) -> None:
        if name in ("div", "div_", "__truediv__", "__itruediv__"):
            if len(args) > 1 and self._follows(args[1]):
                raise UnheldOperation(
                    f"token flow cannot pass a division by a clip-dependent tensor ({name})"
                )
            return
        positions = _FACTORS.get(name)
        factors = [args[i] for i in positions if i < len(args)] if positions else tree_leaves(args)
        if sum(self._follows(t) for t in factors) > 1:
            raise UnheldOperation(
                f"token flow cannot pass {name} of two clip-dependent tensors: a product of activations (a "
                "gate such as a * gelu(b), or attention without a held softmax) is not linear in the tokens. "
                "Give it a rule in mvt.holds, or use another method for this model."
            )


@contextlib.contextmanager
def hold_normalisers(enabled: bool = True, *, source: torch.Tensor | None = None) -> Iterator[None]:
    """Within this block (this thread only), attention probabilities, LayerNorm's normaliser and GELU's gate
    are held constant in the backward pass; forward values are unchanged (see the module docstring).

    ``source`` is the clip (or whatever the relevances are of): every operation whose result depends on it
    must be known to the rules, else :class:`UnheldOperation` is raised (fails closed). Without ``source``
    only the held functions apply. Attention must go through :func:`mvt.layers.record_attention` (which
    calls :func:`held_attention`) or an explicit softmax; the fused kernel on the clip's path is refused.
    """
    if not enabled:
        yield
        return
    with _Hold(source):
        yield
