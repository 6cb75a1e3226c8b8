"""ViViT: the four space-time factorisations of "ViViT: A Video Vision Transformer".

Paper: A. Arnab, M. Dehghani, G. Heigold, C. Sun, M. Lučić, C. Schmid, ICCV 2021 (arXiv 2103.15691).
Reference code: google-research/scenic ``projects/vivit`` (JAX) and Hugging Face ``VivitForVideoClassification``
(model 1 only). This is our own PyTorch implementation of all four models, selected by ``ViViTConfig.variant``:

1. ``spacetime``: joint attention over every tubelet token plus a CLS token (paper model 1).
2. ``factorised_encoder``: a spatial transformer runs on each time index separately (with a per-frame CLS
   token); a temporal transformer then runs over the per-frame CLS outputs with its own CLS token.
3. ``factorised_self_attention``: each block attends in space (tokens of one time index), then in time (tokens
   of one spatial position), then applies the MLP; no CLS token, the head reads the token mean. The paper
   orders space then time (``attention_order="space_time"``, our default); scenic's default is ``time_space``.
4. ``factorised_dot_product``: one attention layer per block whose heads are split in two halves; as in
   scenic's ``factorized_dot_product_attention`` the first half attends over time and the second over space.
   No CLS token, mean-pool head.

Checkpoint: ``vivit_b_16x2.k400`` is model 1, ViViT-B/16x2, from the Hugging Face repo
``google/vivit-b-16x2-kinetics400`` (file ``pytorch_model.bin``, converted by HF from scenic's
``kinetics_400/vivit_base_16x2_unfactorized`` checkpoint; scenic reports 79.9 top-1 with 4x3 views). The file
uses transformers-4 key names; :func:`convert_hf_vivit` also accepts transformers-5 names. Models 2-4 have no
public weights: they exist here untrained and in small SynthMotion sizes (``vivit_t1`` .. ``vivit_t4``).

Numerics of model 1 follow HF exactly: pre-LN blocks, LayerNorm eps 1e-6, q/k/v biases, tanh-approximated
GELU (HF's ``gelu_fast`` is the same formula; they agree to fp32 rounding), classifier on the final-LN CLS.

Preprocessing: we follow the original scenic pipeline (``vivit_base_k400.py``): 32 frames at stride 2, short
side resized to 256, centre crop 224, pixels zero-centred to [-1, 1] (``mean = std = 0.5`` on [0, 1] frames).
HF's ``VivitImageProcessor`` differs: the hub ``preprocessor_config.json`` now rescales by 1/127.5 with
``offset=True`` (giving [-1, 1]) *and* normalises with mean = std = 0.5, which maps pixels to [-3, 1]; the HF
converter itself asserted [-1, 1] inputs. Inputs here are ``(B, 3, T, H, W)`` like every mvt model (HF takes
``(B, T, 3, H, W)``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .. import licences
from ..layers import ALL_CAPTURES, Capture, capturing, init_linear_and_norm
from ..outputs import Footprint, Grid, ModelOutput, StageInfo
from ..weights import WeightsSource
from ..zoo import ModelSpec
from .contract import (
    check_clip,
    config_named,
    identity_taps,
    kinetics_spec,
    register_checkpoint,
    register_variant,
    synthmotion_spec,
    through_tap,
)
from .vivit_blocks import Block, Encoder, FactorisedBlock, Layout, PassContext, spatial_layout
from .vivit_hf import convert_hf_vivit

VARIANTS = {
    1: "spacetime",
    2: "factorised_encoder",
    3: "factorised_self_attention",
    4: "factorised_dot_product",
}
_VARIANT_ALIASES = {
    **{name: k for k, name in VARIANTS.items()},
    "joint": 1,
    "factorized_encoder": 2,
    "factorized_self_attention": 3,
    "factorized_self_attention_block": 3,
    "factorized_dot_product": 4,
    "factorized_dot_product_attention": 4,
}
EMBED_INITS = ("default", "central_frame", "average_frame")


@dataclass(frozen=True)
class ViViTConfig:
    """One ViViT model. ``variant`` is 1-4 or a name from :data:`VARIANTS` (normalised to the int).

    ``depth`` is the number of blocks (model 2: of the spatial transformer; ``temporal_depth`` is the temporal
    transformer's). ``embed_init`` initialises the tubelet kernel at random init: ``"central_frame"`` keeps only
    the central temporal slice (paper §3.4), ``"average_frame"`` repeats one slice over time.
    """

    variant: int | str = 1
    num_frames: int = 32
    image_size: int = 224
    tubelet: tuple[int, int, int] = (2, 16, 16)
    in_chans: int = 3
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    temporal_depth: int = 4
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    attention_order: str = "space_time"
    dropout: float = 0.0
    attn_dropout: float = 0.0
    drop_path: float = 0.0
    embed_init: str = "default"
    zero_init_temporal: bool = False
    """Model 3: zero the temporal attention's output projection so it starts as a residual identity (paper §3.4)."""

    def __post_init__(self) -> None:
        v = self.variant
        if isinstance(v, str):
            if v.lower() not in _VARIANT_ALIASES:
                raise ValueError(f"unknown ViViT variant {v!r}; use 1-4 or one of {list(VARIANTS.values())}")
            v = _VARIANT_ALIASES[v.lower()]
        if v not in VARIANTS:
            raise ValueError(f"ViViT variant must be 1-4, got {v!r}")
        object.__setattr__(self, "variant", int(v))
        object.__setattr__(self, "tubelet", tuple(int(t) for t in self.tubelet))
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.variant == 4 and self.heads % 2:
            raise ValueError("model 4 splits heads between space and time: heads must be even")
        if self.attention_order not in ("space_time", "time_space"):
            raise ValueError(
                f"attention_order must be 'space_time' or 'time_space', got {self.attention_order!r}"
            )
        if self.embed_init not in EMBED_INITS:
            raise ValueError(f"embed_init must be one of {EMBED_INITS}, got {self.embed_init!r}")
        t, h, w = self.grid
        if min(t, h, w) < 1:
            raise ValueError(
                f"input {self.num_frames}x{self.image_size}² is smaller than tubelet {self.tubelet}"
            )

    @property
    def grid(self) -> Grid:
        """Token grid (T', H', W') of the tubelet embedding."""
        tt, th, tw = self.tubelet
        return (self.num_frames // tt, self.image_size // th, self.image_size // tw)

    @property
    def variant_name(self) -> str:
        return VARIANTS[int(self.variant)]


_B16x2 = {"num_frames": 32, "image_size": 224, "tubelet": (2, 16, 16), "dim": 768, "depth": 12, "heads": 12}
_TINY = {"num_frames": 16, "image_size": 112, "tubelet": (2, 16, 16), "dim": 128, "depth": 8, "heads": 2}
VIVIT_CONFIGS: dict[str, ViViTConfig] = {
    "vivit_b_16x2": ViViTConfig(variant=1, **_B16x2),
    "vivit_b_16x2_fe": ViViTConfig(variant=2, temporal_depth=4, **_B16x2),
    "vivit_b_16x2_fsa": ViViTConfig(variant=3, **_B16x2),
    "vivit_b_16x2_fdp": ViViTConfig(variant=4, **_B16x2),
    "vivit_t1": ViViTConfig(variant=1, mlp_dim=512, **_TINY),
    "vivit_t2": ViViTConfig(variant=2, mlp_dim=512, temporal_depth=2, **_TINY),
    "vivit_t3": ViViTConfig(variant=3, mlp_dim=512, **_TINY),
    "vivit_t4": ViViTConfig(variant=4, mlp_dim=512, **_TINY),
}
"""Named variants. ``vivit_b_16x2*`` are the paper's ViViT-B/16x2 models 1-4 (model 2 with 4 temporal layers);
``vivit_t*`` are small models 1-4 for 16x112² SynthMotion clips (8x7x7 tokens; width, depth, heads and block shapes
those of ``hvt_t``, so a SynthMotion ``hvt_t`` can initialise them as an image ViT initialises ViViT)."""


def config_from_hf(hf: dict, variant: int = 1) -> ViViTConfig:
    """A model-1 :class:`ViViTConfig` from a Hugging Face ``VivitConfig`` dict (``config.to_dict()``)."""
    if hf.get("hidden_act", "gelu_fast") not in ("gelu_fast", "gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"hidden_act {hf['hidden_act']!r} is not the tanh GELU this model implements")
    size = hf.get("image_size", 224)
    if isinstance(size, (list, tuple)):
        if size[0] != size[1]:
            raise ValueError(f"non-square image_size {size} is not supported")
        size = size[0]
    return ViViTConfig(
        variant=variant,
        num_frames=hf.get("num_frames", 32),
        image_size=int(size),
        tubelet=tuple(hf.get("tubelet_size", (2, 16, 16))),
        in_chans=hf.get("num_channels", 3),
        dim=hf.get("hidden_size", 768),
        depth=hf.get("num_hidden_layers", 12),
        heads=hf.get("num_attention_heads", 12),
        mlp_dim=hf.get("intermediate_size", 3072),
        qkv_bias=hf.get("qkv_bias", True),
        norm_eps=hf.get("layer_norm_eps", 1e-6),
    )


def inflate_patch_kernel(kernel2d: torch.Tensor, frames: int, method: str = "central_frame") -> torch.Tensor:
    """Turn a 2-D patch kernel ``(D, C, ph, pw)`` into a tubelet kernel ``(D, C, frames, ph, pw)``.

    ``"central_frame"``: zeros except the central slice ``frames // 2``, which is the 2-D kernel (the paper's
    best initialisation, Table 1). ``"average_frame"``: filter inflation, the 2-D kernel divided by ``frames``
    on every slice, so a static clip gives the 2-D model's response.
    """
    if kernel2d.ndim != 4:
        raise ValueError(f"expected a (D, C, ph, pw) kernel, got shape {tuple(kernel2d.shape)}")
    if method == "central_frame":
        out = kernel2d.new_zeros(kernel2d.shape[:2] + (frames,) + kernel2d.shape[2:])  # (D, C, t, ph, pw)
        out[:, :, frames // 2] = kernel2d
        return out
    if method == "average_frame":
        return kernel2d.unsqueeze(2).repeat(1, 1, frames, 1, 1) / frames  # (D, C, t, ph, pw)
    raise ValueError(f"method must be 'central_frame' or 'average_frame', got {method!r}")


@dataclass(frozen=True)
class _Pass:
    """One encoder pass: which stage it is, how its tokens are laid out, where its stage tap sits."""

    stage: int
    grid: Grid
    layout: Layout | None
    tap_before_last: bool
    first_block: int = 0


class ViViT(nn.Module):
    """ViViT models 1-4 (see the module docstring); input ``(B, 3, T, H, W)``.

    ``stage_taps[i]`` sees stage ``i``'s grid tokens as ``(B, D, T', H', W')``. Where a CLS token feeds the head
    (models 1 and 2) the grid tokens leaving the last block never reach the logits, so the tap sits on the
    tokens *entering* the last block (the usual ViT Grad-CAM target); for models 3 and 4 it sees the final
    tokens before the last LayerNorm.
    """

    def __init__(self, cfg: ViViTConfig, num_classes: int = 400):
        super().__init__()
        self.cfg = cfg
        t, h, w = cfg.grid
        self.patch_embed = nn.Conv3d(cfg.in_chans, cfg.dim, kernel_size=cfg.tubelet, stride=cfg.tubelet)
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        v = cfg.variant
        if v == 1:
            self.encoder = Encoder(cfg, t * h * w, True, [Block(cfg, r) for r in rates])
        elif v == 2:
            self.encoder = Encoder(cfg, h * w, True, [Block(cfg, r) for r in rates])
            t_rates = [cfg.drop_path * i / max(cfg.temporal_depth - 1, 1) for i in range(cfg.temporal_depth)]
            self.temporal_encoder = Encoder(cfg, t, True, [Block(cfg, r) for r in t_rates])
        elif v == 3:
            self.encoder = Encoder(cfg, t * h * w, False, [FactorisedBlock(cfg, r) for r in rates])
        else:
            self.encoder = Encoder(cfg, t * h * w, False, [Block(cfg, r, split_heads=True) for r in rates])
        self.head = nn.Linear(cfg.dim, num_classes)
        self.stage_taps = identity_taps(2 if v == 2 else 1)
        self._init_weights()

    # -- initialisation ------------------------------------------------------------------------------------
    def _init_weights(self) -> None:
        init_linear_and_norm(self)
        for enc in self._encoders():
            nn.init.trunc_normal_(enc.pos_embed, std=0.02)
        kernel = self.patch_embed.weight.data  # (D, C, t, ph, pw)
        if self.cfg.embed_init == "central_frame":
            kernel.copy_(inflate_patch_kernel(kernel[:, :, 0], kernel.shape[2], "central_frame"))
        elif self.cfg.embed_init == "average_frame":
            kernel.copy_(kernel[:, :, :1].expand_as(kernel))
        if self.cfg.zero_init_temporal and self.cfg.variant == 3:
            for blk in self.encoder.blocks:
                nn.init.zeros_(blk.attn_t.proj.weight)

    def _encoders(self) -> list[Encoder]:
        return [self.encoder] + ([self.temporal_encoder] if self.cfg.variant == 2 else [])

    # -- forward -------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` on the fused-attention fast path."""
        return self._forward(x, PassContext(batch=x.shape[0], grid=self.cfg.grid))

    captures = ALL_CAPTURES

    def forward_with_attention(self, x: torch.Tensor, *, capture: Capture = Capture.EAGER) -> ModelOutput:
        """Logits plus one :class:`AttentionMap` per attention call and one :class:`StageInfo` per stage.

        Maps keep the head-averaged probabilities (float16 when a group's map has ≥ 2²⁰ entries, e.g. model 1 at
        full size: 12 × 3137² × 2 B ≈ 236 MB) and, where a CLS query exists with one group, its per-head row.
        ``Capture.GRADIENTS`` keeps every call's per-head probabilities on the autograd graph: for ViViT-B
        model 1 that is 12 layers × 12 heads × 3137² × 4 B ≈ 5.7 GB, plus the graph; use it with small models
        or short clips. The other captures: :class:`mvt.layers.Capture`.
        """
        cfg = self.cfg
        with capturing(self, capture, x) as rec:
            logits = self._forward(x, PassContext(batch=x.shape[0], grid=cfg.grid, rec=rec))
        embed = Footprint(stride=cfg.tubelet, kernel=cfg.tubelet)
        return rec.output(
            logits,
            self._stages(embed),
            input_shape=tuple(x.shape[2:]),
            embed=embed,
            pooling="cls" if cfg.variant in (1, 2) else "mean",
            extras={"variant": cfg.variant, "variant_name": cfg.variant_name},
        )

    def _stages(self, embed: Footprint) -> list[StageInfo]:
        """One stage (models 1, 3, 4), or model 2's spatial stage then its temporal stage of per-frame tokens.

        ``tokens`` counts every token of the stage, prefix tokens included (model 2: one CLS per frame).
        """
        cfg = self.cfg
        t, h, w = cfg.grid
        if cfg.variant != 2:
            prefix = int(cfg.variant == 1)
            return [
                StageInfo(
                    stage=0,
                    grid=cfg.grid,
                    channels=cfg.dim,
                    tokens=prefix + t * h * w,
                    num_prefix=prefix,
                    footprint=embed,
                    blocks=tuple(range(cfg.depth)),
                )
            ]
        tt, th, tw = cfg.tubelet
        frame = Footprint(stride=(tt, th * h, tw * w), kernel=(tt, th * h, tw * w))  # a token = a whole frame
        spatial = StageInfo(
            stage=0,
            grid=cfg.grid,
            channels=cfg.dim,
            tokens=t * (1 + h * w),
            num_prefix=1,
            footprint=embed,
            blocks=tuple(range(cfg.depth)),
        )
        temporal = StageInfo(
            stage=1,
            grid=(t, 1, 1),
            channels=cfg.dim,
            tokens=1 + t,
            num_prefix=1,
            footprint=frame,
            blocks=tuple(range(cfg.depth, cfg.depth + cfg.temporal_depth)),
        )
        return [spatial, temporal]

    def _check_input(self, x: torch.Tensor) -> None:
        cfg = self.cfg
        check_clip(
            x,
            model="ViViT",
            channels=cfg.in_chans,
            frames=cfg.num_frames,
            size=cfg.image_size,
            hint=" (Hugging Face's (B, T, C, H, W) layout must be permuted)",
        )

    def _forward(self, x: torch.Tensor, ctx: PassContext) -> torch.Tensor:
        self._check_input(x)
        cfg = self.cfg
        tok = self._embed(x)  # (B, T*H*W, D)
        if cfg.variant == 1:
            z = self._run(
                self.encoder, tok, ctx, _Pass(0, cfg.grid, Layout("joint", (1, 1, 1), cfg.grid, 1), True)
            )
            return self.head(z[:, 0])
        if cfg.variant == 2:
            return self._classify_frames(self._frame_tokens(tok, ctx), ctx)
        z = self._run(self.encoder, tok, ctx, _Pass(0, cfg.grid, None, False))
        return self.head(z.mean(dim=1))

    def frame_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Model 2's per-frame tokens ``(B, T', D)``: the spatial encoder's CLS output for each time index of
        ``x`` ``(B, 3, T, H, W)``, i.e. the temporal encoder's input. ``forward(x)`` is
        ``classify_frames(frame_tokens(x))``."""
        self._require_frame_tokens()
        self._check_input(x)
        ctx = PassContext(batch=x.shape[0], grid=self.cfg.grid)
        return self._frame_tokens(self._embed(x), ctx)

    def classify_frames(self, z: torch.Tensor) -> torch.Tensor:
        """Model 2's logits ``(B, num_classes)`` from per-frame tokens ``(B, T', D)`` (see :meth:`frame_tokens`)."""
        self._require_frame_tokens()
        return self._classify_frames(z, PassContext(batch=z.shape[0], grid=self.cfg.grid))

    def _require_frame_tokens(self) -> None:
        if self.cfg.variant != 2:
            raise ValueError(
                f"only model 2 (factorised encoder) has per-frame tokens, not model {self.cfg.variant}"
            )

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, 3, T, H, W) -> (B, T'*H'*W', D)

    def _frame_tokens(self, tok: torch.Tensor, ctx: PassContext) -> torch.Tensor:
        """Spatial encoder over tubelet tokens ``(B, T*H*W, D)`` -> per-frame CLS outputs ``(B, T, D)``."""
        cfg = self.cfg
        t, h, w = cfg.grid
        b = tok.shape[0]
        frames = tok.reshape(b * t, h * w, cfg.dim)  # (B*T, H*W, D): one sequence per time index
        z = self._run(self.encoder, frames, ctx, _Pass(0, cfg.grid, spatial_layout(cfg.grid, 1), True))
        return z[:, 0].reshape(b, t, cfg.dim)  # (B, T, D): per-frame CLS outputs

    def _classify_frames(self, z: torch.Tensor, ctx: PassContext) -> torch.Tensor:
        """Temporal encoder over per-frame tokens ``(B, T, D)`` -> logits from its CLS output."""
        grid_t = (z.shape[1], 1, 1)
        z = self._run(
            self.temporal_encoder,
            z,
            ctx,
            _Pass(1, grid_t, Layout("temporal", (1, 1, 1), grid_t, 1), True, self.cfg.depth),
        )
        return self.head(z[:, 0])

    def _run(self, enc: Encoder, x: torch.Tensor, ctx: PassContext, ps: _Pass) -> torch.Tensor:
        """Embed, run ``enc``'s blocks (recording maps into ``ctx``), pass the stage tap, final LayerNorm."""
        x = enc.embed(x)
        p = self.cfg.dropout
        if p and self.training:
            x = F.dropout(x, p, True)
        ctx.stage, ctx.grid = ps.stage, ps.grid
        tap, last = self.stage_taps[ps.stage], len(enc.blocks) - 1
        for j, blk in enumerate(enc.blocks):
            if ps.tap_before_last and j == last:
                x = through_tap(tap, x, ps.grid, num_prefix=enc.num_prefix, batch=ctx.batch)
            ctx.block = ps.first_block + j
            if ctx.rec is not None:
                ctx.rec.enter_block(x)
            # After the last block only the CLS token reaches the head: at inference that block computes
            # the CLS row alone (its map still covers every query).
            cls_only = ps.tap_before_last and j == last and not self.training
            x = blk(x, ps.layout, ctx, enc.num_prefix) if cls_only else blk(x, ps.layout, ctx)
        if not ps.tap_before_last:
            x = through_tap(tap, x, ps.grid, num_prefix=enc.num_prefix, batch=ctx.batch)
        return enc.norm(x)


# -- checkpoint conversion: mvt/models/vivit_hf.py -----------------------------------------------------------

# -- registry -----------------------------------------------------------------------------------------------

HF_REPO = "google/vivit-b-16x2-kinetics400"
HF_FILENAME = "pytorch_model.bin"
"""The hub repo's main branch holds only ``pytorch_model.bin`` (a safetensors copy sits in the unmerged PR #3);
it loads with ``torch.load(weights_only=True)``."""
HF_REVISION = "800b669c0b9b4abdc7522897b363a66c89ec81f8"
"""The commit "Fix model head weights" (Nov 2022) that wrote today's ``pytorch_model.bin`` and ``config.json``;
the later commits on main (506d188 README, 8a7171a preprocessor_config.json #2) change neither file."""

SCENIC_MEAN = SCENIC_STD = (0.5, 0.5, 0.5)
"""Scenic's ViViT pipeline zero-centres pixels to [-1, 1]; the small SynthMotion ViViTs keep it."""


def _spec(name: str) -> ModelSpec:
    """The ``.untrained`` input settings of ``name``: frames and crop from its config, 2 frames apart at
    Kinetics size (scenic's ``vivit_base_k400``), consecutive SynthMotion frames for ``vivit_t*``."""
    cfg = VIVIT_CONFIGS[name]
    size = dict(num_frames=cfg.num_frames, crop_size=cfg.image_size, mean=SCENIC_MEAN, std=SCENIC_STD)
    if name.startswith("vivit_t"):
        return synthmotion_spec(name, **size)
    return kinetics_spec(name, frame_stride=2, **size)


def build_vivit(name: str, num_classes: int = 400, **overrides) -> ViViT:
    """Build the variant ``name`` of :data:`VIVIT_CONFIGS` with random weights (``overrides`` replace config
    fields)."""
    cfg = config_named(VIVIT_CONFIGS, name, "ViViT")
    if overrides:
        cfg = replace(cfg, **overrides)
    return ViViT(cfg, num_classes=num_classes)


CONFIGS = VIVIT_CONFIGS
build = build_vivit
"""Old names, kept for the transformers equivalence tests (which stay as they are); use the ones above."""


def _register() -> None:
    for name, cfg in VIVIT_CONFIGS.items():
        register_variant(
            "vivit", name, build_vivit, _spec(name), convert_hf_vivit if cfg.variant == 1 else None
        )
    register_checkpoint(
        _spec("vivit_b_16x2"),
        "k400",
        weights=WeightsSource(
            kind="hf",
            repo_id=HF_REPO,
            filename=HF_FILENAME,
            revision=HF_REVISION,
            config_file="config.json",
            licence=licences.VIVIT_HUB,
        ),
        description=f"Kinetics-400, {HF_REPO} (HF)",
    )


_register()

__all__ = [
    "VARIANTS",
    "VIVIT_CONFIGS",
    "ViViT",
    "ViViTConfig",
    "build_vivit",
    "config_from_hf",
    "convert_hf_vivit",
    "inflate_patch_kernel",
]
