"""The model contract: what every family in :mod:`mvt.models` provides, and the helpers the families share.

A *family* is one file in ``mvt/models/`` (``mvit.py``, ``mmvit.py``, ``vivit.py``, ``hvt.py``) holding its config
dataclass, its named variants (``<FAMILY>_CONFIGS``), a builder ``build_<family>(name, num_classes=...)``, an
optional checkpoint converter and a ``_register()`` call that puts every variant into :mod:`mvt.zoo`. Whatever
``mvt.create_model`` returns satisfies :class:`VideoModel`; the rest of the project (``viz``, the analysis
service, training, distillation) relies on that and on nothing else about a family. See
``docs/adding-a-model.md`` for the steps that add a family.

Helpers (one place, so the families agree): :func:`check_clip` (input-shape checks with errors a person can
act on), :func:`through_tap` (route tokens through a stage tap as a 5-D grid), :func:`grow_footprint` (a token
grid's footprint through strided poolings), :func:`config_named` (variant lookup with a clear error),
:func:`register_variant` / :func:`register_checkpoint` (a variant and its trained weights into the zoo) and the
input settings of the two data sets the shipped models read: :func:`kinetics_spec` (Kinetics-400 and
ImageNet-style ``resize 256 → crop 224`` clips) and :func:`synthmotion_spec` (16 × 112² SynthMotion clips).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from functools import partial
from typing import Protocol, TypeVar, runtime_checkable

import torch
from torch import nn

from .. import synth
from ..layers import Capture
from ..outputs import Footprint, Grid, ModelOutput, PoolOp
from ..weights import WeightsSource
from ..zoo import ArchEntry, ModelSpec, register_arch, register_pretrained

# --------------------------------------------------------------------------------------------- the contract

EXTRAS_KEYS: dict[str, str] = {
    "view_embeds": "MMViT: {view: Footprint} of every view's patch embedding (viz paints each view's tokens)",
    "spans": "HVT: per stage an int64 (N_s, 2) array, the [start, stop) raster patches each pooled token covers",
    "patch_grid": "HVT: the (T, H, W) grid of the patch/tubelet embedding the spans index",
    "variant": "ViViT: the factorisation, 1-4",
    "variant_name": "ViViT: the factorisation's name (spacetime, factorised_encoder, ...)",
    "target": "set by mvt.attention_gradients: the class whose score the gradients are of",
    "stage_seconds": "optional: {label: seconds} timings of parts of the forward pass, shown beside the result",
    "flow_logit": "set by mvt.token_flow: the explained logit (what the token relevances add up to, with biases)",
    "flow_pixels": "set by mvt.token_flow: (B, T, H, W) gradient × input relevance of the input pixels",
}
"""The keys a :class:`~mvt.outputs.ModelOutput`'s ``extras`` may hold, and what each means. ``extras`` is for what
a family needs to say that the typed records cannot (``viz`` reads these keys with ``.get``); a new key is
added here, with its meaning, before a family writes it (a test checks every family's output against this
table)."""


@runtime_checkable
class VideoModel(Protocol):
    """A video classifier that returns its attention as data: the contract every family implements.

    Input ``x`` is a float clip ``(B, 3, T, H, W)``, normalised as ``spec`` says (``mvt.preprocess``); the
    model accepts at least ``T = spec.num_frames`` and ``H = W = spec.crop_size`` and rejects what it cannot
    run with a ``ValueError`` that says what to feed instead (:func:`check_clip`).

    Capture: ``forward_with_attention(x, capture=...)`` takes one :class:`~mvt.layers.Capture` (eager, lazy,
    gradients, flow) and the family lists the ones it implements in :attr:`captures`; callers ask only for
    those (:func:`mvt.layers.supported`). Every capture is implemented once, in
    :func:`mvt.layers.record_attention`: a family opens :func:`mvt.layers.capturing`, passes the recorder to
    its attention calls and says where each call sits; it never computes probabilities itself.
    """

    spec: ModelSpec
    """Input settings and weights description (frames, stride, crop, mean/std, labels, trained?). Set by
    :func:`mvt.create_model`; a model built directly from ``build_<family>`` has none until a caller sets it."""

    stage_taps: nn.ModuleList
    """One ``nn.Identity`` per scale stage, ``len(stage_taps)`` = the number of distinct ``StageInfo.stage``.
    Both paths (``forward`` and ``forward_with_attention``) route stage ``s``'s grid tokens (prefix/CLS tokens
    excluded) through ``stage_taps[s]`` as one 5-D tensor ``(B, C, T, H, W)`` and use its *output* downstream
    (:func:`through_tap`), so a forward hook sees the stage and the class score has a gradient through it.
    The tap sits where the tokens still reach the logits: for a model whose head reads a CLS token, the last
    stage is tapped on the tokens *entering* its last block. Family notes: MMViT taps view 0's tokens; HVT's
    pooled tokens are not a grid, so its taps carry ``(B, C, G, 1, N)`` (G frames for per-frame models, the
    sequence on the W axis). Readers: Grad-CAM (``LayerGradCam`` on a tap), distillation hints
    (:func:`mvt.distill.capture_stage`) and the auxiliary losses of :mod:`mvt.supervision`. Taps stay
    identities: replacing one changes the model."""

    captures: frozenset[Capture]
    """The captures :meth:`forward_with_attention` implements (``mvt.layers.ALL_CAPTURES`` for a family whose
    attention calls all go through :func:`mvt.layers.record_attention`); a model without the attribute is
    taken to implement ``Capture.EAGER`` only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` on the fast path (fused attention, nothing recorded)."""
        ...

    def forward_with_attention(self, x: torch.Tensor, *, capture: Capture = Capture.EAGER) -> ModelOutput:
        """Logits (equal to :meth:`forward`'s up to float rounding) plus the records a picture needs.

        ``ModelOutput.attentions`` has one :class:`~mvt.outputs.AttentionMap` per attention call (head-mean
        probabilities, detached, computed or deferred; the per-head CLS row where a CLS query exists),
        ``stages`` one :class:`~mvt.outputs.StageInfo` per scale stage (per view for multi-view models),
        ``embed`` the patch embedding's footprint and ``extras`` only keys of :data:`EXTRAS_KEYS`.

        ``capture`` (:class:`~mvt.layers.Capture`): ``EAGER`` computes every matrix in the pass; ``LAZY``
        runs the fused fast path (CLS rows now, matrices when first read); ``GRADIENTS`` keeps the per-head
        probabilities on the autograd graph in ``ModelOutput.traced`` (for :func:`mvt.attention_gradients`;
        it costs every attention matrix and the graph); ``FLOW`` runs the pass with the normalisers held
        (:mod:`mvt.holds`) and keeps, in ``ModelOutput.traced``, the tokens entering every block on the
        graph (for :func:`mvt.token_flow`). A capture the family does not list in :attr:`captures` raises
        ``NotImplementedError`` naming it.
        """
        ...


# --------------------------------------------------------------------------------------------- input checks


def check_clip(
    x: torch.Tensor,
    *,
    model: str,
    channels: int = 3,
    frames: int | None = None,
    size: int | None = None,
    image_ok: bool = False,
    hint: str = "",
) -> torch.Tensor:
    """Check a model input and return it as a clip ``(B, C, T, H, W)``.

    ``image_ok`` accepts an image batch ``(B, C, H, W)`` as one-frame clips. ``frames`` / ``size`` demand that
    many frames / square frames of that side (models with fixed position embeddings). Errors are
    ``ValueError`` naming ``model``, what it takes and what to do; ``hint`` is appended to the layout error
    (e.g. another library's layout to permute from).
    """
    if x.ndim == 4 and image_ok:
        x = x.unsqueeze(2)  # (B, C, H, W) -> (B, C, 1, H, W)
    if x.ndim != 5 or x.shape[1] != channels:
        raise ValueError(
            f"{model} expects a clip (B, {channels}, T, H, W) = (batch, channels, frames, height, width), "
            f"got shape {tuple(x.shape)}{hint}"
        )
    _, _, t, h, w = x.shape
    if size is not None and (h, w) != (size, size):
        raise ValueError(
            f"{model}: its position embeddings are for {size}×{size} frames, got {h}×{w}; resize and centre-crop "
            f"the frames to {size} first (mvt.preprocess does, following model.spec)"
        )
    if frames is not None and t != frames:
        raise ValueError(
            f"{model} takes clips of {frames} frames, got {t}; sample {frames} frames (model.spec.num_frames)"
        )
    return x


# --------------------------------------------------------------------------------------------- stage taps


def through_tap(
    tap: nn.Module,
    tokens: torch.Tensor,
    grid: Grid,
    *,
    num_prefix: int = 0,
    batch: int | None = None,
) -> torch.Tensor:
    """Route the grid tokens of ``tokens`` through ``tap`` as ``(B, C, T, H, W)`` and put them back.

    ``tokens`` is ``(B·G, P + n, C)``: ``G`` groups per clip (``batch = B`` when ``G > 1``; default ``G = 1``),
    each with ``P = num_prefix`` prefix tokens then ``n`` grid tokens, so that the ``G·n`` grid tokens of a clip
    are ``grid``'s cells in (t, h, w) raster order (group-major). Prefix tokens pass by the tap unchanged.
    Returns a tensor shaped like ``tokens`` whose grid tokens are the tap's output (on the autograd graph).
    """
    bg, _, c = tokens.shape
    b = bg if batch is None else batch
    cells = tokens[:, num_prefix:].reshape(b, *grid, c).permute(0, 4, 1, 2, 3)  # (B, C, T, H, W)
    cells = tap(cells)
    back = cells.permute(0, 2, 3, 4, 1).reshape(bg, -1, c)  # (B·G, n, C) in raster order again
    return torch.cat((tokens[:, :num_prefix], back), dim=1) if num_prefix else back


def identity_taps(count: int) -> nn.ModuleList:
    """``count`` stage taps (see :attr:`VideoModel.stage_taps`)."""
    return nn.ModuleList(nn.Identity() for _ in range(count))


# --------------------------------------------------------------------------------------------- footprints


def grow_footprint(footprint: Footprint, pools: Iterable[PoolOp | None]) -> Footprint:
    """The footprint of a token grid after the query poolings ``pools`` (in order; ``None`` = no pooling).

    Token cells move only along the axes a pooling strides (:meth:`Footprint.then`); a stride-1 pooling
    mixes neighbours but keeps the grid, so it leaves the footprint as it is.
    """
    for op in pools:
        if op is not None:
            footprint = footprint.then(op)
    return footprint


# --------------------------------------------------------------------------------------------- variants

C = TypeVar("C")


def config_named(configs: Mapping[str, C], name: str, family: str) -> C:
    """``configs[name]``, or a ``KeyError`` that lists the known names of ``family``."""
    if name not in configs:
        raise KeyError(f"unknown {family} config {name!r}; known: {sorted(configs)}")
    return configs[name]


def register_variant(
    family: str,
    arch: str,
    build: Callable[..., nn.Module],
    spec: ModelSpec,
    convert: Callable[[dict], dict] | None = None,
) -> None:
    """Register the variant ``arch`` of ``family`` with the zoo: built by ``build(arch, num_classes=...)``,
    ``spec`` its ``.untrained`` input settings, ``convert`` its checkpoint converter (if any)."""
    register_arch(ArchEntry(arch=arch, family=family, builder=partial(build, arch), convert=convert), spec)


def register_checkpoint(spec: ModelSpec, tag: str, weights: WeightsSource, description: str) -> None:
    """Register trained ``weights`` for ``spec``'s architecture as ``arch.tag``, with ``spec``'s input settings.
    ``description`` says honestly what the weights are (shown beside every result)."""
    register_pretrained(
        replace(
            spec,
            name=f"{spec.arch}.{tag}",
            tag=tag,
            weights=weights,
            trained=True,
            description=description,
        )
    )


# --------------------------------------------------------------------------------------------- input settings

KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)
"""pytorchvideo / torchvision Kinetics normalisation (on frames scaled to [0, 1])."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SYNTHMOTION_FRAMES = 16
SYNTHMOTION_SIZE = 112
"""SynthMotion clips: 16 consecutive frames of 112² (:mod:`mvt.synth`; its ``CLASSES`` are the labels)."""


def untrained_spec(arch: str, **settings) -> ModelSpec:
    """The ``arch.untrained`` spec with the given input settings (the zoo gives every arch one)."""
    return ModelSpec(name=f"{arch}.untrained", arch=arch, tag="untrained", **settings)


def kinetics_spec(
    arch: str,
    *,
    num_frames: int,
    frame_stride: int,
    crop_size: int = 224,
    resize_size: int = 256,
    mean: tuple[float, float, float] = KINETICS_MEAN,
    std: tuple[float, float, float] = KINETICS_STD,
    label_set: str = "kinetics400",
    **settings,
) -> ModelSpec:
    """Input settings of a full-size model: ``num_frames`` frames ``frame_stride`` apart, short side resized
    to ``resize_size``, centre crop ``crop_size``; Kinetics-400 labels and normalisation unless given."""
    return untrained_spec(
        arch,
        num_frames=num_frames,
        frame_stride=frame_stride,
        crop_size=crop_size,
        resize_size=resize_size,
        mean=mean,
        std=std,
        label_set=label_set,
        **settings,
    )


def synthmotion_spec(
    arch: str,
    *,
    num_frames: int = SYNTHMOTION_FRAMES,
    crop_size: int = SYNTHMOTION_SIZE,
    mean: tuple[float, float, float] = KINETICS_MEAN,
    std: tuple[float, float, float] = KINETICS_STD,
) -> ModelSpec:
    """Input settings of the small SynthMotion models: consecutive frames at crop size, 8 classes.

    ``num_frames`` / ``crop_size`` come from the family's config (where they are stated); they must be
    SynthMotion's (16, 112), since the models train and evaluate on its clips.
    """
    if (num_frames, crop_size) != (SYNTHMOTION_FRAMES, SYNTHMOTION_SIZE):
        raise ValueError(
            f"{arch}: SynthMotion clips are {SYNTHMOTION_FRAMES}×{SYNTHMOTION_SIZE}², "
            f"the config says {num_frames}×{crop_size}²"
        )
    return untrained_spec(
        arch,
        num_frames=num_frames,
        frame_stride=1,
        crop_size=crop_size,
        resize_size=crop_size,
        mean=mean,
        std=std,
        label_set="synthmotion",
        num_classes=len(synth.CLASSES),
    )
