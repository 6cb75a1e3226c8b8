"""Building blocks shared by every model family: MLP, drop-path, multi-head self-attention, and the one
implementation of attention capture (:func:`record_attention`, driven by a :class:`Capture`).

Capture. ``forward_with_attention(x, capture=...)`` takes one :class:`Capture`; the family opens
:func:`capturing` (which checks the family declared the capture, and holds the normalisers for
``Capture.FLOW``), passes the :class:`Recorder` it yields down to its attention calls, and every attention
call goes through :func:`record_attention`. That function alone decides how the probabilities are computed
(fused kernel, explicit softmax in head chunks, deferred, held for token flow), how they are stored (head
mean, float16 from :data:`BIG_MAP` entries, per-head CLS rows) and what stays on the autograd graph. The
families only say *where* a call sits (stage, block, grids, pools: the :class:`~mvt.outputs.AttentionMap`
layout fields). On the fast path (``model(x)``) they pass ``None`` and get the fused kernel.

The token-flow rules (conservative propagation, :func:`hold_normalisers`) live in :mod:`mvt.holds`.
"""

from __future__ import annotations

import contextlib
import enum
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .holds import fused_attention, held_attention, hold_normalisers
from .outputs import AttentionMap, ModelOutput, StageInfo

BIG_MAP = 1 << 20
"""Head-averaged maps with at least this many entries per group are stored as float16 (:func:`map_dtype`)."""
_EAGER_CHUNK_BYTES = 1 << 28
"""Budget of explicit per-head probabilities held at once by an eager capture (heads run in chunks)."""
_CHUNK_BYTES = 1 << 25
"""Budget of one chunk of explicit probabilities when a :class:`DeferredProbs` is computed (fits in L3)."""


class Capture(enum.StrEnum):
    """What ``forward_with_attention(x, capture=...)`` records, besides the logits (equal to ``model(x)``'s).

    Every capture returns one :class:`~mvt.outputs.AttentionMap` per attention call with the same layout;
    they differ in cost and in what is on the autograd graph. A family declares the captures it implements
    in ``captures`` (:attr:`mvt.models.contract.VideoModel.captures`).
    """

    EAGER = "eager"
    """Explicit softmax in the pass (heads in chunks): head-mean matrices and CLS rows computed now."""
    LAZY = "lazy"
    """The fused fast path; per-head CLS rows now (a ``1 × Nk`` product per head), each head-mean matrix
    computed from the kept queries and keys when first asked (:class:`DeferredProbs`). Inference only."""
    GRADIENTS = "gradients"
    """Explicit softmax on the autograd graph: ``ModelOutput.traced`` keeps every map's per-head
    probabilities, for gradient-weighted rollout (:func:`mvt.attention_gradients`). Costs every matrix."""
    FLOW = "flow"
    """Conservative propagation for token flow (:func:`mvt.token_flow`): the pass runs under
    :func:`~mvt.holds.hold_normalisers` (attention, LayerNorm's normaliser and GELU's gate held in the
    backward pass; any other normalising or gating operation is refused), attention runs fused forwards,
    and ``ModelOutput.traced`` keeps the tokens entering every block. Maps are deferred as with ``LAZY``."""


ALL_CAPTURES = frozenset(Capture)


def map_dtype(nq: int, nk: int, threshold: int | None = None) -> torch.dtype:
    """How a head-averaged ``(Nq, Nk)`` map is stored: float16 from ``threshold`` (default :data:`BIG_MAP`)
    entries on (a ViViT-B map is 3137² ≈ 9.8 M entries: 20 MB instead of 39 MB), else float32. Row sums of
    a float16 map are 1 to ~1e-3; bench/README.md gives the measured effect on rollout and statistics."""
    return torch.float16 if nq * nk >= (BIG_MAP if threshold is None else threshold) else torch.float32


# --------------------------------------------------------------------------------------------- modules


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


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection and an output ``proj`` (the names of the
    HVT release and of our ViViT): ``(BG, N, D)`` tokens in, ``(BG, rows or N, D)`` out, every call through
    :func:`record_attention`."""

    def __init__(
        self, dim: int, heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop, self.proj_drop = attn_drop, proj_drop

    def split_qkv(self, x: torch.Tensor) -> torch.Tensor:
        """``(BG, N, D)`` → ``(BG, N, 3, heads, d)``."""
        bg, n, _ = x.shape
        return self.qkv(x).view(bg, n, 3, self.heads, self.head_dim)

    def forward(
        self, x: torch.Tensor, rec: Recorder | None = None, rows: int | None = None, **layout
    ) -> torch.Tensor:
        """Attention within each of the ``BG`` sequences of ``x`` ``(BG, N, D)``; ``rows``: only the first
        ``rows`` queries' outputs (the map still covers every query); ``layout``: the map's fields."""
        bg, _, d = x.shape
        q, k, v = self.split_qkv(x).permute(2, 0, 3, 1, 4)  # each (BG, heads, N, d)
        p = self.attn_drop if self.training else 0.0
        out = record_attention(q, k, v, rec, rows=rows, dropout_p=p, **layout)  # (BG, heads, rows or N, d)
        return self.project(out.transpose(1, 2).reshape(bg, out.shape[2], d))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The output projection (and its dropout while training) of concatenated heads ``(BG, N, D)``."""
        x = self.proj(x)
        return F.dropout(x, self.proj_drop, self.training) if self.proj_drop else x


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


# --------------------------------------------------------------------------------------------- capture


class Recorder:
    """What one ``forward_with_attention`` pass records (made by :func:`capturing`): the maps in call order
    and the capture's autograd tensors by map position. Families pass it to :func:`record_attention` and,
    at the start of every block, call :meth:`enter_block`; :meth:`output` makes the pass's result."""

    def __init__(self, capture: Capture, batch: int) -> None:
        self.capture = capture
        self.batch = batch
        self.maps: list[AttentionMap] = []
        self.traced: dict[int, torch.Tensor] = {}
        self._entering: torch.Tensor | None = None

    def enter_block(self, tokens: torch.Tensor) -> None:
        """The tokens a block receives, exactly the tensor it runs on. ``Capture.FLOW`` keeps them (on the
        autograd graph) with the block's first map: token flow reports their relevance."""
        if self.capture is Capture.FLOW:
            self._entering = tokens

    def _add(self, amap: AttentionMap, traced: torch.Tensor | None) -> None:
        i = len(self.maps)
        self.maps.append(amap)
        if self._entering is not None:
            traced, self._entering = self._entering, None
        if traced is not None:
            self.traced[i] = traced

    def output(self, logits: torch.Tensor, stages: list[StageInfo], **fields) -> ModelOutput:
        """The pass's :class:`~mvt.outputs.ModelOutput`: ``logits``, the recorded maps, ``stages`` and the
        other fields (``input_shape``, ``embed``, ``pooling``, ``extras``)."""
        return ModelOutput(logits=logits, attentions=self.maps, stages=stages, traced=self.traced, **fields)


def supported(model: nn.Module) -> frozenset[Capture]:
    """The captures ``model`` declares (a model without ``captures`` implements only the default, EAGER)."""
    return frozenset(getattr(model, "captures", (Capture.EAGER,)))


@contextlib.contextmanager
def capturing(model: nn.Module, capture: Capture | str, x: torch.Tensor) -> Iterator[Recorder]:
    """Open one capture of ``model`` on the clip ``x``: checks the capture is one the model declares
    (``NotImplementedError`` naming it otherwise) and yields the :class:`Recorder` for the pass. Under
    ``Capture.FLOW`` the block runs inside :func:`~mvt.holds.hold_normalisers` with ``x`` as the tokens'
    source, so that any operation on the way from ``x`` to the logits that the rules do not know refuses."""
    try:
        capture = Capture(capture)
    except ValueError:
        raise ValueError(f"unknown capture {capture!r}; one of {[c.value for c in Capture]}") from None
    if capture not in supported(model):
        have = sorted(c.value for c in supported(model))
        raise NotImplementedError(
            f"{type(model).__name__} does not implement capture {capture.value!r} (it implements {have})"
        )
    rec = Recorder(capture, int(x.shape[0]))
    if capture is Capture.FLOW:
        with hold_normalisers(source=x):
            yield rec
    else:
        yield rec


def record_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rec: Recorder | None,
    *,
    scale: float | None = None,
    dropout_p: float = 0.0,
    rows: int | None = None,
    **layout,
) -> torch.Tensor:
    """Scaled dot-product attention of ``(BG, heads, Nq, d)`` queries over ``(BG, heads, Nk, d)`` keys and
    ``(BG, heads, Nk, d_v)`` values, and — when ``rec`` is given — its record.

    Returns ``(BG, heads, rows or Nq, d_v)``: with ``rows``, only the first ``rows`` queries' outputs (the
    caller uses no others; the record still covers every query). ``BG = B·G``: ``G`` independent sequences
    per clip, batch-major. ``rec is None`` is the fast path: the fused kernel, nothing recorded (callers pass
    ``dropout_p`` only while training). Otherwise this appends to ``rec`` one
    :class:`~mvt.outputs.AttentionMap` made of ``layout`` (stage, block, kind, q_grid, k_grid, num_prefix and
    the optional fields) plus what the capture computes: the head mean ``(B, G, Nq, Nk)`` (stored as
    :func:`map_dtype` says), the per-head CLS row ``(B, heads, Nk)`` where ``num_prefix > 0`` and ``G == 1``,
    and for ``Capture.GRADIENTS`` the per-head probabilities on the autograd graph (``rec.traced``).
    """
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if rec is None:
        return fused_attention(q if rows is None else q[:, :, :rows], k, v, scale, dropout_p)
    bg, heads, nq, _ = q.shape
    nk = int(k.shape[2])
    if bg % rec.batch:
        raise ValueError(f"record_attention: {bg} sequences is not a multiple of the batch {rec.batch}")
    groups = bg // rec.batch
    shape, dtype = (rec.batch, groups, nq, nk), map_dtype(nq, nk)
    cls = layout.get("num_prefix", 0) > 0 and groups == 1
    traced = None
    if rec.capture in (Capture.LAZY, Capture.FLOW):
        if dropout_p:
            raise ValueError(f"Capture.{rec.capture.name} is for inference: no attention dropout")
        qr = q if rows is None else q[:, :, :rows]
        out = (
            held_attention(qr, k, v, scale)
            if rec.capture is Capture.FLOW
            else fused_attention(qr, k, v, scale)
        )
        deferred = DeferredProbs(q, k, scale, shape=shape, dtype=dtype)
        head_mean, cls_row = deferred, (deferred.first_rows() if cls else None)
    elif rec.capture is Capture.GRADIENTS:  # one call, so the per-head probabilities stay on the graph
        out, probs = _explicit(q, k, v, scale, dropout_p)
        traced, kept = probs, probs.detach()
        head_mean = kept.mean(dim=1).view(shape).to(dtype)  # (B, G, Nq, Nk)
        cls_row = kept[:, :, 0].float().clone() if cls else None  # (B, heads, Nk)
    else:
        out, head_mean, cls_row = _eager(q, k, v, scale, dropout_p, shape, dtype, cls)
    if rows is not None and rec.capture in (Capture.EAGER, Capture.GRADIENTS):
        out = out[:, :, :rows]
    rec._add(AttentionMap(heads=heads, head_mean=head_mean, cls_row=cls_row, **layout), traced)
    return out


def _explicit(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, dropout_p: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(softmax(scale · q kᵀ) v, the probabilities)``; dropout (training) applies to the product only."""
    logits = torch.matmul(q if scale == 1.0 else q * scale, k.transpose(-2, -1))  # (..., Nq, Nk)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
        probs = logits.softmax(dim=-1)
    else:  # no autograd: softmax in place, sparing a second (Nq, Nk) buffer (large ones are page-faulted in)
        probs = torch.softmax(logits, dim=-1, out=logits)
    drop = F.dropout(probs, p=dropout_p) if dropout_p > 0 else probs
    return torch.matmul(drop, v), probs


def _eager(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    dropout_p: float,
    shape: tuple[int, int, int, int],
    dtype: torch.dtype,
    cls: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Explicit attention over heads in chunks of at most :data:`_EAGER_CHUNK_BYTES` of probabilities
    (never every head's matrix at once): ``(out, head mean as shape/dtype, per-head CLS rows or None)``."""
    bg, heads, nq, _ = q.shape
    nk = k.shape[2]
    step = max(1, _EAGER_CHUNK_BYTES // max(1, bg * nq * nk * 4))
    if step >= heads:  # every head at once
        out, probs = _explicit(q, k, v, scale, dropout_p)
        probs = probs.detach()
        cls_row = probs[:, :, 0].float().clone() if cls else None  # (BG, heads, Nk)
        return out, probs.mean(dim=1).view(shape).to(dtype), cls_row
    outs, cls_parts, total = [], [], None
    for h0 in range(0, heads, step):
        sl = slice(h0, h0 + step)
        o, pr = _explicit(q[:, sl], k[:, sl], v[:, sl], scale, dropout_p)
        outs.append(o)
        pr = pr.detach()
        if cls:
            cls_parts.append(pr[:, :, 0].float().clone())  # (BG, hc, Nk)
        part = pr.sum(dim=1)  # (BG, Nq, Nk)
        total = part if total is None else total.add_(part)
        del pr
    out = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
    mean = total.div_(heads).view(shape).to(dtype)  # (B, G, Nq, Nk)
    return out, mean, (torch.cat(cls_parts, dim=1) if cls else None)


class DeferredProbs:
    """Head-averaged attention probabilities not computed yet: the (detached) queries ``(BG, heads, Nq, d)``
    and keys ``(BG, heads, Nk, d)`` of one attention call, kept until :meth:`compute` is first called.

    :meth:`compute` (thread-safe, computed once, then q and k are dropped) returns what an eager capture
    stores: ``mean_heads softmax(scale · q kᵀ)`` viewed as :attr:`shape` in :attr:`dtype`, computed in chunks
    of query rows (never every head's full matrix at once). :meth:`first_rows` gives the per-head
    probabilities of query 0 (the CLS row): a ``1 × Nk`` product per head.
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
        bg, _, nq, _ = q.shape
        self.shape = tuple(int(s) for s in shape) if shape is not None else (bg, 1, nq, int(k.shape[2]))
        self.dtype = dtype
        self._value: torch.Tensor | None = None
        self._lock = threading.Lock()

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
