"""Read and write video files with PyAV: probe, sampled decode under limits, clear errors.

Nothing here needs an ``ffmpeg`` binary: PyAV bundles FFmpeg. Works with av 14 to 19 (in av 19 rational
attributes are never ``None`` and stream properties must be read while the container is open, so every
stream property is read inside a ``with`` block and tested for truthiness, not ``is None``).

* :func:`probe` returns a :class:`VideoInfo` that is right even when the container does not store a frame
  count or duration (WebM recorded by a browser, VFR Matroska, GIF): then the packets are counted by a
  demux-only pass, which is cheap because nothing is decoded.
* :func:`read_clip` returns a :class:`Clip`: ``num_frames`` RGB uint8 frames, rotated as a player shows them,
  resized inside FFmpeg's scaler, with their timestamps. For a few frames of a long clip it seeks to the
  keyframe before each wanted frame instead of decoding the whole file, verifies where each seek landed, and
  falls back to one sequential decode when a file's seeking is unreliable.
* :func:`write_video` writes H.264 yuv420p ``.mp4`` with ``+faststart`` (plays in browsers as is) or a GIF.

Every failure is a :class:`VideoError` (a ``ValueError``) whose message says what is wrong with the file and
what to do; :class:`VideoLimits` bounds file size, duration, pixels and decode time before heavy work starts.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

__all__ = [
    "DEFAULT_LIMITS",
    "Clip",
    "VideoError",
    "VideoInfo",
    "VideoLimits",
    "probe",
    "read_clip",
    "write_video",
]

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
        max_pixels: largest picture accepted, width * height (default 4096 * 4096).
        max_decode_s: wall-clock budget for one :func:`probe` or :func:`read_clip` call (default 60 s).
        max_clip_bytes: largest array :func:`read_clip` may return (default 2 GiB).
        probesize: bytes FFmpeg may read to detect the streams (default 5 MB).
        analyzeduration_s: media seconds FFmpeg may read to detect the streams (default 5 s).
        max_streams: most streams a container may declare (default 32).
    """

    max_bytes: int = 500 * 1000 * 1000
    max_duration_s: float = 1800.0
    max_pixels: int = 4096 * 4096
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
            raise VideoError(
                f"{self.name}: reading the video took longer than the {self.seconds:g} s limit "
                "(VideoLimits.max_decode_s); try a shorter or lower-resolution clip."
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
    try:
        # "file:" makes FFmpeg read a local file even when the name looks like "proto:..." (e.g. "a:b.mp4")
        container = av.open("file:" + os.path.abspath(path), mode="r", container_options=options)
    except PermissionError as e:
        raise VideoError(f"{name}: permission denied; check that the file is readable.{_detail(e)}") from e
    except (av.FFmpegError, OSError, IndexError, ValueError, RuntimeError) as e:
        raise VideoError(
            f"{name}: could not be opened as a video; it is not a video file, or it is truncated or "
            f"corrupt (an interrupted upload?). Try re-exporting it as MP4 (H.264).{_detail(e)}"
        ) from e
    try:
        yield container
    finally:
        container.close()


def _too_long(name: str, seconds: float, limits: VideoLimits) -> VideoError:
    return VideoError(
        f"{name}: the video lasts at least {seconds / 60:.1f} min, over the {limits.max_duration_s / 60:g} min "
        "limit; trim it to the part you want to analyse."
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


@dataclass
class _Timeline:
    """Where frames are: exact presentation times from a demux pass, or constant-rate arithmetic."""

    origin: float  # absolute seconds (stream time) of the first frame
    fps: float
    n: int
    times: np.ndarray | None  # (n,) seconds from origin, sorted, when measured

    def time(self, i: int) -> float:
        return float(self.times[i]) if self.times is not None else i / self.fps

    def tolerance(self, i: int) -> float:
        """Half the gap to the nearest neighbour frame: a decoded frame within it *is* frame ``i``."""
        if self.times is None or self.n < 2:
            return 0.5 / self.fps
        lo, hi = max(i - 1, 0), min(i + 1, self.n - 1)
        gaps = np.diff(self.times[lo : hi + 1])
        gaps = gaps[gaps > 0]
        return 0.5 * float(gaps.min()) if len(gaps) else 0.5 / self.fps

    def index_at(self, t: float) -> int:
        """First frame at or after ``t`` seconds from the origin (allowing for rounding)."""
        if self.times is not None:
            return int(np.searchsorted(self.times, t - 1e-6))
        return int(math.ceil(t * self.fps - 1e-6))


def _demux_times(container, stream, name: str, limits: VideoLimits, deadline: _Deadline):
    """Count the video packets without decoding; return (times_abs_seconds | None, count, note | None)."""
    tb = _rational(stream.time_base)
    stamps: list[int] = []
    missing = 0
    note = None
    try:
        for k, packet in enumerate(container.demux(stream)):
            if packet.size == 0:
                continue
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None:
                missing += 1
            else:
                stamps.append(pts)
            if k % 512 == 0:
                deadline.check()
                if stamps and tb and (stamps[-1] - stamps[0]) * tb > limits.max_duration_s:
                    raise _too_long(name, (stamps[-1] - stamps[0]) * tb, limits)
    except VideoError:
        raise
    except _DECODE_ERRORS as e:
        if not stamps and not missing:
            raise VideoError(
                f"{name}: the video data could not be read; the file is corrupt.{_detail(e)}"
            ) from e
        note = f"the file ends abruptly after {len(stamps) + missing} video packets (truncated?)"
    count = len(stamps) + missing
    if missing or not tb or not stamps:
        return None, count, note
    times = np.sort(np.asarray(stamps, dtype=np.float64)) * tb
    return times, count, note


def _index_times(stream, expected: int) -> np.ndarray | None:
    """Sample timestamps from the container index (mp4/avi keep one), for VFR detection; None if absent."""
    entries = getattr(stream, "index_entries", None)
    tb = _rational(stream.time_base)
    try:
        if not entries or len(entries) != expected or expected < 3 or not tb:
            return None
        return np.sort(np.asarray([e.timestamp for e in entries], dtype=np.float64)) * tb
    except (TypeError, AttributeError, ValueError):
        return None


def _vfr(times: np.ndarray) -> bool | None:
    gaps = np.diff(times)
    gaps = gaps[gaps > 0]
    if len(gaps) < 2:
        return None
    med = float(np.median(gaps))
    return bool(gaps.max() - gaps.min() > max(0.002, 0.25 * med))


def _first_frame(container, stream, name: str):
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.DecoderNotFoundError as e:
        raise VideoError(_unsupported_codec(name, stream)) from e
    except _DECODE_ERRORS as e:
        raise VideoError(
            f"{name}: the first video frame could not be decoded; the file is truncated or corrupt.{_detail(e)}"
        ) from e
    raise VideoError(f"{name}: the video stream holds no decodable frames; the file is truncated or corrupt.")


def _unsupported_codec(name: str, stream) -> str:
    try:
        codec = stream.codec_context.name or "unknown"
    except Exception:  # noqa: BLE001 - only used to word the message
        codec = "unknown"
    return (
        f"{name}: the video codec ({codec}) is not supported by this build of FFmpeg; "
        "re-encode the clip as MP4 (H.264)."
    )


def _probe_open(path: str, name: str, size: int, limits: VideoLimits, deadline: _Deadline):
    """Probe an open-able file; returns (VideoInfo, _Timeline)."""
    notes: list[str] = []
    with _open(path, name, limits) as c:
        fmt = c.format.name if c.format else "unknown"
        if fmt in _REFUSED_FORMATS:
            raise VideoError(
                f"{name}: this is not a video file (FFmpeg reads it as '{fmt}'); upload a video file."
            )
        stream = _pick_video_stream(c, name)
        cc = stream.codec_context
        codec = cc.name if cc is not None and cc.name else ""
        if not codec or codec == "none":
            raise VideoError(_unsupported_codec(name, stream))
        coded_w, coded_h = int(cc.width or 0), int(cc.height or 0)
        if coded_w * coded_h > limits.max_pixels:
            raise _too_many_pixels(name, coded_w, coded_h, limits)
        tb = _rational(stream.time_base)
        avg, guessed = _rational(stream.average_rate), _rational(stream.guessed_rate)
        meta_frames = int(stream.frames or 0)
        if stream.duration and tb:
            meta_dur = float(stream.duration * tb)
        elif c.duration:
            meta_dur = float(c.duration) / 1e6
        else:
            meta_dur = 0.0
        if meta_dur > limits.max_duration_s:
            raise _too_long(name, meta_dur, limits)
        has_audio = len(c.streams.audio) > 0
        sar = _rational(stream.sample_aspect_ratio) or _rational(cc.sample_aspect_ratio) or 1.0
        start_meta = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
        index_times = _index_times(stream, meta_frames) if meta_frames else None

        first = _first_frame(c, stream, name)
        coded_w, coded_h = coded_w or first.width, coded_h or first.height
        if max(coded_w * coded_h, first.width * first.height) > limits.max_pixels:
            raise _too_many_pixels(name, max(coded_w, first.width), max(coded_h, first.height), limits)
        rotation = _rotation_of(first)
        pix_fmt = first.format.name
        depth = _bit_depth(first)
        origin = float(first.time) if first.time is not None else start_meta

    times = None
    counted = meta_frames <= 0 or meta_dur <= 0
    if counted:
        with _open(path, name, limits) as c:
            stream = _pick_video_stream(c, name)
            abs_times, n, note = _demux_times(c, stream, name, limits, deadline)
        if note:
            notes.append(note)
        if abs_times is not None:
            origin = min(origin, float(abs_times[0]))
            times = abs_times - origin
    else:
        n = meta_frames
    if n <= 0:
        raise VideoError(f"{name}: the video stream holds no frames; the file is truncated or corrupt.")

    # Frame rate: measured from timestamps when we have them, the stored rates otherwise.
    measured = (
        (n - 1) / float(times[-1] - times[0]) if times is not None and n > 1 and times[-1] > times[0] else 0.0
    )
    if measured and not (avg and abs(avg - measured) <= 0.02 * measured):
        fps = measured
    else:
        fps = avg or guessed or measured or (n / meta_dur if meta_dur else 0.0) or 25.0
    if times is not None and n > 1:
        gaps = np.diff(times)
        gaps = gaps[gaps > 0]
        # the last frame lasts about as long as the one before it
        last = float(gaps[-1]) if len(gaps) else 1.0 / fps
        duration = float(times[-1] - times[0]) + last
    else:
        duration = meta_dur if meta_dur > 0 else n / fps
    if duration > limits.max_duration_s:
        raise _too_long(name, duration, limits)
    if times is not None:
        is_vfr = _vfr(times)
    elif index_times is not None:
        is_vfr = _vfr(index_times)
    elif avg and guessed and abs(avg - guessed) > 0.05 * guessed:
        is_vfr = True
    else:
        is_vfr = None

    disp_w = max(1, round(coded_w * sar)) if sar and abs(sar - 1.0) > 1e-3 else coded_w
    disp_h = coded_h
    if rotation in (90, 270):
        disp_w, disp_h = disp_h, disp_w
    info = VideoInfo(
        path=path,
        container=fmt,
        codec=codec,
        width=int(disp_w),
        height=int(disp_h),
        rotation=rotation,
        fps=float(fps),
        duration_s=float(duration),
        num_frames=int(n),
        frames_counted=counted,
        has_audio=has_audio,
        pix_fmt=pix_fmt,
        bit_depth=depth,
        is_vfr=is_vfr,
        size_bytes=size,
        coded_width=int(coded_w),
        coded_height=int(coded_h),
        start_s=float(origin),
        notes=tuple(notes),
    )
    return info, _Timeline(origin=float(origin), fps=float(fps), n=int(n), times=times)


def probe(path: str | os.PathLike, limits: VideoLimits = DEFAULT_LIMITS) -> VideoInfo:
    """Describe a video file (container, codec, displayed size, rotation, fps, duration, frame count).

    Raises :class:`VideoError` for anything that is not a readable video within ``limits``.
    """
    p, name, size = _check_file(path, limits)
    deadline = _Deadline(limits.max_decode_s, name)
    with _guard(name):
        info, _ = _probe_open(p, name, size, limits, deadline)
    return info


# ----------------------------------------------------------------------------------------------- reading


def _plan(
    tl: _Timeline, num_frames: int, stride: int | None, start_s: float | None, name: str
) -> tuple[np.ndarray, list[str]]:
    """Source frame indices to return (length ``num_frames``, non-decreasing) and notes about padding."""
    n, notes = tl.n, []
    first = 0
    if start_s is not None:
        first = tl.index_at(start_s)
        if first >= n:
            raise VideoError(
                f"{name}: start_s={start_s:g} s is past the end of the video ({tl.time(n - 1):.2f} s); "
                "choose an earlier start."
            )
    if stride is None:
        avail = n - first
        idx = np.rint(np.linspace(first, n - 1, num_frames)).astype(np.int64)
        if avail < num_frames:
            notes.append(
                f"clip has {_frames(avail)}{' from start_s' if first else ''}; {num_frames} were requested, so "
                f"frames are repeated (each up to {math.ceil(num_frames / avail)} times) to pad it to {num_frames}"
            )
        return idx, notes
    span = (num_frames - 1) * stride + 1
    if start_s is None:
        first = max(0, (n - span) // 2)  # centred window
    idx = first + stride * np.arange(num_frames, dtype=np.int64)
    valid = idx < n
    if not valid.all():
        got = int(valid.sum())
        idx[~valid] = idx[valid][-1]
        where = f"from frame {first} " if first else ""
        step = "every frame" if stride == 1 else f"every {_nth(stride)} frame"
        notes.append(
            f"clip has {_frames(n)}; {step} {where}gives only {got}, so it was padded to "
            f"{num_frames} by repeating the last frame"
        )
    return idx, notes


def _frames(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


def _nth(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


class _SeekUnreliable(Exception):
    """Seeking landed somewhere it should not have; decode sequentially instead."""


class _Reader:
    """Decodes the wanted frames of one file and converts them to RGB at the output size."""

    def __init__(self, path, name, info: VideoInfo, tl: _Timeline, out_hw, limits, deadline):
        self.path, self.name, self.info, self.tl = path, name, info, tl
        self.limits, self.deadline = limits, deadline
        out_h, out_w = out_hw
        k = info.rotation // 90
        # to_ndarray sizes the stored picture; rotate afterwards (90/270 swap the axes).
        self.raw_w, self.raw_h = (out_h, out_w) if k % 2 else (out_w, out_h)
        self.k = k
        down = out_w * out_h < info.coded_width * info.coded_height
        self.interp = "AREA" if down else "BICUBIC"

    def convert(self, frame) -> np.ndarray:
        if frame.width * frame.height > self.limits.max_pixels:
            raise _too_many_pixels(self.name, frame.width, frame.height, self.limits)
        try:
            arr = frame.to_ndarray(
                width=self.raw_w, height=self.raw_h, format="rgb24", interpolation=self.interp
            )
        except _DECODE_ERRORS as e:
            raise VideoError(
                f"{self.name}: frames in pixel format {frame.format.name} could not be converted to RGB; "
                f"re-encode the clip as MP4 (H.264, yuv420p).{_detail(e)}"
            ) from e
        if self.k:
            arr = np.rot90(arr, k=self.k)  # counter-clockwise, as a player shows it
        return np.ascontiguousarray(arr)

    def _frame_time(self, frame) -> float | None:
        return None if frame.time is None else float(frame.time) - self.tl.origin

    @contextmanager
    def _stream(self):
        with _open(self.path, self.name, self.limits) as c:
            stream = _pick_video_stream(c, self.name)
            with suppress(AttributeError, RuntimeError, ValueError, TypeError):
                stream.thread_type = "AUTO"  # frame + slice threads; must be set before the first decode
            yield c, stream

    def sequential(
        self, wanted: Sequence[int]
    ) -> tuple[dict[int, tuple[np.ndarray, float]], int, str | None]:
        """Decode from the start; returns ({index: (rgb, time)}, frames decoded, note on early end)."""
        want = set(int(i) for i in wanted)
        last_wanted = max(want)
        out: dict[int, tuple[np.ndarray, float]] = {}
        i, prev_t, note = 0, None, None
        with self._stream() as (c, stream):
            frames = c.decode(stream)
            while i <= last_wanted:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except VideoError:
                    raise
                except av.error.DecoderNotFoundError as e:
                    raise VideoError(_unsupported_codec(self.name, stream)) from e
                except _DECODE_ERRORS as e:
                    if i == 0:
                        raise VideoError(
                            f"{self.name}: the video could not be decoded; the file is corrupt.{_detail(e)}"
                        ) from e
                    note = f"decoding stopped after frame {i - 1}: the file is damaged after that point{_detail(e)}"
                    break
                self.deadline.check()
                t = self._frame_time(frame)
                if t is None:
                    t = (
                        (prev_t + 1.0 / self.tl.fps)
                        if prev_t is not None
                        else self.tl.time(min(i, self.tl.n - 1))
                    )
                if i in want:
                    out[i] = (self.convert(frame), t)
                prev_t = t
                i += 1
        return out, i, note

    @staticmethod
    def _seek(container, stream, pts: int) -> None:
        """Seek to the keyframe at or before ``pts`` (stream time base); decoders are flushed."""
        container.seek(pts, stream=stream, backward=True, any_frame=False)

    def seeking(self, wanted: Sequence[int]) -> dict[int, tuple[np.ndarray, float]]:
        """Seek to the keyframe before each wanted frame (or decode through when close); verify landings.

        Raises _SeekUnreliable when a landing is wrong, so the caller can decode sequentially instead.
        """
        tl, out = self.tl, {}
        gop = _MIN_SEEK_GAP_S  # grows to the largest keyframe interval seen
        with self._stream() as (c, stream):
            tb = _rational(stream.time_base)
            if not tb:
                raise _SeekUnreliable("no time base")
            frames = None
            pos = -math.inf  # time of the last frame taken from `frames`
            last_key = None
            for i in sorted(set(int(j) for j in wanted)):
                t, tol = tl.time(i), tl.tolerance(i)
                fresh = frames is None or t - pos > gop
                if fresh:
                    try:
                        self._seek(c, stream, round((tl.origin + t) / tb))
                    except _DECODE_ERRORS as e:
                        raise _SeekUnreliable(f"seek failed: {e}") from e
                    frames, last_key = c.decode(stream), None
                while True:
                    try:
                        frame = next(frames)
                    except StopIteration as e:
                        raise _SeekUnreliable(f"end of stream before frame {i}") from e
                    except VideoError:
                        raise
                    except _DECODE_ERRORS as e:
                        raise _SeekUnreliable(f"decode error: {e}") from e
                    self.deadline.check()
                    ft = self._frame_time(frame)
                    if ft is None:
                        raise _SeekUnreliable("frame without timestamp")
                    if fresh:
                        fresh = False
                        if ft > t + tol:
                            raise _SeekUnreliable(f"seek for {t:.3f}s landed later, at {ft:.3f}s")
                        gop = max(gop, t - ft)  # no keyframe in (ft, t]
                    if getattr(frame, "key_frame", False):
                        if last_key is not None:
                            gop = max(gop, ft - last_key)
                        last_key = ft
                    pos = ft
                    if ft >= t - tol:
                        if ft > t + tol:
                            raise _SeekUnreliable(f"frame {i} at {t:.3f}s missing; next frame at {ft:.3f}s")
                        out[i] = (self.convert(frame), ft)
                        break
        return out


def _output_size(info: VideoInfo, size: int | None) -> tuple[int, int]:
    """(height, width) of returned frames: displayed size with the short side scaled to ``size``."""
    w, h = info.width, info.height
    if size is None:
        return h, w
    scale = size / min(w, h)
    if w <= h:
        return max(1, round(h * scale)), size
    return size, max(1, round(w * scale))


def read_clip(
    path: str | os.PathLike,
    *,
    num_frames: int,
    stride: int | None = None,
    size: int | None = None,
    start_s: float | None = None,
    limits: VideoLimits = DEFAULT_LIMITS,
) -> Clip:
    """Decode ``num_frames`` RGB frames of a video.

    Args:
        path: a local video file.
        num_frames: how many frames to return (T).
        stride: None samples T frames uniformly from ``start_s`` (default: the first frame) to the last frame,
            first and last included. An int takes every ``stride``-th frame from ``start_s``; when ``start_s``
            is None the window of ``(T - 1) * stride + 1`` frames is centred in the video.
        size: resize so the short side of the displayed picture is ``size`` (aspect ratio kept, rounded),
            inside FFmpeg's scaler; None keeps the displayed size.
        start_s: seconds from the first frame where sampling starts.
        limits: see :class:`VideoLimits`.

    Returns a :class:`Clip`. Short videos are padded by repeating frames, and ``Clip.notes`` says so.
    Raises :class:`VideoError` for unreadable files and files outside ``limits``.
    """
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if stride is not None and (not isinstance(stride, (int, np.integer)) or stride < 1):
        raise ValueError(f"stride must be None or a positive int, got {stride!r}")
    if size is not None and (not isinstance(size, (int, np.integer)) or size < 1):
        raise ValueError(f"size must be None or a positive int, got {size!r}")
    if start_s is not None and (not math.isfinite(start_s) or start_s < 0):
        raise ValueError(f"start_s must be None or >= 0 seconds, got {start_s!r}")

    p, name, nbytes = _check_file(path, limits)
    with _guard(name):
        return _read_clip(p, name, nbytes, int(num_frames), stride, size, start_s, limits)


def _read_clip(p, name, nbytes, num_frames, stride, size, start_s, limits) -> Clip:
    deadline = _Deadline(limits.max_decode_s, name)
    info, tl = _probe_open(p, name, nbytes, limits, deadline)
    out_hw = _output_size(info, size)
    if num_frames * out_hw[0] * out_hw[1] * 3 > limits.max_clip_bytes:
        raise VideoError(
            f"{name}: {num_frames} frames of {out_hw[1]}x{out_hw[0]} would need more than "
            f"{limits.max_clip_bytes / 2**30:.1f} GiB; ask for fewer frames or a smaller size."
        )
    notes = list(info.notes)
    idx, plan_notes = _plan(tl, int(num_frames), stride, start_s, name)
    reader = _Reader(p, name, info, tl, out_hw, limits, deadline)
    unique = np.unique(idx)

    got: dict[int, tuple[np.ndarray, float]] | None = None
    mean_gap = tl.n / max(len(unique), 1)
    if tl.n > SEQUENTIAL_MAX_FRAMES and mean_gap / tl.fps >= _MIN_SEEK_GAP_S:
        try:
            got = reader.seeking(unique)
        except _SeekUnreliable:
            got = None  # seeking lies for this file (e.g. live WebM without cues): decode through instead
    if got is None:
        got, decoded, stop_note = reader.sequential(unique)
        if stop_note:
            notes.append(stop_note)
        if len(got) < len(unique):
            # The file holds fewer frames than its header said (truncated): sample what is really there.
            if decoded == 0:
                raise VideoError(
                    f"{name}: no video frame could be decoded; the file is truncated or corrupt."
                )
            notes.append(
                f"the file has only {decoded} decodable frames although its header says {tl.n} "
                "(truncated?); sampled from those"
            )
            tl = _Timeline(
                origin=tl.origin,
                fps=tl.fps,
                n=decoded,
                times=None if tl.times is None else tl.times[:decoded],
            )
            idx, plan_notes = _plan(tl, int(num_frames), stride, start_s, name)
            unique = np.unique(idx)
            got, _, _ = reader.sequential(unique)
            if len(got) < len(unique):
                raise VideoError(f"{name}: the video could not be decoded consistently; the file is corrupt.")
    notes.extend(plan_notes)
    frames = np.stack([got[int(i)][0] for i in idx])  # (T, H, W, 3) uint8
    times = np.asarray([got[int(i)][1] for i in idx], dtype=np.float64)
    return Clip(
        frames=frames, times=times, fps=info.fps, info=info, notes=notes, indices=idx.astype(np.int64)
    )


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
