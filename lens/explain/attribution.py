"""captum attributions of a video classifier, each returned as a float32 ``(T, H, W)`` volume on the input.

One function per method, all with the signature ``fn(model, x, target, counted, **options) -> tensor`` and
run through :func:`run` (eval mode, a detached copy of ``x``, the default target, NaN clean-up); the
registry in :mod:`lens.explain.methods` names them. How a 5-D attribution ``(1, 3, T, H, W)`` becomes a volume:

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

import viz

Progress = Callable[[float], None]


class Counted:
    """The model as a function that counts samples and reports progress (``total`` is set per method)."""

    def __init__(self, model: nn.Module, progress: Progress | None):
        self.model, self.total, self.progress, self.seen = model, 1, progress, 0

    def expect(self, total: int) -> Counted:
        self.total = max(1, int(total))
        return self

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
    grid = per_patch.reshape(vals.shape[0] * patch[0], patch[1], patch[2])  # (T', H', W') patches
    return viz.to_frames(grid.astype(np.float32), shape, footprint=rec.embed)


# -- the methods (registered in lens.explain.methods) ----------------------------------------------------------------


def saliency(model: nn.Module, x: torch.Tensor, target: int, f: Counted) -> torch.Tensor:
    from captum.attr import Saliency

    attr = Saliency(f.expect(1)).attribute(x.requires_grad_(), target=target, abs=True)
    return attr[0].amax(dim=0)


def input_x_gradient(model: nn.Module, x: torch.Tensor, target: int, f: Counted) -> torch.Tensor:
    from captum.attr import InputXGradient

    return InputXGradient(f.expect(1)).attribute(x.requires_grad_(), target=target)[0].sum(0)


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    f: Counted,
    *,
    n_steps: int = 16,
    internal_batch_size: int = 2,
) -> torch.Tensor:
    from captum.attr import IntegratedGradients

    ibs = max(1, min(internal_batch_size, n_steps))
    attr = IntegratedGradients(f.expect(n_steps)).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=n_steps, internal_batch_size=ibs
    )
    return attr[0].sum(0)


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    f: Counted,
    *,
    window: tuple[int, int, int, int] | None = None,
    strides: tuple[int, int, int, int] | int | None = None,
    perturbations_per_eval: int = 1,
) -> torch.Tensor:
    from captum.attr import Occlusion

    shape = tuple(int(s) for s in x.shape[2:])
    win = tuple(window) if window is not None else (3,) + default_cell(shape, (1, 1, 1))
    if len(win) != 4:
        raise ValueError(f"occlusion window must be (3, t, h, w), got {win}")
    st = strides if strides is not None else win
    n = math.prod(
        (d - w) // s + 1 for d, w, s in zip(x.shape[1:], win, st if isinstance(st, tuple) else (st,) * 4)
    )
    attr = Occlusion(f.expect(n + 1)).attribute(
        x,
        sliding_window_shapes=win,
        strides=st,
        baselines=0.0,
        target=target,
        perturbations_per_eval=perturbations_per_eval,
    )
    return attr[0].sum(0)


def gradcam(model: nn.Module, x: torch.Tensor, target: int, f: Counted, *, stage: int = -1) -> torch.Tensor:
    from captum.attr import LayerAttribution, LayerGradCam

    shape = tuple(int(s) for s in x.shape[2:])
    taps = getattr(model, "stage_taps", None)
    if taps is None or len(taps) == 0:
        raise ValueError("gradcam needs model.stage_taps (identity modules seeing (B, C, T, H, W) tokens)")
    cam = LayerGradCam(f.expect(1), taps[stage]).attribute(x, target=target, relu_attributions=True)
    if cam.ndim != 5:
        raise ValueError(f"stage tap {stage} produced a {cam.ndim}-D map; expected (B, 1, T, H, W)")
    if cam.shape[-2] == 1 and cam.shape[-1] > 1 and shape[1] > 1:
        return torch.from_numpy(_sequence_cam(model, x, cam, stage, shape))
    return LayerAttribution.interpolate(cam, shape, interpolate_mode="trilinear")[0, 0]


def feature_ablation(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    f: Counted,
    *,
    cell: tuple[int, int, int] | None = None,
    align: tuple[int, int, int] = (2, 16, 16),
    perturbations_per_eval: int = 1,
) -> torch.Tensor:
    from captum.attr import FeatureAblation

    shape = tuple(int(s) for s in x.shape[2:])
    c = tuple(cell) if cell is not None else default_cell(shape, align)
    mask = _cells(shape, c).to(x.device)
    attr = FeatureAblation(f.expect(int(mask.max()) + 2)).attribute(
        x, baselines=0.0, target=target, feature_mask=mask, perturbations_per_eval=perturbations_per_eval
    )
    return attr[0].sum(0)


Attribution = Callable[..., torch.Tensor]
"""``fn(model, x, target, counted, **options) -> (T, H, W) tensor``: one of the functions above."""


def run(
    fn: Attribution,
    model: nn.Module,
    x: torch.Tensor,
    target: int | None = None,
    *,
    progress: Progress | None = None,
    **options,
) -> np.ndarray:
    """Attribution ``fn`` of ``target`` (default: the predicted class) for one clip ``x`` ``(1, 3, T, H, W)``:
    a float32 ``(T, H, W)`` numpy volume at the input's resolution (NaN and inf become 0)."""
    if x.ndim != 5 or x.shape[0] != 1:
        raise ValueError(f"attribute expects one clip (1, 3, T, H, W), got shape {tuple(x.shape)}")
    was_training = model.training
    model.eval()
    x = x.detach().clone()
    try:
        if target is None:
            with torch.no_grad():
                target = int(model(x)[0].argmax())
        vol = fn(model, x, target, Counted(model, progress), **options)
    finally:
        model.train(was_training)
    out = vol.detach().float().cpu().numpy().astype(np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
