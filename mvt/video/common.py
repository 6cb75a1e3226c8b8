"""Errors, limits, the result types and the small PyAV helpers every part of :mod:`mvt.video` uses."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import av
import numpy as np

# Clips with at most this many frames are decoded in one sequential pass (no seeking).
SEQUENTIAL_MAX_FRAMES = 300
# Seeking only pays when wanted frames are at least this far apart (seconds); closer ones are decoded through.
_MIN_SEEK_GAP_S = 1.0
# Demuxers that are not video files or that open other files/URLs named inside the file.
_REFUSED_FORMATS = {"tty", "concat", "ffconcat", "hls", "dash", "ffmetadata", "sdp", "rtsp", "rtp"}
_DECODE_ERRORS = (av.FFmpegError, OSError, IndexError, EOFError, RuntimeError, ValueError, MemoryError)


class VideoError(ValueError):
    """A video could not be read or written. The message says what is wrong and what to do about it."""


@dataclass(frozen=True)
class VideoLimits:
    """Bounds applied before heavy work, so a hostile or huge upload fails fast with a clear message.

    Attributes:
        max_bytes: largest file accepted (default 500 MB).
        max_duration_s: longest video accepted (default 1800 s = 30 min).
        max_pixels: largest picture accepted, width * height (default 4096 * 4096). Also handed to FFmpeg's
            decoders (``max_pixels``), so a tiny file whose stream declares a huge picture (a decompression
            bomb: 16000x16000 costs 1.2 GB and 17 s in FFmpeg's stream probe alone) is refused before any
            such picture is allocated, even when only a later frame declares it.
        max_frames: most frames a video may hold (default 250,000: 30 min at 138 fps); a tiny file that
            declares a million frames is refused before they are counted or decoded.
        max_decode_s: wall-clock budget for one :func:`probe` or :func:`read_clip` call (default 60 s); it
            also bounds FFmpeg's own stream probe when the file is opened.
        max_clip_bytes: largest array :func:`read_clip` may return (default 2 GiB).
        probesize: bytes FFmpeg may read to detect the streams (default 5 MB).
        analyzeduration_s: media seconds FFmpeg may read to detect the streams (default 5 s).
        max_streams: most streams a container may declare (default 32).
    """

    max_bytes: int = 500 * 1000 * 1000
    max_duration_s: float = 1800.0
    max_pixels: int = 4096 * 4096
    max_frames: int = 250_000
    max_decode_s: float = 60.0
    max_clip_bytes: int = 2 * 1024**3
    probesize: int = 5_000_000
    analyzeduration_s: float = 5.0
    max_streams: int = 32


DEFAULT_LIMITS = VideoLimits()


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found out about a video file.

    ``width``/``height`` are as displayed (after ``rotation`` and the sample aspect ratio); ``coded_width``/
    ``coded_height`` are the stored picture. ``rotation`` is the counter-clockwise angle (0, 90, 180 or 270)
    a player turns the stored picture by. ``frames_counted`` says the container did not store a frame count
    (or duration) and ``num_frames``/``duration_s`` come from a demux pass over the packets. ``is_vfr`` is
    True/False when the frame timestamps were measured (or the stored average and nominal rates disagree),
    None when only a constant-rate header was available. ``start_s`` is the first frame's timestamp;
    clip times are measured from it.
    """

    path: str
    container: str
    codec: str
    width: int
    height: int
    rotation: int
    fps: float
    duration_s: float
    num_frames: int
    frames_counted: bool
    has_audio: bool
    pix_fmt: str
    bit_depth: int
    is_vfr: bool | None
    size_bytes: int
    coded_width: int
    coded_height: int
    start_s: float = 0.0
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for people, e.g. ``"h264 640x360 @ 30 fps, 10.0 s, 300 frames, mp4"``."""
        parts = [f"{self.codec} {self.width}x{self.height} @ {self.fps:.3g} fps"]
        parts.append(f"{self.duration_s:.1f} s, {self.num_frames} frames")
        if self.rotation:
            parts.append(f"rotated {self.rotation}°")
        if self.is_vfr:
            parts.append("variable frame rate")
        if self.bit_depth > 8:
            parts.append(f"{self.bit_depth}-bit")
        parts.append(self.container.split(",")[0])
        return ", ".join(parts)


@dataclass
class Clip:
    """Frames sampled from a video by :func:`read_clip`.

    Attributes:
        frames: uint8 ``(T, H, W, 3)`` RGB, rotated as displayed.
        times: ``(T,)`` float seconds of each frame from the first frame of the video.
        fps: frame rate of the source video (the returned frames are ``indices`` apart; see ``sample_fps``).
        info: the :class:`VideoInfo` of the source.
        notes: sentences for people about anything unusual (padding, a truncated file, ...).
        indices: ``(T,)`` int source frame index of each returned frame (repeated when padded).
    """

    frames: np.ndarray
    times: np.ndarray
    fps: float
    info: VideoInfo
    notes: list[str] = field(default_factory=list)
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def sample_fps(self) -> float:
        """Playback rate that spans the same time as the source: ``fps`` divided by the median index step."""
        steps = np.diff(self.indices)
        steps = steps[steps > 0]
        return self.fps / float(np.median(steps)) if len(steps) else self.fps


# ----------------------------------------------------------------------------------------------- helpers


class _Deadline:
    """Wall-clock budget for one public call (``VideoLimits.max_decode_s``)."""

    def __init__(self, seconds: float, name: str):
        self.seconds, self.name = seconds, name
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise _took_too_long(self.name, self.seconds)


def _took_too_long(name: str, seconds: float) -> VideoError:
    return VideoError(
        f"{name}: reading the video took longer than the {seconds:g} s limit (VideoLimits.max_decode_s); "
        "try a shorter or lower-resolution clip."
    )


def _detail(exc: BaseException) -> str:
    """A short technical detail to append to a friendly message (never the whole message)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    return f" (detail: {type(exc).__name__}: {text[:120]})"


def _display_name(path: str) -> str:
    return os.path.basename(path) or path


@contextmanager
def _guard(name: str) -> Iterator[None]:
    """Turn any library error that slipped past the specific handlers into a VideoError."""
    try:
        yield
    except VideoError:
        raise
    except (*_DECODE_ERRORS, AssertionError) as e:
        raise VideoError(
            f"{name}: the video could not be read; the file is damaged or uses an unusual format. "
            f"Re-export it as MP4 (H.264) and try again.{_detail(e)}"
        ) from e


def _check_file(path: str | os.PathLike, limits: VideoLimits) -> tuple[str, str, int]:
    """Return (path, display name, size) or raise for a missing, empty or too big file."""
    p = os.fspath(path)
    name = _display_name(p)
    if not os.path.exists(p):
        raise VideoError(f"{name}: file not found; check the path or upload the file again.")
    if not os.path.isfile(p):
        raise VideoError(f"{name}: is not a regular file (a folder?); choose a video file.")
    try:
        size = os.path.getsize(p)
    except OSError as e:
        raise VideoError(f"{name}: cannot be read; check that the file is accessible.{_detail(e)}") from e
    if size == 0:
        raise VideoError(
            f"{name}: the file is empty (0 bytes); the upload or recording probably failed, try again."
        )
    if size > limits.max_bytes:
        raise VideoError(
            f"{name}: the file is {size / 1e6:.0f} MB, more than the {limits.max_bytes / 1e6:.0f} MB limit; "
            "trim or compress the clip."
        )
    return p, name, size


@contextmanager
def _open(path: str, name: str, limits: VideoLimits) -> Iterator[av.container.InputContainer]:
    options = {
        "probesize": str(int(limits.probesize)),
        "analyzeduration": str(int(limits.analyzeduration_s * 1e6)),
        "max_streams": str(int(limits.max_streams)),
        "protocol_whitelist": "file",  # local files only, and no playlist may reach out elsewhere
    }
    decoder = {"max_pixels": str(int(limits.max_pixels))}  # FFmpeg refuses bigger pictures before allocating
    try:
        # "file:" makes FFmpeg read a local file even when the name looks like "proto:..." (e.g. "a:b.mp4");
        # `options` reach the decoders FFmpeg opens to probe the streams, `timeout` bounds that probe
        container = av.open(
            "file:" + os.path.abspath(path),
            mode="r",
            container_options=options,
            options=decoder,
            timeout=float(limits.max_decode_s),
        )
    except PermissionError as e:
        raise VideoError(f"{name}: permission denied; check that the file is readable.{_detail(e)}") from e
    except av.error.ExitError as e:  # `timeout` interrupted FFmpeg's stream probe
        raise _took_too_long(name, limits.max_decode_s) from e
    except (av.FFmpegError, OSError, IndexError, ValueError, RuntimeError) as e:
        raise VideoError(
            f"{name}: could not be opened as a video; it is not a video file, or it is truncated or "
            f"corrupt (an interrupted upload?). Try re-exporting it as MP4 (H.264).{_detail(e)}"
        ) from e
    for stream in container.streams.video:  # ...and the decoders we open ourselves
        with suppress(AttributeError, TypeError, ValueError):
            stream.codec_context.options = {**stream.codec_context.options, **decoder}
    try:
        yield container
    finally:
        container.close()


def _too_long(name: str, seconds: float, limits: VideoLimits) -> VideoError:
    return VideoError(
        f"{name}: the video lasts at least {seconds / 60:.1f} min, over the {limits.max_duration_s / 60:g} min "
        "limit; trim it to the part you want to analyse."
    )


def _too_many_frames(name: str, frames: int, limits: VideoLimits) -> VideoError:
    return VideoError(
        f"{name}: the video holds at least {frames:,} frames, more than the limit of {limits.max_frames:,}; "
        "trim it to the part you want to analyse (or lower its frame rate)."
    )


def _too_many_pixels(name: str, width: int, height: int, limits: VideoLimits) -> VideoError:
    return VideoError(
        f"{name}: the picture is {width}x{height}, more than the limit of {limits.max_pixels:,} pixels; "
        "downscale the video (e.g. to 1080p)."
    )


def _pick_video_stream(container, name: str):
    """The first real video stream (not cover art), or a VideoError naming what the file holds instead."""
    streams = [s for s in container.streams.video if not _is_attached_pic(s)]
    if not streams:
        if container.streams.audio:
            raise VideoError(f"{name}: this file has only audio, no video stream; upload a video file.")
        raise VideoError(f"{name}: this file has no video stream; upload a video file.")
    return streams[0]


def _is_attached_pic(stream) -> bool:
    try:
        return bool(int(stream.disposition) & int(av.stream.Disposition.attached_pic))
    except (AttributeError, TypeError, ValueError):
        return False


def _rational(value) -> float:
    """float of an av rational that may be None (av < 19) or AVRational(0, 1) (av 19)."""
    try:
        return float(value) if value else 0.0
    except (TypeError, ZeroDivisionError, ValueError):
        return 0.0


def _rotation_of(frame) -> int:
    """Counter-clockwise display rotation of a decoded frame, snapped to 0/90/180/270."""
    try:
        angle = float(getattr(frame, "rotation", 0) or 0)
    except (TypeError, ValueError):
        return 0
    if not math.isfinite(angle):
        return 0
    return (round(angle / 90) % 4) * 90


def _bit_depth(frame) -> int:
    try:
        return int(max(c.bits for c in frame.format.components))
    except (AttributeError, ValueError, TypeError):
        return 8
