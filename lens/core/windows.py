"""Which part of a clip each model sees: its windows, how many, and how that is said to a person.

A model reads ``T`` frames every ``stride``-th frame: one *window* (16–32 frames, 0.5–2 s of a clip). By
default each model covers the clip with evenly spaced windows (:func:`mvt.read_windows`: the first starts at
the clip's first frame, the last ends at its last), as many as :data:`WINDOW_BUDGET` affords for its input
size (:func:`default_count`); ``windows=EVERY`` asks for every window that tiles the clip; a start time asks
for one window from there. The prediction is the mean of the windows' probabilities. :class:`Coverage`
records what was seen; :func:`prediction_note` and :func:`seen_note` put it in words, saying "the whole clip"
only when the windows leave no frame out.
"""

from __future__ import annotations

from dataclasses import dataclass

import mvt

WINDOW_BUDGET = 16 * 224 * 224
"""Input elements (frames × pixels) one model's default windows may add up to: one Kinetics-size window
(16 frames of 224²). A SynthMotion model (16 × 112²) gets 4 windows, every Kinetics-size model one: what a
four-model comparison affords within the speed targets on two cores (measured by ``bench/app.py``)."""
EVERY = 0
"""``windows=EVERY``: every window that tiles the clip (at most :data:`mvt.video.MAX_WINDOWS`)."""


def default_count(spec: mvt.ModelSpec) -> int:
    """How many windows a model gets by default: :data:`WINDOW_BUDGET` over its input size, at least one."""
    return max(1, WINDOW_BUDGET // (int(spec.num_frames) * int(spec.crop_size) ** 2))


def count_for(spec: mvt.ModelSpec, windows: int | None) -> int | None:
    """The window count to read for a request's ``windows`` (``None``: the model's default; :data:`EVERY`:
    every window, returned as ``None``; ``N``: at most N)."""
    if windows is None:
        return default_count(spec)
    return None if int(windows) == EVERY else max(1, int(windows))


@dataclass(frozen=True)
class Coverage:
    """What part of the clip a model saw: each window's ``(start, end)`` in clip seconds (end: the last frame's
    end), how many windows would tile the clip, the clip's duration, and how the windows were chosen
    (``"default"``, ``"every"`` or ``"start"``: one window from a start time)."""

    spans: tuple[tuple[float, float], ...]
    needed: int
    duration_s: float
    chosen: str = "default"
    frame_s: float = 0.0
    """One source frame's duration (the tolerance of :attr:`whole`)."""

    @property
    def count(self) -> int:
        return len(self.spans)

    @property
    def seen_s(self) -> float:
        """Seconds of the clip inside at least one window."""
        total, end = 0.0, -1.0
        for a, b in sorted(self.spans):
            a = max(a, end)
            total += max(0.0, b - a)
            end = max(end, b)
        return total

    @property
    def whole(self) -> bool:
        """Whether the windows leave no part of the clip out (within a frame's tolerance)."""
        first, last = min(a for a, _ in self.spans), max(b for _, b in self.spans)
        slack = 1.5 * self.frame_s
        ends = first <= slack and last >= self.duration_s - slack
        return ends and self.seen_s >= self.duration_s - slack * self.count


def coverage(clips: list[mvt.Clip], stride: int, duration_s: float, chosen: str) -> Coverage:
    """The :class:`Coverage` of ``clips`` (the windows :func:`mvt.read_windows` returned)."""
    fps = float(clips[0].fps) if clips and clips[0].fps else 0.0
    frame = 1.0 / fps if fps > 0 else 0.0
    spans = tuple((float(c.times[0]), float(c.times[-1]) + frame) for c in clips)
    n = round(duration_s * fps) if fps > 0 else 0
    needed = mvt.video.window_count(max(n, 1), len(clips[0].times), max(1, stride), None)[1]
    return Coverage(spans, needed, float(duration_s), chosen, frame)


def _range(a: float, b: float) -> str:
    return f"{a:.2f}–{b:.2f} s"


def prediction_note(cov: Coverage | None) -> str:
    """How the prediction was made: ``average of 4 windows over 0.00–10.00 s`` or ``one window, 4.68–5.28 s``
    (and when that is the whole clip, said so)."""
    if cov is None:
        return ""
    whole = " (the whole clip)" if cov.whole else ""
    if cov.count == 1:
        a, b = cov.spans[0]
        return f"one window, {_range(a, b)}{whole}"
    first, last = cov.spans[0][0], cov.spans[-1][1]
    return f"average of {cov.count} windows over {_range(first, last)}{whole}"


def seen_note(cov: Coverage | None) -> str:
    """What part of the clip the model saw, and what would show more: empty when the windows cover it."""
    if cov is None or cov.whole:
        return ""
    seen = f"{cov.seen_s:.1f} of {cov.duration_s:.1f} s seen"
    if cov.chosen == "start":
        return f"{seen}: one window from the start time (clear it for windows over the whole clip)."
    if cov.count >= cov.needed or cov.chosen == "every":
        return f"{seen} in {cov.count} evenly spaced windows (the most analysed of one clip)."
    more = f"{cov.needed} windows would tile the clip"
    if cov.count == 1:
        return f"{seen}: one window is what this model affords within the speed targets; {more} (Options → analyse every window)."
    return f"{seen} in {cov.count} evenly spaced windows; {more} (Options → analyse every window)."
