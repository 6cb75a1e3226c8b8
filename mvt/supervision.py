"""Auxiliary supervision from SynthMotion's actor masks: where the actor is, and how it is oriented, per time.

A model that pools each frame into one token before any temporal mixing (ViViT model 2's per-frame CLS) can
learn left/right/up/down and grow/shrink from local motion inside a tubelet and still carry no trace of the
actor's position or orientation in those tokens (a linear probe finds none), so its temporal encoder cannot
tell a clockwise swing from a counter-clockwise one. ``--mask-weight`` adds a regression of the actor's
per-time mask moments (position, orientation, direction of motion) from a stage's tokens
(:class:`MaskMoments`): training then has to keep "where, and which way" in every time step's tokens, which is
what rotation sense is made of.

``--step-class-weight`` asks for more: every time step of a stage's tokens must tell the clip's class on its
own (:class:`StepClasses`). Every SynthMotion class shows its motion inside every tubelet (a rotating actor
turns by 8-12° per frame), so in principle a per-frame encoder could tell rotation sense from one tubelet.
Measured on ``vivit_t2`` (1200 steps, weight 2): top-1 rose from 84.5 % to 88.5 %, but one frame token alone
still did not tell cw from ccw (an MLP probe: 52 %); pairs of neighbouring tokens did (97 %), which is what
:mod:`mvt.train.frame_cache` then trains the temporal encoder to read.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NUM_MOMENTS = 6
"""Per time bin: centroid x, y (in [-1, 1]), the shape's orientation ``((xx - yy), 2xy) / (xx + yy)`` and the
direction of its motion inside the bin (a unit vector, zero when it does not move)."""

MIN_SPEED_PX = 0.5
"""Centroid speed (pixels per frame) below which a bin's motion direction is zero (grow/shrink move ~0.05)."""


def mask_moments(masks: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Moments of the actor masks ``(N, T, H, W)`` bool over ``bins`` equal runs of frames.

    Returns ``(moments (N, bins, 6) float32, valid (N, bins) bool)``: the centroid ``(x, y)`` in ``[-1, 1]``
    (image left/top = -1) and the orientation of the second moments, ``(σxx - σyy, 2σxy) / (σxx + σyy)``
    (in ``[-1, 1]``; ``(1, 0)`` = wide, ``(-1, 0)`` = tall, ``(0, ±1)`` = diagonal), of all mask pixels in a
    bin; then the unit direction ``(dx, dy)`` from the centroid of the bin's first frame to that of its last
    (zero below :data:`MIN_SPEED_PX` per frame, or with one frame per bin). Over time the direction turns one
    way for a clockwise swing and the other way for a counter-clockwise one, and, unlike the position, it is
    visible inside one tubelet. A bin with an empty frame is zero and not valid."""
    n, t, h, w = masks.shape
    if t % bins:
        raise ValueError(f"{t} frames do not split into {bins} equal time bins")
    per_bin = t // bins
    frames = masks.reshape(n, bins, per_bin, h, w)
    m = frames.sum(2, dtype=np.float32)  # (N, bins, H, W) pixel counts
    area = m.sum((2, 3))  # (N, bins)
    valid = frames.any((3, 4)).all(2)  # every frame of the bin shows the actor
    safe = np.where(valid, area, 1.0)
    ys = (np.arange(h, dtype=np.float32) + 0.5) / h * 2 - 1  # pixel centres in [-1, 1]
    xs = (np.arange(w, dtype=np.float32) + 0.5) / w * 2 - 1
    my, mx = m.sum(3), m.sum(2)  # (N, bins, H), (N, bins, W) marginals
    cy, cx = (my @ ys) / safe, (mx @ xs) / safe
    syy = (my @ ys**2) / safe - cy**2
    sxx = (mx @ xs**2) / safe - cx**2
    sxy = np.einsum("nbhw,h,w->nb", m, ys, xs) / safe - cx * cy
    spread = np.maximum(sxx + syy, 1e-8)
    ends = frames[:, :, [0, -1]].astype(np.float32)  # (N, bins, 2, H, W): first and last frame of each bin
    end_area = np.maximum(ends.sum((3, 4)), 1.0)
    ex = (ends.sum(3) @ np.arange(w, dtype=np.float32)) / end_area  # (N, bins, 2) centroid x in pixels
    ey = (ends.sum(4) @ np.arange(h, dtype=np.float32)) / end_area
    dx, dy = ex[..., 1] - ex[..., 0], ey[..., 1] - ey[..., 0]
    dist = np.hypot(dx, dy)
    moving = dist > MIN_SPEED_PX * max(per_bin - 1, 1)  # one frame per bin: first == last, dist 0
    ux, uy = (np.where(moving, d / np.maximum(dist, 1e-8), 0.0) for d in (dx, dy))
    out = np.stack([cx, cy, (sxx - syy) / spread, 2 * sxy / spread, ux, uy], axis=-1)  # (N, bins, 6)
    return np.where(valid[..., None], out, 0.0).astype(np.float32), valid


class PerTimeHead(nn.Module):
    """A linear read-out of each time step of a stage tap's grid ``(B, C, T, H, W)``: tokens averaged over
    space, layer-normalised (no affine, so the residual stream's scale is removed), then one linear map shared
    by the time steps. Only :attr:`proj` has parameters; give them to the optimizer (they are not part of the
    model and are not saved). Subclasses define ``loss`` and record each weighted value in :attr:`history`."""

    def __init__(self, channels: int, outputs: int, *, stage: int, weight: float) -> None:
        super().__init__()
        self.proj = nn.Linear(channels, outputs)
        self.stage, self.weight = stage, weight
        self.history: list[float] = []
        """The weighted loss of every ``loss`` call, for the training log."""

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        tokens = grid.mean(dim=(3, 4)).transpose(1, 2)  # (B, C, T, H, W) -> (B, T, C)
        return self.proj(F.layer_norm(tokens, tokens.shape[-1:]))  # (B, T, outputs)

    def _record(self, loss: torch.Tensor) -> torch.Tensor:
        out = self.weight * loss
        self.history.append(float(out.detach()))
        return out


class MaskMoments(PerTimeHead):
    """Regress :func:`mask_moments` from each time step of a stage tap (see :class:`PerTimeHead`)."""

    def __init__(self, channels: int, *, stage: int = -1, weight: float = 1.0) -> None:
        super().__init__(channels, NUM_MOMENTS, stage=stage, weight=weight)

    def loss(self, grid: torch.Tensor, masks: np.ndarray) -> torch.Tensor:
        """Weighted mean squared error over the valid time bins of ``masks`` ``(B, T_frames, H, W)``."""
        target, valid = mask_moments(masks, grid.shape[2])
        pred = self(grid)
        keep = torch.from_numpy(valid)
        err = F.mse_loss(pred[keep], torch.from_numpy(target)[keep]) if keep.any() else pred.sum() * 0
        return self._record(err)


class StepClasses(PerTimeHead):
    """Classify the clip from each time step of a stage tap (see :class:`PerTimeHead`): cross-entropy against
    the clip's label at every step."""

    def __init__(
        self, channels: int, num_classes: int, *, stage: int = 0, weight: float = 1.0, smoothing: float = 0.1
    ) -> None:
        super().__init__(channels, num_classes, stage=stage, weight=weight)
        self.smoothing = smoothing

    def loss(self, grid: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Weighted mean cross-entropy of every time step's logits against its clip's label ``(B,)``."""
        logits = self(grid)  # (B, T, K)
        b, t, k = logits.shape
        target = labels[:, None].expand(b, t).reshape(b * t)
        return self._record(F.cross_entropy(logits.reshape(b * t, k), target, label_smoothing=self.smoothing))
