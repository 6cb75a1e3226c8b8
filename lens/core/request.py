"""A request, its values once: which clip, which models, what to compute for them.

:class:`Request` is what travels from the app or the CLI through the service, the job and the run path to
the result cache; :class:`ResultKey` (what one model's cached result depends on) is derived from it, never
written out a second time. Both are plain, hashable and picklable (a request may cross a process boundary,
e.g. to a ZeroGPU worker). Also here: how a person's text becomes request values (:func:`start_time`,
:func:`class_index`) and :class:`LensError`, the request the service cannot serve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import mvt

MAX_MODELS = 4
"""How many models one comparison shows side by side (the app has this many panels)."""

Options = tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
"""Per-method keyword options, frozen: ``(("rollout", (("view", 0),)), ...)``, sorted (hashable)."""


class LensError(ValueError):
    """A request the service cannot serve; the message says what to do (shown to the user as is)."""


USER_ERRORS = (mvt.VideoError, mvt.WeightsError, LensError)
"""Errors whose message is written for the person who made the request (show it as is)."""


@dataclass(frozen=True)
class ClipInfo:
    """Which clip was analysed: its file name, content hash and what the container says."""

    name: str
    sha256: str
    duration_s: float
    fps: float
    width: int
    height: int
    path: str = field(default="", compare=False)
    """Where the file was read from (for re-running a model on it later; not part of ``report.json``)."""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "duration_s": round(float(self.duration_s), 6),
            "fps": round(float(self.fps), 6),
            "width": int(self.width),
            "height": int(self.height),
        }


def freeze(options: Mapping[str, Mapping[str, Any]] | None) -> Options:
    """Per-method options as a sorted tuple of tuples (the hashable form a key holds)."""
    return tuple(sorted((k, tuple(sorted(v.items()))) for k, v in (options or {}).items()))


@dataclass(frozen=True)
class ResultKey:
    """What a cached model result depends on: clip content, model, start, methods, target, options,
    precision, windows. Made by :meth:`Request.key`."""

    clip_sha256: str
    model: str
    start_s: float | None
    methods: tuple[str, ...]
    target: int | None
    options: Options = ()
    precision: str = "fp32"
    windows: int | None = None


@dataclass(frozen=True)
class Request:
    """One request: ``models`` run on ``clip`` — one window from ``start_s``, or (``None``) evenly spaced
    windows over the clip, ``windows`` of them (``None``: each model's default count; ``0``: every window;
    :mod:`lens.core.windows`) — computing ``methods`` (registry names, normalised; none: predictions only)
    for class ``target`` (``None``: each model's prediction) with per-method ``options``, at ``precision``
    (``"fp32"`` or ``"int8"``)."""

    clip: ClipInfo
    models: tuple[str, ...]
    methods: tuple[str, ...] = ()
    start_s: float | None = None
    target: int | None = None
    options: Options = ()
    precision: str = "fp32"
    windows: int | None = None

    @classmethod
    def of(
        cls,
        clip: ClipInfo,
        models: Sequence[str],
        methods: Sequence[str] = (),
        *,
        start_s: float | None = None,
        target: int | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        precision: str = "fp32",
        windows: int | None = None,
    ) -> Request:
        """A request from plain values (``options`` as a dict of dicts)."""
        return cls(clip, tuple(models), tuple(methods), start_s, target, freeze(options), precision, windows)

    def key(self, model: str) -> ResultKey:
        """The cache key of ``model``'s result for this request."""
        return ResultKey(
            self.clip.sha256, model, self.start_s, self.methods, self.target, self.options, self.precision,
            None if self.start_s is not None else self.windows,
        )  # fmt: skip

    @property
    def keys(self) -> tuple[ResultKey, ...]:
        return tuple(self.key(m) for m in self.models)

    @property
    def option_map(self) -> dict[str, dict[str, Any]]:
        """The options as ``{method: {name: value}}`` (what the methods take)."""
        return {k: dict(v) for k, v in self.options}

    def only(self, *models: str) -> Request:
        """This request for ``models`` alone."""
        return replace(self, models=tuple(models))


def window_count(windows: int | str | bool | None) -> int | None:
    """A window count from a user or a script: empty / ``None`` / ``False`` / ``"default"`` = each model's
    default, ``True`` / ``"all"`` / ``0`` = every window, else a positive number (at most that many)."""
    if windows in (None, "", False, "default"):
        return None
    if windows is True or str(windows).strip().lower() in ("all", "every", "0"):
        return 0
    try:
        value = int(str(windows).strip())
    except ValueError:
        raise LensError(f"windows {windows!r}: use a number, 'all' or leave it empty") from None
    if value < 0:
        raise LensError(f"windows {windows!r}: use a positive number, 'all' or leave it empty")
    return value


def start_time(start_s: float | str | None) -> float | None:
    """A start time from a user: empty, zero or negative means none (evenly spaced windows over the clip)."""
    if start_s in (None, ""):
        return None
    try:
        value = float(start_s)
    except (TypeError, ValueError):
        raise LensError(f"start time {start_s!r} is not a number of seconds") from None
    return value if value > 0 else None


def class_index(text: str, labels: Sequence[str]) -> int | None:
    """A class a person typed or picked: a label (any case), ``class N`` or a number; None if unknown."""
    t = (text or "").strip()
    if not t:
        return None
    lowered = [lab.lower() for lab in labels]
    if t.lower() in lowered:
        return lowered.index(t.lower())
    digits = t.split()[-1]
    if digits.isdigit() and 0 <= int(digits) < max(len(labels), 1):
        return int(digits)
    return None
