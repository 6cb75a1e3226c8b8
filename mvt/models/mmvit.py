"""MMViT: multiscale multiview video transformer with cross-view attention at every scale stage.

Paper: Liu et al., "MMViT: Multiscale Multiview Vision Transformers" (Interspeech 2023, arXiv 2305.00104).
There is no public code and no released checkpoint (see ``shared/research/models.md`` §4): this module is our
reading of the paper's description, built from this project's MViTv2 blocks (:mod:`mvt.models.mvit`).
Checkpoint: ``mmvit_s.k400init`` is *not* an MMViT training. It loads torchvision's MViT v2-S Kinetics-400 file
``mvit_v2_s-ae3be167.pth`` through :func:`convert_from_mvit` (every view tower gets MViT v2-S's weights, the
cross-view blocks start as the identity), so it predicts exactly what MViT v2-S predicts until fine-tuned.

What the paper says, and is implemented as such: several *views* of the same input are made by patch
embeddings with different overlapping kernels and strides; every view runs MViT-style scale stages with
pooling attention; at each stage a cross-attention block concatenates the views' tokens, runs one pooled
attention over them, splits the result back per view and adds it to each view's residual; the CLS token of
the first view feeds the classifier.

Choices where the paper is silent (and why):

1. **Two views, differing in spatial resolution.** View 0 is MViT v2-S's embedding (kernel 3×7×7, stride
   2×4×4, padding 1×3×3, 8×56² tokens for 16×224²). View 1 has kernel 3×14×14, stride 2×8×8, padding 1×6×6:
   a half-resolution grid (8×28²), still overlapping (14 > 8). The paper's views differ in resolution (a
   third-party reading puts view ``i`` at 1/2^i of view 0). Half resolution costs about a quarter of view 0,
   and the frames stay aligned, so the two towers see the same instants. The kernel is chosen so that MViT
   weights carry over exactly: a 7×7 kernel on a 2×2-average-pooled clip is the same as the 14×14 kernel made
   by repeating every tap over 2×2 pixels and dividing by 4, with padding 6 = 2·3 (see
   :func:`resize_patch_kernel`). With ``k400init`` view 1 is therefore *exactly* MViT v2-S run on the
   half-resolution clip (a test checks this), not a perturbed model.
2. **A view tower is MViT v2-S's block stack, unchanged** (:class:`~mvt.models.mvit.MultiscaleBlock`, the same
   block configs for every view). The relative-position tables keep view 0's nominal sizes in every view and
   are resampled at run time for view 1's smaller grids, as MViT does for any non-nominal input; keys and
   values are pooled with the same strides in every view (view 1's pooled keys are 8×4² where view 0's are
   8×7²). Each view keeps its own CLS token (the reused blocks keep one first, and it gives view 0's CLS a
   summary of the other view to attend to in the cross block); only view 0's CLS reaches ``norm`` and ``head``.
3. **One cross-view block at the end of every stage** (after the stage's tower blocks, the last stage
   included, so the head sees fused tokens). Per view it is an MViTv2 block with the structure of the stage's
   last block: LayerNorm, its own q/k/v projection, stride-1 query pooling and the stage's key/value pooling
   (depthwise conv + LayerNorm), residual pooling, its own output projection, then LayerNorm + MLP. The
   attention is one softmax per head over the concatenated keys of all views (query rows of all views
   together), split back per view. Per-view output projections rather than a shared one, so that each view's
   half of the block is a plain MViT block that initialises from that view's weights. **No relative position
   bias** in cross blocks: tokens of different grids share no table, and the towers already encode position.
   The grid does not change, so there is no skip pooling.
4. **Cross blocks start as the identity**: their attention output projection (``attn.project.0``) and MLP
   output (``mlp.3``) are zero-initialised (in every build, ReZero-style), so a model initialised from a
   single-view MViT predicts exactly as that MViT and training grows the cross-view path from zero.
   ``convert_from_mvit`` fills the other cross-block weights deterministically from the stage's last tower
   block (its attention without the relative-position tables), so even before fine-tuning the cross maps are
   attention patterns of trained weights, not noise.

Records: ``forward_with_attention`` returns the tower maps (``kind="joint"``, ``view=v``, blocks 0…depth-1
numbered as in MViT) and one map per cross block (``kind="cross"``, ``view=None``, block ``depth + stage``)
whose ``q_segments``/``k_segments`` name the view of every query and key run; its ``q_grid``/``k_grid``,
``in_grid`` and pools are view 0's (every view uses the same pooling windows). ``stages`` has one
:class:`~mvt.outputs.StageInfo` per (stage, view), stage-major. ``extras["view_embeds"]`` maps each view to its
embedding footprint. ``stage_taps`` (one per stage) carry **view 0's** tokens after the stage's cross block
(the last stage's: before view 0's last tower block, which computes the CLS the head reads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .. import licences
from ..layers import (
    ALL_CAPTURES,
    Capture,
    Recorder,
    capturing,
    drop_path,
    init_linear_and_norm,
    record_attention,
)
from ..outputs import Footprint, Grid, ModelOutput, Segment, StageInfo
from ..weights import WeightsSource
from .contract import (
    check_clip,
    config_named,
    grow_footprint,
    identity_taps,
    kinetics_spec,
    register_checkpoint,
    register_variant,
    synthmotion_spec,
    through_tap,
)
from .multiscale import MultiscaleBlock, MViTBlockConfig, PositionalEncoding, conv_pool
from .mvit import MVIT_CONFIGS, TV_URLS, MViT, MViTConfig, MViTStage

# --------------------------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class MMViTView:
    """The patch embedding that makes one view: a Conv3d with this kernel, stride and padding."""

    kernel: Grid
    stride: Grid
    padding: Grid

    @property
    def footprint(self) -> Footprint:
        return Footprint(self.stride, self.kernel, self.padding)


@dataclass(frozen=True)
class MMViTConfig:
    """A whole MMViT as data: the views and the tower every view runs.

    ``tower`` is an MViTv2 config (stage layout, pooling strides, input size); its patch embedding must be
    ``views[0]``'s. The other views replace only the patch embedding.
    """

    tower: MViTConfig
    views: tuple[MMViTView, ...]
    cross_drop_path: bool = True
    """Cross blocks use the stochastic-depth rate of the stage's last tower block."""

    def __post_init__(self) -> None:
        t, v0 = self.tower, self.views[0]
        if (t.patch_kernel, t.patch_stride, t.patch_padding) != (v0.kernel, v0.stride, v0.padding):
            raise ValueError("MMViTConfig: views[0] must be the tower's own patch embedding")
        if not (t.rel_pos and t.residual_pool and t.dim_mul_in_att and t.q_pool_every_block):
            raise ValueError("MMViTConfig: the view towers are MViTv2-style (rel-pos, residual pooling)")
        if len(self.views) < 2:
            raise ValueError("MMViTConfig: an MMViT needs at least two views")

    @property
    def stages(self) -> tuple[MViTStage, ...]:
        return self.tower.stages

    def stage_last_blocks(self) -> list[MViTBlockConfig]:
        """The last tower block config of each stage (the cross block follows it)."""
        cfgs = self.tower.block_configs()
        return [[b for b in cfgs if b.stage == s][-1] for s in range(len(self.tower.stages))]

    def cross_block_config(self, stage: int) -> MViTBlockConfig:
        """Per-view config of the cross block of ``stage``: the stage's last block, keeping its grid and width,
        without relative positions (``in_grid`` is unused then)."""
        last = self.stage_last_blocks()[stage]
        pad = tuple(k // 2 for k in self.tower.pool_kernel)
        return replace(
            last,
            index=-1,
            dim_in=last.dim_out,
            attn_dim=last.dim_out,
            q_pool=conv_pool(self.tower.pool_kernel, (1, 1, 1), pad),
            skip_pool=None,
            rel_pos=False,
            drop_path=last.drop_path if self.cross_drop_path else 0.0,
        )


def view_grid(view: MMViTView, tower: MViTConfig) -> Grid:
    """Nominal token grid of ``view``: :attr:`MViTConfig.embed_grid` with the view's patch stride."""
    return replace(tower, patch_stride=view.stride).embed_grid


def resize_positions(pos: torch.Tensor, src: tuple[int, ...], dst: tuple[int, ...]) -> torch.Tensor:
    """Absolute position embeddings ``(prod(src), C)`` on the grid ``src`` resampled (bilinear / linear,
    ``align_corners=False``) onto ``dst`` → ``(prod(dst), C)``; a copy when the grids agree."""
    if tuple(src) == tuple(dst):
        return pos.clone()
    c = pos.shape[-1]
    mode = {1: "linear", 2: "bilinear"}[len(src)]
    grid = pos.T.reshape(1, c, *src)  # (N, C) -> (1, C, *src)
    out = F.interpolate(grid, size=tuple(dst), mode=mode, align_corners=False)  # (1, C, *dst)
    return out.reshape(c, -1).T.contiguous()  # (prod(dst), C)


def _mmvit_from(tower: MViTConfig, *extra: MMViTView) -> MMViTConfig:
    view0 = MMViTView(tower.patch_kernel, tower.patch_stride, tower.patch_padding)
    return MMViTConfig(tower=tower, views=(view0, *extra))


# Half spatial resolution, same frames: the 7×7 / stride-4 embedding of a 2×2-average-pooled clip.
_HALF_RES = MMViTView(kernel=(3, 14, 14), stride=(2, 8, 8), padding=(1, 6, 6))

# The same for mvit_t's 4×12×12 / stride-4×8×8 embedding: 4×24×24 / stride 4×16×16, centred on each 16×16 cell.
_HALF_RES_T = MMViTView(kernel=(4, 24, 24), stride=(4, 16, 16), padding=(0, 4, 4))

MMVIT_CONFIGS: dict[str, MMViTConfig] = {
    # Towers = MViT v2-S (16×224²): view 0 8×56² → 8×7², view 1 8×28² → 8×4².
    "mmvit_s": _mmvit_from(MVIT_CONFIGS["mvit_v2_s"], _HALF_RES),
    # Towers = mvit_t (16×112² SynthMotion): view 0 4×14² → 4×4², view 1 4×7² → 4×2².
    "mmvit_t": _mmvit_from(MVIT_CONFIGS["mvit_t"], _HALF_RES_T),
}

# --------------------------------------------------------------------------------------------- modules


class CrossViewBlock(nn.Module):
    """One attention over the concatenated tokens of all views, split back per view, plus per-view MLPs.

    ``views[v]`` holds view ``v``'s half under MViT block names (``norm1``, ``attn.qkv``, ``attn.pool_{q,k,v}``,
    ``attn.project.0``, ``norm2``, ``mlp.0``, ``mlp.3``); only its parameters are used, the attention is joint.
    """

    def __init__(self, cfg: MViTBlockConfig, num_views: int):
        super().__init__()
        if cfg.dim_in != cfg.dim_out or cfg.skip_pool is not None or cfg.rel_pos:
            raise ValueError("a cross-view block keeps width and grid and has no relative positions")
        self.cfg = cfg
        self.views = nn.ModuleList(MultiscaleBlock(cfg) for _ in range(num_views))

    def forward(
        self,
        xs: list[torch.Tensor],
        grids: list[Grid],
        rec: Recorder | None = None,
        stage: int = 0,
        block: int = 0,
    ) -> tuple[list[torch.Tensor], list[Grid]]:
        """``xs[v]`` (B, 1 + |grids[v]|, C) → same shapes and the q grids; with ``rec`` the cross map is
        recorded as ``block`` of ``stage``."""
        cfg, p = self.cfg, (self.cfg.drop_path if self.training else 0.0)
        qs, ks, vs, q_grids, k_grids = [], [], [], [], []
        for blk, x, grid in zip(self.views, xs, grids):
            q, k, v, q_grid, k_grid = blk.attn.pooled_qkv(blk.norm1(x), grid)
            qs.append(q)
            ks.append(k)
            vs.append(v)
            q_grids.append(q_grid)
            k_grids.append(k_grid)
        where = {}
        if rec is not None:  # the grids and pools are view 0's; the segments name every view's runs
            where = dict(
                stage=stage,
                block=block,
                kind="cross",
                q_grid=q_grids[0],
                k_grid=k_grids[0],
                num_prefix=1,
                q_segments=tuple(Segment(v, 1, g) for v, g in enumerate(q_grids)),
                k_segments=tuple(Segment(v, 1, g) for v, g in enumerate(k_grids)),
                in_grid=grids[0],
                q_pool=cfg.q_pool,
                kv_pool=cfg.kv_pool,
                skip_pool=cfg.skip_pool,
                residual_pool=cfg.residual_pool,
            )
        out = record_attention(
            torch.cat(qs, dim=1).transpose(1, 2),  # (B, heads, ΣNq, d)
            torch.cat(ks, dim=1).transpose(1, 2),  # (B, heads, ΣNk, d)
            torch.cat(vs, dim=1).transpose(1, 2),
            rec,
            scale=self.views[0].attn.scale,
            **where,
        )
        outs = out.transpose(1, 2).split([q.shape[1] for q in qs], dim=1)  # per view (B, Nq_v, heads, d)
        new = []
        for blk, x, o, q in zip(self.views, xs, outs, qs):
            if cfg.residual_pool:  # MViTv2: add the pooled query, CLS row excluded
                o = torch.cat((o[:, :1], o[:, 1:] + q[:, 1:]), dim=1)
            o = blk.attn.project(o.flatten(2))  # (B, Nq_v, C)
            x = x + drop_path(o, p, self.training)
            new.append(x + drop_path(blk.mlp(blk.norm2(x)), p, self.training))
        return new, q_grids


class ViewTower(nn.Module):
    """One view: its patch embedding, CLS token and an MViTv2 block stack (torchvision names)."""

    def __init__(self, view: MMViTView, tower: MViTConfig, block_cfgs: tuple[MViTBlockConfig, ...]):
        super().__init__()
        dim0 = tower.stages[0].dim
        self.conv_proj = nn.Conv3d(3, dim0, view.kernel, stride=view.stride, padding=view.padding)
        self.pos_encoding = PositionalEncoding(dim0, view_grid(view, tower), abs_pos=tower.abs_pos)
        self.blocks = nn.ModuleList(MultiscaleBlock(bc) for bc in block_cfgs)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        """Clip (B, 3, T, H, W) → tokens (B, 1 + T'H'W', C) with CLS first, and the grid (T', H', W')."""
        cells = self.conv_proj(x)  # (B, C, T', H', W')
        grid = tuple(cells.shape[2:])
        return self.pos_encoding(cells.flatten(2).transpose(1, 2), grid), grid  # type: ignore[return-value]


class MMViT(nn.Module):
    """Multiview MViT classifier: per-view MViTv2 towers, a cross-view block per stage, view 0's CLS → head."""

    def __init__(self, cfg: MMViTConfig, num_classes: int = 400):
        super().__init__()
        self.cfg = cfg
        self.block_cfgs = cfg.tower.block_configs()
        self.cross_cfgs = tuple(cfg.cross_block_config(s) for s in range(len(cfg.stages)))
        self.views = nn.ModuleList(ViewTower(v, cfg.tower, self.block_cfgs) for v in cfg.views)
        self.cross = nn.ModuleList(CrossViewBlock(c, len(cfg.views)) for c in self.cross_cfgs)
        dim = self.block_cfgs[-1].dim_out
        self.norm = nn.LayerNorm(dim, eps=cfg.tower.norm_eps)
        self.head = nn.Sequential(nn.Dropout(cfg.tower.head_dropout), nn.Linear(dim, num_classes))
        self.stage_taps = identity_taps(len(cfg.stages))
        self._init_weights()

    def _init_weights(self) -> None:
        init_linear_and_norm(self)
        for tower in self.views:
            for p in tower.pos_encoding.parameters():
                nn.init.trunc_normal_(p, std=0.02)
        for name, p in self.cross.named_parameters():
            if name.endswith(_ZERO_INIT):
                nn.init.zeros_(p)

    @property
    def stage_blocks(self) -> list[tuple[int, ...]]:
        """Tower block indices of each stage."""
        return [tuple(b.index for b in self.block_cfgs if b.stage == s) for s in range(len(self.cfg.stages))]

    def _run(self, x: torch.Tensor, rec: Recorder | None):
        """Shared trunk of both paths: logits and per-stage grids; with ``rec``, the tower maps (per view)
        and one cross map per stage."""
        x = check_clip(x, model="MMViT", image_ok=True)  # (B, 3, T, H, W); an image is one frame
        toks, grids = map(list, zip(*(tower.embed(x) for tower in self.views)))
        stages = []
        depth = len(self.block_cfgs)
        for s, indices in enumerate(self.stage_blocks):
            # The head reads view 0's CLS, computed from the tokens entering the last tower block (the cross
            # blocks start as identities): the last stage is tapped there, else its Grad-CAM would be zero.
            tap_early = s == len(self.stage_blocks) - 1 and len(indices) > 1
            for v, tower in enumerate(self.views):
                for i in indices:
                    if tap_early and v == 0 and i == indices[-1]:
                        toks[0] = through_tap(self.stage_taps[s], toks[0], grids[0], num_prefix=1)
                    if rec is not None:
                        rec.enter_block(toks[v])
                    toks[v], grids[v] = tower.blocks[i](toks[v], grids[v], rec, view=v)
            toks, grids = self.cross[s](toks, grids, rec, stage=s, block=depth + s)
            if not tap_early:
                toks[0] = through_tap(self.stage_taps[s], toks[0], grids[0], num_prefix=1)
            stages.append((s, list(grids), [t.shape[-1] for t in toks], indices))
        logits = self.head(self.norm(toks[0][:, 0]))  # view 0's CLS token
        return logits, stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 3, T, H, W) → logits (B, num_classes), with fused attention."""
        return self._run(x, None)[0]

    captures = ALL_CAPTURES

    def forward_with_attention(self, x: torch.Tensor, *, capture: Capture = Capture.EAGER) -> ModelOutput:
        """Logits plus every tower block's map (per view), one cross map per stage and a StageInfo per
        (stage, view); the captures: :class:`mvt.layers.Capture` (``FLOW`` keeps the tokens entering the
        tower blocks)."""
        input_shape = tuple(x.shape[2:]) if x.ndim == 5 else (1, *x.shape[2:])
        with capturing(self, capture, x) as rec:
            logits, stages = self._run(x, rec)
        footprints = [view.footprint for view in self.cfg.views]
        infos = []
        for s, grids, channels, indices in stages:
            for v, grid in enumerate(grids):
                footprints[v] = grow_footprint(footprints[v], (self.block_cfgs[i].q_pool for i in indices))
                infos.append(
                    StageInfo(
                        stage=s,
                        grid=grid,
                        channels=channels[v],
                        tokens=1 + grid[0] * grid[1] * grid[2],
                        num_prefix=1,
                        footprint=footprints[v],
                        view=v,
                        blocks=(*indices, len(self.block_cfgs) + s),
                    )
                )
        return rec.output(
            logits,
            infos,
            input_shape=input_shape,
            embed=self.cfg.views[0].footprint,
            pooling="cls",
            extras={"view_embeds": {v: view.footprint for v, view in enumerate(self.cfg.views)}},
        )


_ZERO_INIT = ("attn.project.0.weight", "attn.project.0.bias", "mlp.3.weight", "mlp.3.bias")
"""Cross-block parameters that start at zero, making every cross block the identity."""

# --------------------------------------------------------------------------------------------- converter


def resize_patch_kernel(weight: torch.Tensor, src: MMViTView, dst: MMViTView) -> torch.Tensor:
    """Patch-embedding weight (C, 3, kt, kh, kw) for ``src`` → one for ``dst``.

    When ``dst`` is ``src`` scaled by integer factors ``r`` per axis (kernel, stride and padding all ×r), every
    tap is repeated over an r-block and divided by the block size: the result applied to a clip equals
    ``src``'s weight applied to the clip average-pooled by ``r`` (exactly, zero padding included). Otherwise
    the kernel is resized trilinearly and scaled by the ratio of kernel volumes (so a constant input gives
    about the same response).
    """
    if dst.kernel == src.kernel:
        return weight.clone()
    ratio = [ds // ss for ds, ss in zip(dst.stride, src.stride)]
    exact = all(
        ds == r * ss and dk == r * sk and dp == r * sp
        for ds, ss, dk, sk, dp, sp, r in zip(
            dst.stride, src.stride, dst.kernel, src.kernel, dst.padding, src.padding, ratio
        )
    )
    if exact:
        out = weight
        for axis, r in zip((2, 3, 4), ratio):
            out = out.repeat_interleave(r, dim=axis)  # (C, 3, r·kt, r·kh, r·kw)
        return out / math.prod(ratio)
    out = F.interpolate(weight.float(), size=dst.kernel, mode="trilinear", align_corners=False)
    return (out * (math.prod(src.kernel) / math.prod(dst.kernel))).to(weight.dtype)


def _mvit_keys(tower: MViTConfig) -> set[str]:
    with torch.device("meta"):
        return set(MViT(tower, num_classes=1).state_dict())


def convert_from_mvit(state: dict, cfg: MMViTConfig) -> dict:
    """Map an MViTv2 state dict (torchvision keys, e.g. ``mvit_v2_s-ae3be167.pth``) onto MMViT keys.

    * ``views.{v}.{conv_proj,pos_encoding,blocks}.*`` ← the MViT's, for every view; view ``v``'s patch kernel
      via :func:`resize_patch_kernel`, its absolute positions (towers with ``abs_pos``) via
      :func:`resize_positions`;
    * ``cross.{s}.views.{v}.*`` ← the MViT's last block of stage ``s`` without its relative-position tables,
      with ``attn.project.0`` and ``mlp.3`` set to zero (each cross block is the identity);
    * ``norm``, ``head`` ← the MViT's.

    A state dict already in MMViT keys (``views.*``) is returned unchanged. Pure: the input is not modified.
    Raises ``KeyError`` on unknown or missing MViT keys and ``ValueError`` on shape mismatches.
    """
    if any(k.startswith("views.") for k in state):
        return dict(state)
    expected = _mvit_keys(cfg.tower)
    unknown, missing = sorted(set(state) - expected), sorted(expected - set(state))
    if unknown or missing:
        raise KeyError(
            f"not an MViTv2 state dict for this tower: {len(unknown)} unknown keys (e.g. {unknown[:3]}), "
            f"{len(missing)} missing keys (e.g. {missing[:3]})"
        )
    out: dict[str, torch.Tensor] = {}
    grid0 = view_grid(cfg.views[0], cfg.tower)
    for v, view in enumerate(cfg.views):
        grid = view_grid(view, cfg.tower)
        for k, t in state.items():
            if k.startswith(("conv_proj.", "pos_encoding.", "blocks.")):
                if k == "conv_proj.weight":
                    t = resize_patch_kernel(t, cfg.views[0], view)
                elif k == "pos_encoding.spatial_pos":  # the view's own H'×W' grid
                    t = resize_positions(t, grid0[1:], grid[1:])
                elif k == "pos_encoding.temporal_pos":
                    t = resize_positions(t, grid0[:1], grid[:1])
                out[f"views.{v}.{k}"] = t
    for s, last in enumerate(cfg.stage_last_blocks()):
        prefix = f"blocks.{last.index}."
        for k, t in state.items():
            if not k.startswith(prefix) or k.split(".")[-1].startswith("rel_pos_"):
                continue
            name = k[len(prefix) :]
            if name.startswith("project."):
                raise ValueError(
                    f"stage {s}'s last block {last.index} changes width; it cannot seed a cross block"
                )
            for v in range(len(cfg.views)):
                out[f"cross.{s}.views.{v}.{name}"] = torch.zeros_like(t) if name in _ZERO_INIT else t
    for k in ("norm.weight", "norm.bias", "head.1.weight", "head.1.bias"):
        out[k] = state[k]
    return out


# --------------------------------------------------------------------------------------------- registry


def build_mmvit(name: str, num_classes: int = 400) -> MMViT:
    """Build the variant ``name`` of :data:`MMVIT_CONFIGS` with random weights (cross blocks = identity)."""
    return MMViT(config_named(MMVIT_CONFIGS, name, "MMViT"), num_classes=num_classes)


K400INIT_DESCRIPTION = "not fine-tuned: MViT v2-S Kinetics-400 towers + zero-init cross-view blocks (predicts exactly as MViT v2-S)"


def _register() -> None:
    tower = MMVIT_CONFIGS["mmvit_s"].tower
    spec = kinetics_spec("mmvit_s", num_frames=tower.num_frames, frame_stride=4, crop_size=tower.image_size)
    convert_s = partial(convert_from_mvit, cfg=MMVIT_CONFIGS["mmvit_s"])
    register_variant("mmvit", "mmvit_s", build_mmvit, spec, convert_s)
    register_checkpoint(  # trained: MViT v2-S's predictions, exactly; the description says it is no MMViT training
        spec,
        "k400init",
        weights=WeightsSource(kind="url", url=TV_URLS["mvit_v2_s"], licence=licences.TORCHVISION_K400),
        description=K400INIT_DESCRIPTION,
    )
    tower = MMVIT_CONFIGS["mmvit_t"].tower
    spec = synthmotion_spec("mmvit_t", num_frames=tower.num_frames, crop_size=tower.image_size)
    register_variant(
        "mmvit", "mmvit_t", build_mmvit, spec, partial(convert_from_mvit, cfg=MMVIT_CONFIGS["mmvit_t"])
    )


_register()
