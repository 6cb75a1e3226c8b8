"""What deleted cells are filled with: fills that depend on which cells are known (imputation), and fills
that do not (blur, mean, the clip's static part).

Deletion and insertion (:func:`viz.faithfulness.deletion_insertion`) show a model a clip in which some token
cells are the clip and the others are *filled*. A fill the model can tell from data measures the fill: blurred
cells scattered over a sharp clip are edges no training clip has, and a model that reacts to them more than
to the actor's removal makes deleting random cells hurt more than deleting the evidence — the metric's own
validity check (the mask as explanation must beat random) then fails. The fills here:

* ``"impute"`` — noisy linear imputation in the spirit of ROAD (Rong et al., ICML 2022): each unknown voxel
  is interpolated from the known voxels around it in space *and time*, then sensor-like noise is added.
  ROAD solves a sparse linear system per image (each missing pixel the weighted mean of its 8 neighbours);
  here the same smooth interpolation is reached by a push-pull pyramid (Gortler et al. 1996): known values
  are averaged down a 3-D pyramid (2× per level), and unknown voxels are filled from the coarser levels on
  the way up (trilinear). Cost: one pyramid per perturbed clip, a few milliseconds at 16×112².
* ``"static"`` — a data-derived fill: each voxel becomes the temporal median of its pixel over the clip
  (what stays still there: background and static objects), plus noise. Whatever moves is removed; the rest
  of the scene is kept.
* ``"blur"`` / ``"mean"`` — the clip blurred by a separable Gaussian, or each channel's mean (RISE's
  substrates).

Noise (``impute`` and ``static``) is Gaussian with the clip's own temporal noise level, estimated robustly
per channel: ``1.4826 · median |x - median_t(x)|``, and drawn from a generator seeded per call so curves are
reproducible. All fills work on the normalised clip the model sees, ``(1, C, T, H, W)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

FILLS = ("impute", "static", "blur", "mean")
KNOWN_DEPENDENT = ("impute",)
"""Fills that are computed from the known cells (one per perturbed clip); the others are one clip."""


def _gaussian_kernel(sigma: float, size: int) -> torch.Tensor:
    radius = min(int(math.ceil(3.0 * sigma)), size - 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()


def blur(x: torch.Tensor, sigma: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian blur of ``x`` (B, C, T, H, W) over T, H, W with per-axis ``sigma`` (voxels).

    Normalised convolution: the result at the border is the weighted mean of the voxels inside the clip
    (no zero or mirror padding artefacts); ``sigma <= 0`` leaves an axis alone.
    """
    if x.ndim != 5:
        raise ValueError(f"blur expects (B, C, T, H, W), got {tuple(x.shape)}")
    b, c = x.shape[:2]
    out = x.float()
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=out.dtype, device=x.device)
    for axis, s in enumerate(sigma):
        if s <= 0 or x.shape[2 + axis] == 1:
            continue
        k = _gaussian_kernel(float(s), int(x.shape[2 + axis])).to(x.device)
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = k.numel()
        pad = [0, 0, 0]
        pad[axis] = k.numel() // 2
        weight = k.view(shape)
        out = torch.nn.functional.conv3d(
            out.reshape(b * c, 1, *out.shape[2:]), weight, padding=tuple(pad)
        ).reshape(b, c, *out.shape[2:])  # (B, C, T, H, W)
        ones = torch.nn.functional.conv3d(ones, weight, padding=tuple(pad))
    return (out / ones).to(x.dtype)


def substrate_like(x: torch.Tensor, kind: str = "blur", sigma: Sequence[float] | None = None) -> torch.Tensor:
    """The uninformative clip that deletion moves to and insertion starts from, shaped like ``x``.

    ``"blur"``: :func:`blur` with ``sigma`` (default ``(2, H/20, W/20)``: 2 frames, ~11 px at 224);
    ``"mean"``: each channel's mean over (T, H, W).
    """
    if kind == "mean":
        return x.mean(dim=(2, 3, 4), keepdim=True).expand_as(x).clone()
    if kind == "blur":
        if sigma is None:
            sigma = (2.0, x.shape[3] / 20.0, x.shape[4] / 20.0)
        return blur(x, sigma)
    raise ValueError(f"unknown substrate {kind!r}; use one of {FILLS}")


def noise_level(x: torch.Tensor) -> torch.Tensor:
    """``(1, C, 1, 1, 1)`` robust per-channel temporal noise of ``x`` ``(1, C, T, H, W)``: 1.4826 × the median
    absolute deviation from each pixel's temporal median."""
    med = x.median(dim=2, keepdim=True).values
    mad = (x - med).abs().flatten(2).median(dim=-1).values  # (1, C)
    return (1.4826 * mad)[..., None, None, None]


def _noise(x: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    z = torch.randn(x.shape, generator=g, dtype=torch.float32).to(x.device, x.dtype)
    return z * noise_level(x)


def static_fill(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The clip's temporal median at every frame, plus noise at the clip's level: ``(1, C, T, H, W)``."""
    med = x.median(dim=2, keepdim=True).values.expand_as(x)
    return med + _noise(x, seed)


def push_pull(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Smooth interpolation of ``x`` ``(B, C, T, H, W)`` from the voxels where ``known`` ``(B, 1, T, H, W)``
    is true; known voxels keep their values. Nothing known: each channel's mean of ``x``."""
    w = known.to(x.dtype)
    v = x * w
    levels = [(v, w)]
    while max(levels[-1][0].shape[2:]) > 1:
        v, w = levels[-1]
        k = tuple(2 if n > 1 else 1 for n in v.shape[2:])
        levels.append((F.avg_pool3d(v, k, k, ceil_mode=True), F.avg_pool3d(w, k, k, ceil_mode=True)))
    v, w = levels[-1]
    fallback = x.mean(dim=(2, 3, 4), keepdim=True)
    est = torch.where(w > 0, v / w.clamp(min=1e-12), fallback)
    for v, w in reversed(levels[:-1]):
        up = F.interpolate(est, size=v.shape[2:], mode="trilinear", align_corners=False)
        est = v + (1.0 - w) * up  # known share of each cell kept, the rest from the coarser level
    return torch.where(known, x, est)


def fill(
    x: torch.Tensor,
    known: torch.Tensor | None,
    kind: str,
    *,
    seed: int = 0,
    blur_sigma: Sequence[float] | None = None,
) -> torch.Tensor:
    """The clip ``x`` ``(1, C, T, H, W)`` where ``known`` ``(B, 1, T, H, W)`` is true, the ``kind`` fill elsewhere:
    ``(B, C, T, H, W)``. ``known=None`` gives the fill alone (``(1, C, T, H, W)``; for ``impute`` with nothing
    known: each channel's mean, plus noise)."""
    if kind not in FILLS:
        raise ValueError(f"unknown substrate {kind!r}; use one of {FILLS}")
    if kind == "impute":
        k = torch.zeros((1, 1, *x.shape[2:]), dtype=torch.bool, device=x.device) if known is None else known
        est = push_pull(x.expand(k.shape[0], *x.shape[1:]), k)
        return torch.where(k, x, est + _noise(x, seed))
    base = static_fill(x, seed) if kind == "static" else substrate_like(x, kind, blur_sigma)
    return base if known is None else torch.where(known, x, base)
