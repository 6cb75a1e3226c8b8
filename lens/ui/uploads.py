"""Uploads a browser cannot play: a preview it can, made with PyAV (no ffmpeg binary), the original kept.

Browsers play H.264 (8-bit 4:2:0) in MP4/MOV and VP8/VP9/AV1 in WebM; an animated GIF is not a video to a
``<video>`` element. For anything else — HEVC, 10-bit or 4:2:2 H.264, ProRes, MPEG-4 part 2, AVI, MKV, GIF —
:func:`prepare` writes a small H.264 preview (at most :data:`PREVIEW_SIDE` pixels on the long side, the first
:data:`PREVIEW_SECONDS` seconds, the clip's own frame times) into the caller's folder. The analysis always
reads the original file: the preview is only for looking at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

import mvt

from ..core.storage import file_sha256

PREVIEW_SIDE = 640
PREVIEW_SECONDS = 120.0
PLAYABLE = {
    ("h264", "mp4"): ("yuv420p", "yuvj420p"),
    ("vp8", "webm"): ("yuv420p",),
    ("vp9", "webm"): ("yuv420p",),
    ("av1", "webm"): ("yuv420p",),
}
"""(codec, container) → the pixel formats every current browser plays as is."""


def _container(info: mvt.VideoInfo) -> str:
    name = info.container.split(",")
    if "mp4" in name or "mov" in name:
        return "mp4"
    if "webm" in name or "matroska" in name:
        return "webm" if Path(info.path).suffix.lower() == ".webm" else "mkv"
    return name[0]


def playable(info: mvt.VideoInfo) -> bool:
    """True when browsers play the file as it is."""
    formats = PLAYABLE.get((info.codec, _container(info)))
    return formats is not None and info.pix_fmt in formats


@dataclass(frozen=True)
class Upload:
    """An upload as the app uses it: ``original`` is analysed; ``preview`` (when set) is what the clip box
    plays; ``note`` says what was done, for the person who uploaded it."""

    original: str
    preview: str | None = None
    note: str = ""

    @property
    def shown(self) -> str:
        return self.preview or self.original


def original(shown: str | None, upload: dict | None) -> str | None:
    """The file to analyse: the original upload when the clip box shows its preview (matched by content, since
    the web server hands back a copy), else the file shown."""
    if shown and upload and file_sha256(shown) == upload.get("sha"):
        return upload["original"]
    return shown


def prepare(path: str | os.PathLike, folder: str | os.PathLike) -> Upload:
    """Check an upload (a :class:`mvt.VideoError` if it is not a usable video) and make a browser-playable
    preview in ``folder`` when needed."""
    info = mvt.probe(path)
    if playable(info):
        return Upload(os.fspath(path))
    out = Path(folder) / f"preview-{file_sha256(path)[:16]}.mp4"
    seconds = (
        transcode_preview(path, out, info) if not out.exists() else min(info.duration_s or 0, PREVIEW_SECONDS)
    )
    kind = "GIF" if info.codec == "gif" else f"{info.codec} {info.pix_fmt}"
    cut = f" (its first {seconds:.0f} s)" if info.duration_s and seconds < info.duration_s - 0.5 else ""
    note = (
        f"Browsers cannot play this {kind} file, so the clip box shows an H.264 preview{cut}; "
        "the analysis reads your original file."
    )
    return Upload(os.fspath(path), os.fspath(out), note)


def _size(info: mvt.VideoInfo, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(info.width, info.height, 1))
    w, h = (max(2, int(round(d * scale / 2)) * 2) for d in (info.width, info.height))
    return w, h


def transcode_preview(
    src: str | os.PathLike,
    dest: Path,
    info: mvt.VideoInfo,
    *,
    side: int = PREVIEW_SIDE,
    seconds: float = PREVIEW_SECONDS,
) -> float:
    """Decode ``src`` frame by frame and write H.264 yuv420p to ``dest`` (scaled, rotated as players show it,
    each frame at its own time, at most ``seconds``); returns the seconds written."""
    w, h = _size(info, side)
    rot = int(info.rotation) % 360
    out_w, out_h = (h, w) if rot in (90, 270) else (w, h)
    tmp = dest.with_name(f".{dest.name}")
    last_pts, written = -1, 0.0
    try:
        with (
            av.open(os.fspath(src)) as inp,
            av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out,
        ):
            stream_in = inp.streams.video[0]
            stream_in.thread_type = "AUTO"
            enc = out.add_stream("libx264", rate=Fraction(info.fps or 25).limit_denominator(1001))
            enc.width, enc.height, enc.pix_fmt = out_w, out_h, "yuv420p"
            enc.options = {"crf": "26", "preset": "veryfast"}
            enc.codec_context.time_base = Fraction(1, 1000)
            t0 = None
            for frame in inp.decode(stream_in):
                t = float(frame.time) if frame.time is not None else written + 1.0 / (info.fps or 25)
                t0 = t if t0 is None else t0
                if t - t0 > seconds:
                    break
                rgb = frame.to_ndarray(width=w, height=h, format="rgb24")  # (h, w, 3)
                if rot:
                    rgb = np.ascontiguousarray(
                        np.rot90(rgb, k=rot // 90)
                    )  # counter-clockwise, as players turn it
                pts = max(int(round((t - t0) * 1000)), last_pts + 1)
                new = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                new.pts, new.time_base = pts, Fraction(1, 1000)
                for packet in enc.encode(new):
                    out.mux(packet)
                last_pts, written = pts, t - t0
            for packet in enc.encode():
                out.mux(packet)
        os.replace(tmp, dest)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise mvt.VideoError(f"{Path(src).name}: could not make a preview the browser can play ({e}).") from e
    finally:
        tmp.unlink(missing_ok=True)
    return written
