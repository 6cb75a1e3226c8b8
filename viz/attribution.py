"""captum attributions of a video classifier, each returned as a float32 ``(T, H, W)`` volume on the input.

The one place in ``viz`` (with ``viz.pipeline``) that runs a model. Methods and how a 5-D attribution
``(1, 3, T, H, W)`` becomes a volume:

* ``saliency``: ``|∂y/∂x|``, max over colour channels (Simonyan et al.);
* ``input_x_gradient``, ``integrated_gradients``: signed, summed over channels (IG from a zero baseline —
  the dataset mean after normalisation — with ``n_steps`` and ``internal_batch_size`` exposed);
* ``occlusion``: tubelet windows ``window=(3, t, h, w)`` moved by ``strides`` (default: the window), signed
  score drop summed over channels;
* ``gradcam``: ``LayerGradCam`` on ``model.stage_taps[stage]`` (an ``nn.Identity`` every model routes a stage's
  grid tokens through as ``(B, C, T', H', W')``), ReLU'd, upsampled with ``LayerAttribution.interpolate``
  (trilinear) to the clip; a tap carrying a 1-D pooled sequence (HVT, ``(B, C, T, 1, N)``) is painted
  through the tokens' spans instead (one extra forward to read them);
* ``feature_ablation``: ``FeatureAblation`` over token-aligned cells (a ``feature_mask`` of ``cell``-sized
  boxes whose sides are multiples of ``align``, e.g. the patch stride), one forward per cell.

``progress(fraction)`` is called after every forward batch. Defaults are sized for a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

ATTRIBUTION_METHODS = (
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "occlusion",
    "gradcam",
    "feature_ablation",
)
_ALIASES = {"ig": "integrated_gradients", "ixg": "input_x_gradient", "ablation": "feature_ablation"}


class _Counted:
    """The model as a function that counts samples and reports progress."""

    def __init__(self, model: nn.Module, total: int, progress: Callable[[float], None] | None):
        self.model, self.total, self.progress, self.seen = model, max(1, total), progress, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.seen += int(x.shape[0])
        if self.progress is not None:
            self.progress(min(1.0, self.seen / self.total))
        return out


def _cells(shape: tuple[int, int, int], cell: tuple[int, int, int]) -> torch.Tensor:
    """``(1, 1, T, H, W)`` int64 feature mask of ``cell``-sized boxes in raster order."""
    ids = [torch.arange(n) // c for n, c in zip(shape, cell)]
    nt, nh, nw = (int(i.max()) + 1 for i in ids)
    mask = (ids[0][:, None, None] * nh + ids[1][None, :, None]) * nw + ids[2][None, None, :]
    return mask[None, None]


def default_cell(shape: tuple[int, int, int], align: tuple[int, int, int] = (2, 16, 16), per_axis: int = 4):
    """Cells of about ``shape / per_axis`` rounded up to multiples of ``align`` (token-aligned)."""
    return tuple(max(a, a * math.ceil(n / per_axis / a)) for n, a in zip(shape, align))


def _sequence_cam(model: nn.Module, x: torch.Tensor, cam: torch.Tensor, stage: int, shape) -> np.ndarray:
    """Grad-CAM of a 1-D token sequence (HVT's taps see ``(B, C, T, 1, N)``): each token's value is painted
    onto the patches of its pooling window (``ModelOutput.extras["spans"]``), then onto the clip."""
    from .render import to_frames

    with torch.no_grad():
        rec = model.forward_with_attention(x)
    spans, patch = rec.extras.get("spans"), rec.extras.get("patch_grid")
    if spans is None or patch is None:
        raise ValueError("this stage tap carries a 1-D token sequence but the model reports no spans")
    sp = np.asarray(spans[stage if stage >= 0 else len(spans) + stage])
    vals = cam[0, 0, :, 0, :].detach().double().numpy()  # (G, N)
    n_patch = int(np.prod(patch))
    cover = np.zeros((sp.shape[0], n_patch))
    for i, (a, b) in enumerate(sp):
        cover[i, a:b] = 1.0
    num, den = vals @ cover, cover.sum(0)
    per_patch = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)  # (G, n_patch)
    grid = per_patch.reshape(vals.shape[0] * patch[0], patch[1], patch[2])
    return to_frames(grid.astype(np.float32), shape, footprint=rec.embed)


def attribute(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    target: int | None = None,
    *,
    progress: Callable[[float], None] | None = None,
    n_steps: int = 16,
    internal_batch_size: int = 2,
    window: tuple[int, int, int, int] | None = None,
    strides: tuple[int, int, int, int] | int | None = None,
    stage: int = -1,
    cell: tuple[int, int, int] | None = None,
    align: tuple[int, int, int] = (2, 16, 16),
    perturbations_per_eval: int = 1,
) -> np.ndarray:
    """Attribution of ``target`` (default: the predicted class) for one clip ``x`` ``(1, 3, T, H, W)``.

    Returns a float32 ``(T, H, W)`` numpy volume at the input's resolution; see the module docstring for
    each ``method`` (one of :data:`ATTRIBUTION_METHODS`).
    """
    from captum.attr import (
        FeatureAblation,
        InputXGradient,
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        Occlusion,
        Saliency,
    )

    method = _ALIASES.get(method, method)
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"unknown attribution method {method!r}; known: {ATTRIBUTION_METHODS}")
    if x.ndim != 5 or x.shape[0] != 1:
        raise ValueError(f"attribute expects one clip (1, 3, T, H, W), got shape {tuple(x.shape)}")
    was_training = model.training
    model.eval()
    shape = tuple(int(s) for s in x.shape[2:])
    x = x.detach().clone()
    try:
        if target is None:
            with torch.no_grad():
                target = int(model(x)[0].argmax())
        if method == "saliency":
            f = _Counted(model, 1, progress)
            attr = Saliency(f).attribute(x.requires_grad_(), target=target, abs=True)
            vol = attr[0].amax(dim=0)
        elif method == "input_x_gradient":
            f = _Counted(model, 1, progress)
            vol = InputXGradient(f).attribute(x.requires_grad_(), target=target)[0].sum(0)
        elif method == "integrated_gradients":
            f = _Counted(model, n_steps, progress)
            ibs = max(1, min(internal_batch_size, n_steps))
            attr = IntegratedGradients(f).attribute(
                x, baselines=torch.zeros_like(x), target=target, n_steps=n_steps, internal_batch_size=ibs
            )
            vol = attr[0].sum(0)
        elif method == "occlusion":
            win = tuple(window) if window is not None else (3,) + default_cell(shape, (1, 1, 1))
            if len(win) != 4:
                raise ValueError(f"occlusion window must be (3, t, h, w), got {win}")
            st = strides if strides is not None else win
            n = math.prod(
                (d - w) // s + 1
                for d, w, s in zip(x.shape[1:], win, st if isinstance(st, tuple) else (st,) * 4)
            )
            f = _Counted(model, n + 1, progress)
            attr = Occlusion(f).attribute(
                x,
                sliding_window_shapes=win,
                strides=st,
                baselines=0.0,
                target=target,
                perturbations_per_eval=perturbations_per_eval,
            )
            vol = attr[0].sum(0)
        elif method == "gradcam":
            taps = getattr(model, "stage_taps", None)
            if taps is None or len(taps) == 0:
                raise ValueError(
                    "gradcam needs model.stage_taps (identity modules seeing (B, C, T, H, W) tokens)"
                )
            f = _Counted(model, 1, progress)
            layer = taps[stage]
            cam = LayerGradCam(f, layer).attribute(x, target=target, relu_attributions=True)
            if cam.ndim != 5:
                raise ValueError(f"stage tap {stage} produced a {cam.ndim}-D map; expected (B, 1, T, H, W)")
            if cam.shape[-2] == 1 and cam.shape[-1] > 1 and shape[1] > 1:
                vol = torch.from_numpy(_sequence_cam(model, x, cam, stage, shape))
            else:
                vol = LayerAttribution.interpolate(cam, shape, interpolate_mode="trilinear")[0, 0]
        else:  # feature_ablation
            c = tuple(cell) if cell is not None else default_cell(shape, align)
            mask = _cells(shape, c).to(x.device)
            f = _Counted(model, int(mask.max()) + 2, progress)
            attr = FeatureAblation(f).attribute(
                x,
                baselines=0.0,
                target=target,
                feature_mask=mask,
                perturbations_per_eval=perturbations_per_eval,
            )
            vol = attr[0].sum(0)
    finally:
        model.train(was_training)
    out = vol.detach().float().cpu().numpy().astype(np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
