"""Write H.264 ``.mp4`` (browser-playable) or GIF: :func:`write_video`."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np

from .common import VideoError, _detail, _display_name

# ----------------------------------------------------------------------------------------------- writing


def write_video(
    frames: np.ndarray | Sequence[np.ndarray],
    path: str | os.PathLike,
    fps: float,
    *,
    codec: str = "h264",
    crf: int = 23,
) -> str:
    """Write uint8 RGB frames ``(T, H, W, 3)`` (or gray ``(T, H, W)``) as a video and return the path.

    ``codec="h264"``: H.264 yuv420p in MP4 with ``+faststart``, which browsers (Chromium, Firefox, Safari)
    play as is; odd widths/heights are padded by one replicated edge pixel (yuv420p needs even sizes).
    ``codec="gif"``: an animated GIF (adaptive palette per frame, loops forever).
    """
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)  # gray (T, H, W) -> (T, H, W, 3)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or arr.shape[0] == 0:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with T >= 1, got {arr.dtype} {arr.shape}")
    if not (isinstance(fps, (int, float, Fraction, np.number)) and math.isfinite(float(fps)) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    out_path = os.fspath(path)
    name = _display_name(out_path)
    try:
        if codec == "gif":
            _write_gif(arr, out_path, float(fps))
        elif codec in ("h264", "libx264"):
            _write_h264(arr, out_path, fps, crf)
        else:
            raise ValueError(f"codec must be 'h264' or 'gif', got {codec!r}")
    except (av.FFmpegError, OSError) as e:
        raise VideoError(
            f"{name}: the video could not be written; check the folder exists and is writable.{_detail(e)}"
        ) from e
    return out_path


def _write_h264(arr: np.ndarray, path: str, fps: float, crf: int) -> None:
    _, h, w, _ = arr.shape
    if h % 2 or w % 2:
        arr = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # (T, even H, even W, 3)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(path, "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=rate, options={"crf": str(int(crf)), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = arr.shape[2], arr.shape[1], "yuv420p"
        for rgb in arr:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            ):
                out.mux(packet)
        for packet in stream.encode():  # flush
            out.mux(packet)


def _write_gif(arr: np.ndarray, path: str, fps: float) -> None:
    from PIL import Image  # lazy: only GIF output needs Pillow

    images = [Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE, colors=256) for f in arr]
    duration_ms = max(20, round(1000.0 / fps))  # browsers treat < 20 ms delays as 100 ms
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=duration_ms,
        loop=0,
        optimize=False,
    )
