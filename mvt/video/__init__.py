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
* :func:`read_windows` returns evenly spaced windows of a model's sampling over the clip, decoded in one
  pass (:func:`window_count` says how many a clip needs).
* :func:`write_video` writes H.264 yuv420p ``.mp4`` with ``+faststart`` (plays in browsers as is) or a GIF.

Every failure is a :class:`VideoError` (a ``ValueError``) whose message says what is wrong with the file and
what to do; :class:`VideoLimits` bounds file size, duration, pixels and decode time before heavy work starts.

Layout: ``common`` (errors, limits, result types, PyAV helpers), ``probing``, ``reading``, ``writing``; the
names above are the public API.
"""

from .common import DEFAULT_LIMITS, Clip, VideoError, VideoInfo, VideoLimits
from .probing import probe
from .reading import MAX_WINDOWS, read_clip, read_windows, window_count
from .writing import write_video

__all__ = [
    "DEFAULT_LIMITS",
    "Clip",
    "VideoError",
    "VideoInfo",
    "VideoLimits",
    "probe",
    "read_clip",
    "read_windows",
    "window_count",
    "MAX_WINDOWS",
    "write_video",
]
