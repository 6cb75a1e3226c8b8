"""Volumes → pixels: footprint-true upsampling, fixed-colormap heat overlays, strips.

Deterministic by construction: colormaps are fixed 256-entry uint8 tables computed here from fixed anchor
colours (no matplotlib), normalisation and blending are plain float32 numpy with explicit rounding, so the
same input gives byte-identical output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import torch

from mvt.outputs import Footprint, Grid

from .geometry import PAINT, axis_cover

# Anchor colours sampled at 17 evenly spaced points of the perceptually uniform maps of van der Walt & Smith
# (viridis, inferno; CC0), linearly interpolated to 256 entries.
_ANCHORS = {
    "inferno": [
        (0, 0, 4), (11, 7, 36), (33, 12, 74), (61, 9, 101), (87, 16, 110), (113, 25, 110), (138, 34, 106),
        (163, 44, 97), (188, 55, 84), (210, 70, 68), (228, 90, 49), (241, 115, 29), (249, 142, 9),
        (252, 172, 17), (249, 203, 53), (242, 234, 105), (252, 255, 164),
    ],
    "viridis": [
        (68, 1, 84), (72, 24, 106), (71, 45, 123), (66, 64, 134), (59, 82, 139), (51, 99, 141), (44, 114, 142),
        (38, 130, 142), (33, 145, 140), (31, 160, 136), (40, 174, 128), (63, 188, 115), (94, 201, 98),
        (132, 212, 75), (173, 220, 48), (216, 226, 25), (253, 231, 37),
    ],
}  # fmt: skip

# Turbo (Mikhailov 2019) as its published polynomial approximation.
_TURBO = (
    (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943),
    (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604),
    (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973),
)

COLORMAPS = ("inferno", "viridis", "turbo", "gray")


@cache
def colormap(name: str = "inferno") -> np.ndarray:
    """The fixed ``(256, 3)`` uint8 lookup table of a colormap (read-only)."""
    x = np.linspace(0.0, 1.0, 256)
    if name in _ANCHORS:
        a = np.asarray(_ANCHORS[name], dtype=np.float64)
        xs = np.linspace(0.0, 1.0, len(a))
        lut = np.stack([np.interp(x, xs, a[:, c]) for c in range(3)], axis=1)
    elif name == "turbo":
        powers = np.stack([x**i for i in range(6)], axis=1)
        lut = np.clip(powers @ np.asarray(_TURBO).T, 0.0, 1.0) * 255.0
    elif name == "gray":
        lut = np.repeat(x[:, None] * 255.0, 3, axis=1)
    else:
        raise ValueError(f"unknown colormap {name!r}; known: {COLORMAPS}")
    out = np.rint(lut).astype(np.uint8)
    out.setflags(write=False)
    return out


# -- upsampling --------------------------------------------------------------------------------------------


def to_frames(
    volume: np.ndarray | torch.Tensor,
    shape: Grid | Sequence[int],
    footprint: Footprint | None = None,
    input_shape: Grid | Sequence[int] | None = None,
    *,
    paint: str | None = None,
    dtype: type = np.float32,
) -> np.ndarray:
    """Upsample a ``(t, h, w)`` token volume to a clip's ``(T, H, W)`` (``dtype``, float32 by default).

    With ``footprint`` (token ``i`` covers ``[i*stride - padding, … + kernel)`` on the model input, per
    axis, frames included) every pixel gets a weighted mean of the tokens whose footprint covers it, with
    separable per-axis weights of :func:`viz.geometry.axis_cover`; ``paint`` picks them (default
    :data:`viz.geometry.PAINT`, chosen by measurement — see there): ``"nearest"`` gives every pixel the
    token whose centre is nearest (each token paints its own cell, inside its footprint), ``"box"`` averages
    every covering token equally, ``"tent"`` weights each by a tent peaking at its centre. Non-overlapping
    kernels (tubelets) are painted as exact constant tiles by all three. Pixels no token covers (a pooled
    key grid whose windows skip input positions) get the volume's minimum, so they show as the coldest
    colour without stretching the colour scale. The arithmetic is float64 (so equal token values paint
    equal pixels). ``input_shape`` is the model input the footprint refers to when it differs from
    ``shape``: the painted volume is then resized linearly. Without a footprint: plain trilinear
    interpolation (``align_corners=False``).
    """
    vol = torch.as_tensor(np.asarray(volume) if not torch.is_tensor(volume) else volume)
    vol = vol.detach().double().cpu()
    if vol.ndim != 3:
        raise ValueError(f"to_frames expects a (T, H, W) volume, got shape {tuple(vol.shape)}")
    shape = tuple(int(s) for s in shape)
    if footprint is None:
        if tuple(vol.shape) == shape:
            return vol.numpy().astype(dtype, copy=True)
        out = torch.nn.functional.interpolate(
            vol[None, None], size=shape, mode="trilinear", align_corners=False
        )
        return out[0, 0].numpy().astype(dtype)
    mode = PAINT if paint is None else paint
    target = tuple(int(s) for s in (input_shape or shape))
    ct, ch, cw = (
        axis_cover(n, g, s, k, p, mode)
        for n, g, s, k, p in zip(target, vol.shape, footprint.stride, footprint.kernel, footprint.padding)
    )
    v = vol.numpy()
    num = (ct @ v.reshape(v.shape[0], -1)).reshape(target[0], v.shape[1], v.shape[2])  # (T, h, w)
    num = np.matmul(ch, num)  # (T, H, w)
    num = np.matmul(num, cw.T)  # (T, H, W)
    # the weights are separable, so their sum over tokens is an outer product of per-axis sums
    den = ct.sum(1)[:, None, None] * ch.sum(1)[None, :, None] * cw.sum(1)[None, None, :]
    floor = v.min() if v.size else 0.0
    out = np.where(den > 0, num / np.maximum(den, 1e-300), floor)
    if target != shape:
        t = torch.from_numpy(out)[None, None]
        out = torch.nn.functional.interpolate(t, size=shape, mode="trilinear", align_corners=False)[
            0, 0
        ].numpy()
    return out.astype(dtype, copy=False)


# -- colour ------------------------------------------------------------------------------------------------


NORMS = ("clip", "frame", "contrast")
"""How values map to colours: ``clip`` min–max over the clip, ``frame`` min–max per frame, ``contrast`` the
clip's 2nd to 99.5th percentile (values outside saturate), so that one hot token or a flat floor does not
wash out the rest of the map."""

CONTRAST_PERCENTILES = (2.0, 99.5)
"""The percentiles ``contrast`` maps to 0 and 1."""


def value_range(volume: np.ndarray, norm: str = "clip") -> tuple[float, float]:
    """The values that ``norm`` maps to 0 and 1 over the whole clip (``frame``: the extremes of any frame's
    range, for a colour bar); ``(lo, lo)`` for a constant volume."""
    v = np.nan_to_num(np.asarray(volume, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if norm in ("clip", "frame"):
        return float(v.min()), float(v.max())
    if norm == "contrast":
        lo, hi = np.percentile(v, CONTRAST_PERCENTILES)
        if hi <= lo:  # mostly one value: fall back to the full range
            return float(v.min()), float(v.max())
        return float(lo), float(hi)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def normalize(volume: np.ndarray, norm: str = "clip") -> np.ndarray:
    """Values to [0, 1]: min-max over the whole clip (``"clip"``) or each frame (``"frame"``), or the clip's
    :data:`CONTRAST_PERCENTILES` (``"contrast"``, clipped); constant → 0."""
    v = np.asarray(volume, dtype=np.float32)
    v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    if norm == "contrast":
        lo, hi = value_range(v, norm)
        if hi <= lo:
            return np.zeros_like(v)
        return np.clip((v - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    if norm == "clip":
        axes: tuple[int, ...] = tuple(range(v.ndim))
    elif norm == "frame":
        axes = tuple(range(1, v.ndim))
    else:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    lo = v.min(axis=axes, keepdims=True)
    hi = v.max(axis=axes, keepdims=True)
    span = hi - lo
    return np.where(span > 0, (v - lo) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


def colorbar(cmap: str = "inferno", stops: int = 9, alpha: float | None = None) -> list[str]:
    """``stops`` evenly spaced colours of a colormap from 0 to 1 as ``#rrggbb`` (a colour bar's gradient).
    With ``alpha`` (the overlay's opacity), each stop carries the opacity :func:`overlay` gives that value
    with ``weighted=True`` (``α·√v``) as ``#rrggbbaa``."""
    lut = colormap(cmap)
    xs = np.linspace(0.0, 1.0, max(2, int(stops)))
    out = []
    for x in xs:
        r, g, b = (int(c) for c in lut[int(round(float(x) * 255))])
        a = "" if alpha is None else f"{int(round(255 * min(1.0, max(0.0, alpha * float(np.sqrt(x)))))):02x}"
        out.append(f"#{r:02x}{g:02x}{b:02x}{a}")
    return out


def colorize(volume: np.ndarray, cmap: str = "inferno", norm: str = "clip") -> np.ndarray:
    """``(..., H, W)`` values → uint8 ``(..., H, W, 3)`` colours through the fixed LUT."""
    idx = np.rint(normalize(volume, norm) * 255.0).astype(np.int64)
    return colormap(cmap)[idx]


def overlay(
    frames: np.ndarray,
    volume: np.ndarray,
    alpha: float = 0.5,
    norm: str = "clip",
    cmap: str = "inferno",
    footprint: Footprint | None = None,
    weighted: bool = False,
) -> np.ndarray:
    """Blend a heat volume over uint8 frames ``(T, H, W, 3)``: ``(1-α)·frame + α·colour``, uint8 (integer
    arithmetic with α in steps of 1/256).

    ``volume`` at frame resolution is used as is; any other shape is upsampled with :func:`to_frames`
    (with ``footprint`` when given). ``norm`` is ``"clip"`` (one scale for the whole clip, so frames compare)
    or ``"frame"`` (each frame stretched). ``weighted``: the opacity of each pixel is ``α·√v`` (``v`` the
    normalised value), so cold regions keep the frame as it is and the heat shows in proportion — readable
    where a flat blend darkens the whole frame with the colormap's low end (the square root keeps weak but
    real structure visible next to one hot token).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"overlay expects frames (T, H, W, 3), got shape {frames.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    vol = np.asarray(volume, dtype=np.float32)
    if vol.shape != frames.shape[:3]:
        vol = to_frames(vol, frames.shape[:3], footprint=footprint)
    heat = colorize(vol, cmap=cmap, norm=norm)
    if weighted:  # per-pixel alpha in steps of 1/256: α·√v
        a = np.rint(np.sqrt(normalize(vol, norm)) * (alpha * 256)).astype(np.uint16)[
            ..., None
        ]  # (T, H, W, 1)
    else:
        a = np.uint16(
            round(alpha * 256)
        )  # integer blend: exact, deterministic, alpha 0 / 1 give frames / heat
    out = (frames.astype(np.uint16) * (256 - a) + heat.astype(np.uint16) * a + 128) >> 8
    return out.astype(np.uint8)


# -- layout ------------------------------------------------------------------------------------------------


def strip(
    rows: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    max_frames: int = 8,
    gap: int = 2,
    label_width: int = 96,
    font_size: int | None = None,
    title: str | None = None,
) -> np.ndarray:
    """One uint8 image: a row per entry of ``rows`` (each ``(T, H, W, 3)``), at most ``max_frames`` frames
    (evenly subsampled) side by side; optional ``labels`` drawn in a left margin, in Pillow's default font at
    ``font_size`` pixels (``None``: its small bitmap font); an optional ``title`` in a band above."""
    if not rows:
        raise ValueError("strip needs at least one row")
    rows = [np.asarray(r) for r in rows]
    h = max(r.shape[1] for r in rows)
    w = max(r.shape[2] for r in rows)
    n = min(max(r.shape[0] for r in rows), max_frames)
    margin = label_width if labels else 0
    out = np.full((len(rows) * (h + gap) - gap, margin + n * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for i, r in enumerate(rows):
        idx = np.unique(np.linspace(0, r.shape[0] - 1, min(n, r.shape[0])).round().astype(int))
        for j, t in enumerate(idx):
            y, x = i * (h + gap), margin + j * (w + gap)
            out[y : y + r.shape[1], x : x + r.shape[2]] = r[t]
    if labels or title:
        from PIL import Image, ImageDraw, ImageFont

        font = ImageFont.load_default() if font_size is None else ImageFont.load_default(size=font_size)
        line_h = 12 if font_size is None else int(round(font_size * 1.2))
        img = Image.fromarray(out)
        draw = ImageDraw.Draw(img)
        for i, text in enumerate(labels or []):
            lines = _wrap(str(text), lambda s: draw.textlength(s, font=font), margin - 8)
            top = i * (h + gap) + h // 2 - line_h // 2 * len(lines)
            for k, line in enumerate(lines):
                draw.text((4, top + line_h * k), line, fill=(0, 0, 0), font=font)
        if title:
            band = Image.new("RGB", (img.width, line_h + 8), (255, 255, 255))
            ImageDraw.Draw(band).text((4, 4), str(title), fill=(0, 0, 0), font=font)
            both = Image.new("RGB", (img.width, img.height + band.height), (255, 255, 255))
            both.paste(band, (0, 0))
            both.paste(img, (0, band.height))
            img = both
        out = np.asarray(img, dtype=np.uint8).copy()
    return out


def _wrap(text: str, width_of: Callable[[str], float], width: float) -> list[str]:
    """Greedy word wrap of ``text`` into lines of at most ``width`` (a word longer than that gets its own line)."""
    lines: list[str] = []
    for word in text.split():
        if lines and width_of(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]
