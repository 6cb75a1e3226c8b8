"""Synthetic test clips made with PyAV, whose frames say which frame they are.

Every frame is a 4x4 grid of cells. Row 0 is fixed: white, red, blue, black (an orientation marker and a
channel-order check). Rows 1-3 hold the frame index in 12 bits (cell on = white), so tests can decode
*which* frame a reader returned (:func:`frame_index`) and whether it is the right way up.

Used by tests/mvt/test_video.py and reusable by other tests (the app's): ``from tests.mvt.clips import
make_clip`` or via the fixtures in tests/conftest.py.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GRID = 4
INDEX_BITS = (GRID - 1) * GRID  # 12 bits: frame indices 0..4095
_ROW0 = [(255, 255, 255), (255, 0, 0), (0, 0, 255), (0, 0, 0)]
ENCODERS = {
    "h264": "libx264",
    "vp9": "libvpx-vp9",
    "vp8": "libvpx",
    "mpeg4": "mpeg4",
    "gif": "gif",
    "ffv1": "ffv1",
}


def pattern_frame(index: int, height: int, width: int) -> np.ndarray:
    """The RGB uint8 ``(height, width, 3)`` picture of frame ``index``."""
    img = np.zeros((height, width, 3), np.uint8)
    ys = np.linspace(0, height, GRID + 1).round().astype(int)
    xs = np.linspace(0, width, GRID + 1).round().astype(int)
    for c, rgb in enumerate(_ROW0):
        img[ys[0] : ys[1], xs[c] : xs[c + 1]] = rgb
    for b in range(INDEX_BITS):
        r, c = 1 + b // GRID, b % GRID
        if (index >> b) & 1:
            img[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = 255
    return img


def _cell_means(rgb: np.ndarray) -> np.ndarray:
    """(GRID, GRID, 3) mean colour of the central half of each cell."""
    h, w = rgb.shape[:2]
    out = np.zeros((GRID, GRID, 3))
    for r in range(GRID):
        for c in range(GRID):
            y0, y1 = (r + 0.25) * h / GRID, (r + 0.75) * h / GRID
            x0, x1 = (c + 0.25) * w / GRID, (c + 0.75) * w / GRID
            cell = rgb[int(y0) : max(int(y1), int(y0) + 1), int(x0) : max(int(x1), int(x0) + 1)]
            out[r, c] = cell.reshape(-1, 3).mean(0)
    return out


def frame_index(rgb: np.ndarray) -> int:
    """Decode the frame index written by :func:`pattern_frame` (the picture must be upright)."""
    lum = _cell_means(rgb).mean(-1)
    return sum(1 << b for b in range(INDEX_BITS) if lum[1 + b // GRID, b % GRID] > 128)


def is_upright(rgb: np.ndarray, color: bool = True) -> bool:
    """True when the marker row is on top, left to right (white first, black last); checks R/B order too."""
    m = _cell_means(rgb)
    lum = m.mean(-1)
    ok = lum[0, 0] > 170 and lum[0, 3] < 60
    if color:
        ok = ok and m[0, 1, 0] > 150 and m[0, 1, 2] < 110 and m[0, 2, 2] > 150 and m[0, 2, 0] < 110
    return bool(ok)


class _PipeWriter(io.RawIOBase):
    """A write-only, non-seekable sink, like a browser's MediaRecorder stream: no cues, no duration."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += bytes(b)
        return len(b)


def make_clip(
    path: str | os.PathLike,
    n_frames: int = 30,
    width: int = 64,
    height: int = 48,
    fps: float = 30,
    codec: str = "h264",
    pix_fmt: str | None = None,
    *,
    rotation: int | None = None,
    gop: int | None = None,
    times: Sequence[float] | None = None,
    live: bool = False,
    audio: bool = False,
    faststart: bool = False,
    bframes: int = 0,
    preset: str = "ultrafast",
) -> Path:
    """Encode ``n_frames`` pattern frames (frame i shows index i) and return the path.

    ``codec``: a key of ``ENCODERS``; the container follows the file extension. ``rotation``: display
    rotation in degrees counter-clockwise (PyAV's ``set_display_rotation``). ``gop``: keyframe interval in
    frames. ``times``: explicit presentation times in seconds (variable frame rate). ``live``: write through a
    non-seekable pipe (WebM without cues/duration, as from a webcam). ``audio``: add a silent audio track.
    ``bframes``: H.264 B-frames (frames decoded out of order, as in most camera and phone files).
    """
    path = Path(path)
    enc = ENCODERS.get(codec, codec)
    pix_fmt = pix_fmt or ("rgb8" if enc == "gif" else "yuv420p")
    ext = path.suffix.lstrip(".").lower()
    fmt = {"mkv": "matroska", "webm": "webm", "mp4": "mp4", "avi": "avi", "gif": "gif", "mov": "mov"}.get(ext)
    sink = _PipeWriter() if live else None
    copts = {"movflags": "+faststart"} if faststart else {}
    if live:
        copts["live"] = "1"
    tb = Fraction(1, 1000) if times is not None else None
    opts: dict[str, str] = {}
    if enc == "libx264":
        opts = (
            {"preset": preset, "bf": str(bframes)} if bframes else {"preset": preset, "tune": "zerolatency"}
        )
    elif enc in ("libvpx", "libvpx-vp9"):
        opts = {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"}
        if enc == "libvpx-vp9":
            opts["row-mt"] = "1"
    with av.open(sink if live else str(path), "w", format=fmt, options=copts) as out:
        rate = Fraction(fps).limit_denominator(1001)
        stream = out.add_stream(enc, rate=rate, options=opts)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if enc == "mpeg4":
            stream.bit_rate = 4_000_000
        if gop is not None:
            stream.codec_context.gop_size = gop
        if tb is not None:
            stream.codec_context.time_base = tb
            stream.time_base = tb
        if rotation is not None:
            stream.set_display_rotation(rotation)
        astream = out.add_stream("aac" if ext in ("mp4", "mov") else "libopus", rate=48000) if audio else None
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(pattern_frame(i, height, width), format="rgb24")
            if tb is not None:
                frame.pts, frame.time_base = round(times[i] / tb), tb
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            _add_silence(out, astream, seconds=n_frames / fps)
    if live:
        path.write_bytes(bytes(sink.data))
    return path


def _add_silence(out, astream, seconds: float) -> None:
    rate, chunk = 48000, 960
    for k in range(int(seconds * rate) // chunk):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, chunk), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, k * chunk
        for packet in astream.encode(frame):
            out.mux(packet)
    for packet in astream.encode():
        out.mux(packet)


def make_audio_only(path: str | os.PathLike, seconds: float = 0.5) -> Path:
    """A WAV (pcm_s16le) file with silence and no video stream."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=16000)
        stream.layout = "mono"
        samples = int(seconds * 16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_audio_with_cover(path: str | os.PathLike) -> Path:
    """An MP3 whose only video stream is cover art (an attached picture): still audio only."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        audio = out.add_stream("libmp3lame", rate=44100)
        audio.layout = "mono"
        cover = out.add_stream("png")
        cover.width, cover.height, cover.pix_fmt = 16, 16, "rgb24"
        cover.disposition = av.stream.Disposition.attached_pic
        for packet in cover.encode(av.VideoFrame.from_ndarray(pattern_frame(0, 16, 16), format="rgb24")):
            out.mux(packet)
        for packet in cover.encode():
            out.mux(packet)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 11025), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, 0
        for packet in [*audio.encode(frame), *audio.encode()]:
            out.mux(packet)
    return path


def make_broken(directory: str | os.PathLike) -> dict[str, Path]:
    """Files that are not readable videos: empty, text, random bytes, truncated mp4, audio only (also with cover art), unknown codec."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = {"empty": d / "empty.mp4", "text": d / "notes.mp4", "random": d / "random.mp4"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not a video\n" * 50)
    files["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    good = make_clip(d / "whole.mp4", n_frames=30)  # moov atom at the end: cutting it loses the index
    data = good.read_bytes()
    files["truncated"] = d / "truncated.mp4"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["audio_only"] = make_audio_only(d / "audio_only.wav")
    files["audio_cover"] = make_audio_with_cover(d / "song.mp3")
    avi = make_clip(d / "mpeg4.avi", n_frames=5, codec="mpeg4").read_bytes()
    files["unknown_codec"] = d / "unknown_codec.avi"  # a FourCC no decoder knows
    files["unknown_codec"].write_bytes(avi.replace(b"FMP4", b"QQQ9"))
    return files
