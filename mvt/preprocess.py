"""Turn decoded frames into a model input, following a model's spec: one resize/crop, one normalisation.

Every path uses these two steps, so what a model sees is the same everywhere:

* :func:`resize_and_crop`: uint8 frames ``(T, H, W, 3)`` → the uint8 frames the model sees ``(T, S, S, 3)``
  (short side to ``spec.resize_size``, bilinear with antialiasing, centre crop ``spec.crop_size``). These are
  also the frames a picture of the model's attention is drawn on.
* :func:`normalise`: those frames (or a batch of clips) → a float tensor ``(N, 3, T, S, S)``,
  ``(x / 255 - mean) / std``. It refuses frames that are not ``spec.crop_size`` square, so a clip cannot be
  resized twice.

:func:`preprocess` is the two in a row (inference); training feeds SynthMotion clips, which are already crop
size, to :func:`normalise`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .zoo import ModelSpec


def resize_and_crop(frames: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` → uint8 ``(T, S, S, 3)``, ``S = spec.crop_size``: the short side resized to
    ``spec.resize_size`` (bilinear, antialiased, rounded back to uint8; no resize when it already is), then the
    centre ``S × S`` crop (the crop's top-left is rounded down). A side that would end up shorter than ``S`` is
    resized to ``S``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    h, w = frames.shape[1:3]
    short, size = min(h, w), spec.crop_size
    if short != spec.resize_size:
        scale = spec.resize_size / short
        out = (max(size, round(h * scale)), max(size, round(w * scale)))
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
        x = F.interpolate(x, size=out, mode="bilinear", align_corners=False, antialias=True)
        frames = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (T, H', W', 3)
        h, w = out
    if min(h, w) < size:
        raise ValueError(
            f"frames of {h}×{w} are smaller than the {size}² crop (spec.resize_size < crop_size?)"
        )
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(frames[:, top : top + size, left : left + size])  # (T, S, S, 3)


def normalise(frames: np.ndarray, spec: ModelSpec, *, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 frames ``(T, S, S, 3)`` or clips ``(N, T, S, S, 3)`` at ``S = spec.crop_size`` → float32
    ``(1 or N, 3, T, S, S)`` with ``(x / 255 - mean) / std`` per channel."""
    frames = np.asarray(frames)
    if frames.ndim not in (4, 5) or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 frames (T, H, W, 3) or clips (N, T, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    if frames.shape[-3:-1] != (spec.crop_size, spec.crop_size):
        raise ValueError(
            f"frames are {frames.shape[-3]}×{frames.shape[-2]}, the model wants {spec.crop_size}²: "
            "resize_and_crop them first"
        )
    clips = frames if frames.ndim == 5 else frames[None]
    x = torch.from_numpy(np.ascontiguousarray(clips)).to(device)
    x = x.permute(0, 4, 1, 2, 3).float().div_(255.0)  # (N, 3, T, S, S)
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1, 1)
    return ((x - mean) / std).contiguous()


def preprocess(clip, spec: ModelSpec, *, device: str | torch.device = "cpu") -> torch.Tensor:
    """A decoded clip → the model input ``(1, 3, T, S, S)``: :func:`resize_and_crop`, then :func:`normalise`.

    ``clip`` is a :class:`mvt.video.Clip` or uint8 frames ``(T, H, W, 3)``.
    """
    frames = clip.frames if hasattr(clip, "frames") else clip
    return normalise(resize_and_crop(frames, spec), spec, device=device)
