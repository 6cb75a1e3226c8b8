"""Probe a video: :func:`probe`, with frame times from a demux-only pass when the container has no count."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import av
import numpy as np

from .common import (
    _DECODE_ERRORS,
    _REFUSED_FORMATS,
    DEFAULT_LIMITS,
    VideoError,
    VideoInfo,
    VideoLimits,
    _bit_depth,
    _check_file,
    _Deadline,
    _detail,
    _guard,
    _open,
    _pick_video_stream,
    _rational,
    _rotation_of,
    _too_long,
    _too_many_frames,
    _too_many_pixels,
)


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
                if len(stamps) + missing > limits.max_frames:
                    raise _too_many_frames(name, len(stamps) + missing, limits)
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
        if meta_frames > limits.max_frames:
            raise _too_many_frames(name, meta_frames, limits)
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
    if n > limits.max_frames:
        raise _too_many_frames(name, n, limits)

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
