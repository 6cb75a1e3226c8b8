"""Turn a decoded clip into a model input, following a model's spec."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .zoo import ModelSpec


def preprocess(clip, spec: ModelSpec, *, device: str | torch.device = "cpu") -> torch.Tensor:
    """Resize (short side to ``spec.resize_size``), centre-crop ``spec.crop_size``, normalise.

    ``clip`` is a :class:`mvt.video.Clip` or a uint8 array ``(T, H, W, 3)``. Returns ``(1, 3, T, S, S)`` float32
    with ``(x / 255 - mean) / std`` per channel.
    """
    frames = clip.frames if hasattr(clip, "frames") else clip
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (T, 3, H, W)
    h, w = x.shape[-2:]
    short = min(h, w)
    if short != spec.resize_size:
        scale = spec.resize_size / short
        size = (max(spec.crop_size, round(h * scale)), max(spec.crop_size, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    h, w = x.shape[-2:]
    top, left = (h - spec.crop_size) // 2, (w - spec.crop_size) // 2
    x = x[:, :, top : top + spec.crop_size, left : left + spec.crop_size]  # (T, 3, S, S)
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.permute(1, 0, 2, 3).unsqueeze(0).contiguous()  # (1, 3, T, S, S)
