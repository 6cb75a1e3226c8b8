"""Sampled decode: :func:`read_clip` seeks to the keyframe before each wanted frame, or decodes sequentially."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace

import av
import numpy as np

from .common import (
    _DECODE_ERRORS,
    _MIN_SEEK_GAP_S,
    DEFAULT_LIMITS,
    SEQUENTIAL_MAX_FRAMES,
    Clip,
    VideoError,
    VideoInfo,
    VideoLimits,
    _check_file,
    _Deadline,
    _detail,
    _guard,
    _open,
    _pick_video_stream,
    _rational,
    _too_many_pixels,
)
from .probing import _probe_open, _Timeline, _unsupported_codec

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


def window_count(n: int, num_frames: int, stride: int, count: int | None) -> tuple[int, int]:
    """(windows to read, windows needed to tile ``n`` frames) for windows of ``num_frames`` every ``stride``-th
    frame: ``count`` (``None``: every window needed, at most :data:`MAX_WINDOWS`) capped at the need."""
    span = (num_frames - 1) * stride + 1
    needed = max(1, math.ceil(n / span))
    wanted = needed if count is None else max(1, int(count))
    return min(wanted, needed, MAX_WINDOWS), needed


def _plan_windows(
    tl: _Timeline, num_frames: int, stride: int, count: int | None, name: str
) -> tuple[np.ndarray, list[str]]:
    """Source frame indices of evenly spaced windows: ``(K · num_frames,)``, window after window. One window
    is :func:`_plan`'s centred window; K ≥ 2 start at the first frame and end at the last, evenly spaced
    (the windows tile the clip when K is the number needed)."""
    k, _ = window_count(tl.n, num_frames, stride, count)
    if k == 1:
        return _plan(tl, num_frames, stride, None, name)
    span = (num_frames - 1) * stride + 1
    starts = np.rint(np.linspace(0, tl.n - span, k)).astype(np.int64)
    idx = starts[:, None] + stride * np.arange(num_frames, dtype=np.int64)[None, :]  # (K, T)
    return idx.reshape(-1), []


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

    def snapped(self, wanted: Sequence[int]) -> dict[int, tuple[np.ndarray, float]]:
        """For each wanted frame, the keyframe at or before it: one seek and one decode per frame instead of
        decoding forward up to a whole GOP. A frame whose keyframe was already taken for the previous one is
        decoded exactly (as :meth:`seeking` does), so no frame is returned twice. Returns
        ``{wanted index: (rgb, the returned frame's own time)}``; raises _SeekUnreliable like :meth:`seeking`."""
        tl, out = self.tl, {}
        with self._stream() as (c, stream):
            tb = _rational(stream.time_base)
            if not tb:
                raise _SeekUnreliable("no time base")
            taken = -math.inf  # time of the last returned frame
            for i in sorted(set(int(j) for j in wanted)):
                t, tol = tl.time(i), tl.tolerance(i)
                try:
                    self._seek(c, stream, round((tl.origin + t) / tb))
                except _DECODE_ERRORS as e:
                    raise _SeekUnreliable(f"seek failed: {e}") from e
                frames, first = c.decode(stream), True
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
                    if first and ft > t + tol:
                        raise _SeekUnreliable(f"seek for {t:.3f}s landed later, at {ft:.3f}s")
                    if first and ft > taken + tol:  # a keyframe nobody took yet: this frame stands for i
                        out[i] = (self.convert(frame), ft)
                        break
                    first = False
                    if ft >= t - tol:  # the keyframe was the previous frame's: decode on to i itself
                        if ft > t + tol:
                            raise _SeekUnreliable(f"frame {i} at {t:.3f}s missing; next frame at {ft:.3f}s")
                        out[i] = (self.convert(frame), ft)
                        break
                taken = out[i][1]
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
    keyframes: bool = False,
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
        keyframes: uniform sampling (``stride=None``) of a long video only: return, for each sampled time,
            the keyframe at or before it (one seek and one decode per frame, instead of decoding up to a
            whole keyframe interval per frame). ``Clip.times`` / ``Clip.indices`` are the returned frames'
            own times and indices (not the uniform ones), and ``Clip.notes`` says how far they moved. Where
            two samples share a keyframe the later one is decoded exactly. Ignored for strided sampling and
            short videos (decoded in one pass anyway).

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
    plan = lambda tl: _plan(tl, int(num_frames), stride, start_s, name)  # noqa: E731
    with _guard(name):
        return _read_clip(p, name, nbytes, plan, stride, size, limits, keyframes)


MAX_WINDOWS = 32
"""The most windows :func:`read_windows` reads of one clip (a long clip gets evenly spaced ones)."""


def read_windows(
    path: str | os.PathLike,
    *,
    num_frames: int,
    stride: int,
    size: int | None = None,
    count: int | None = None,
    limits: VideoLimits = DEFAULT_LIMITS,
) -> list[Clip]:
    """Evenly spaced windows of a video, each as :func:`read_clip` with ``stride`` would read one window:
    ``num_frames`` frames every ``stride``-th source frame.

    ``count`` windows (``None``: as many as tile the clip, at most :data:`MAX_WINDOWS`; never more than tile
    it: :func:`window_count`). One window is the centred one :func:`read_clip` reads; two or more start at the
    first frame and end at the last, evenly spaced, so together they reach both ends of the clip (the way
    Kinetics models are evaluated on several clips of a video). The frames are decoded in one pass. Each
    returned :class:`Clip` has its own ``times`` and ``indices``; ``notes`` are the file's.
    """
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be a positive int, got {stride!r}")
    if count is not None and (not isinstance(count, (int, np.integer)) or count < 1):
        raise ValueError(f"count must be None or a positive int, got {count!r}")
    p, name, nbytes = _check_file(path, limits)
    plan = lambda tl: _plan_windows(tl, int(num_frames), int(stride), count, name)  # noqa: E731
    with _guard(name):
        clip = _read_clip(p, name, nbytes, plan, int(stride), size, limits)
    k = len(clip.frames) // int(num_frames)
    return [
        replace(
            clip,
            frames=clip.frames[i * num_frames : (i + 1) * num_frames],
            times=clip.times[i * num_frames : (i + 1) * num_frames],
            indices=clip.indices[i * num_frames : (i + 1) * num_frames],
            notes=list(clip.notes),
        )
        for i in range(k)
    ]


def _read_clip(p, name, nbytes, plan, stride, size, limits, keyframes=False) -> Clip:
    """Decode the frames ``plan(timeline)`` names (indices and notes); re-planned if the file is shorter."""
    deadline = _Deadline(limits.max_decode_s, name)
    info, tl = _probe_open(p, name, nbytes, limits, deadline)
    out_hw = _output_size(info, size)
    idx, plan_notes = plan(tl)
    if len(idx) * out_hw[0] * out_hw[1] * 3 > limits.max_clip_bytes:
        raise VideoError(
            f"{name}: {len(idx)} frames of {out_hw[1]}x{out_hw[0]} would need more than "
            f"{limits.max_clip_bytes / 2**30:.1f} GiB; ask for fewer frames or a smaller size."
        )
    notes = list(info.notes)
    reader = _Reader(p, name, info, tl, out_hw, limits, deadline)
    unique = np.unique(idx)

    got: dict[int, tuple[np.ndarray, float]] | None = None
    mean_gap = tl.n / max(len(unique), 1)
    snapped = False
    if tl.n > SEQUENTIAL_MAX_FRAMES and keyframes and stride is None:
        try:
            got, snapped = reader.snapped(unique), True
        except _SeekUnreliable:
            got = None
    if got is None and tl.n > SEQUENTIAL_MAX_FRAMES and mean_gap / tl.fps >= _MIN_SEEK_GAP_S:
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
            idx, plan_notes = plan(tl)
            unique = np.unique(idx)
            got, _, _ = reader.sequential(unique)
            if len(got) < len(unique):
                raise VideoError(f"{name}: the video could not be decoded consistently; the file is corrupt.")
    notes.extend(plan_notes)
    frames = np.stack([got[int(i)][0] for i in idx])  # (T, H, W, 3) uint8
    times = np.asarray([got[int(i)][1] for i in idx], dtype=np.float64)
    if snapped:
        moved = np.asarray([tl.time(int(i)) for i in idx]) - times  # >= 0: a keyframe is never later
        idx = np.asarray([min(tl.index_at(t), tl.n - 1) for t in times], dtype=np.int64)
        if (moved > 1e-6).any():
            notes.append(
                f"frames snapped to keyframes for speed: {int((moved > 1e-6).sum())} of {len(idx)} are up to "
                f"{moved.max():.2f} s before their uniform sampling time (their own times are reported)"
            )
    return Clip(
        frames=frames, times=times, fps=info.fps, info=info, notes=notes, indices=idx.astype(np.int64)
    )
