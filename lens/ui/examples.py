"""The shipped example clips: a name, what each shows, the model set it suits, and — for SynthMotion — the truth.

The SynthMotion examples are generated (:func:`mvt.synth.example_scenes`), so the actor's mask is known for
every frame: :func:`ground_truth` recognises an example by its content hash (whatever the file was renamed
to on upload) and returns the mask at any clip time, which the app shows beside the attention. Nobody can
say that of a real clip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from mvt import assets

from ..core.storage import file_sha256
from .defaults import KINETICS, SYNTHMOTION

EXAMPLES_DIR = assets.EXAMPLES
"""The example clips and their metadata (package data: ``mvt/assets/examples``)."""


@dataclass(frozen=True)
class Example:
    file: str
    title: str
    shows: str
    model_set: str

    @property
    def path(self) -> Path:
        return EXAMPLES_DIR / self.file

    @property
    def label(self) -> str:
        """How the example is listed: its title and the set it suits."""
        return f"{self.title} · {self.model_set} set"

    def label_here(self, status: str) -> str:
        """The label with how its set stands here (:func:`lens.ui.defaults.set_status`), said first (long labels
        are cut): ``needs a download`` when its models' weights are not on disk, ``(offline here)`` when they
        cannot be had."""
        if status.startswith("unavailable"):
            return f"{self.title} · needs a download (offline here) · {self.model_set} set"
        if status.startswith("downloads"):
            size = status.removeprefix("downloads ").removesuffix(" on first use")
            return f"{self.title} · needs a download ({size}) · {self.model_set} set"
        return self.label


def labels_here(*, probe: bool = True) -> list[str]:
    """Every available example's label, saying which need a download or cannot run here."""
    from .defaults import set_status

    status = {s: set_status(s, probe=probe) for s in {e.model_set for e in available()}}
    return [e.label_here(status[e.model_set]) for e in available()]


def _synth(cls: str, what: str) -> Example:
    return Example(
        f"synth_{cls}.mp4",
        f"SynthMotion: {cls.replace('_', ' ')}",
        f"A striped actor {what} among still distractors (16 frames; its mask is known).",
        SYNTHMOTION,
    )


EXAMPLES: tuple[Example, ...] = (
    Example(
        "sports2d_backflip.mp4",
        "Jumping jacks, then a backflip",
        "Real footage, 7.7 s: a man does jumping jacks on a box, then a backflip off it; a woman walks past.",
        KINETICS,
    ),
    _synth("move_left", "moves left"),
    _synth("rotate_cw", "swings clockwise"),
    _synth("grow", "grows"),
    Example(
        "synth_10s.mp4",
        "SynthMotion: 16 motions in 10 s",
        "Sixteen SynthMotion scenes back to back, each motion twice (the models see the middle one).",
        SYNTHMOTION,
    ),
    _synth("move_down", "moves down"),
    _synth("rotate_ccw", "swings counter-clockwise"),
    _synth("shrink", "shrinks"),
)
"""In the order the app lists them; only those whose file is present are offered (:func:`available`)."""


def available() -> list[Example]:
    return [e for e in EXAMPLES if e.path.is_file()]


@dataclass(frozen=True)
class Truth:
    """The actor's mask at every frame of a SynthMotion example: bool ``(N, H, W)`` at ``fps``."""

    masks: np.ndarray
    fps: float
    frames: np.ndarray
    """uint8 ``(N, H, W, 3)``: the clip as generated (what the file holds, before compression)."""

    def index(self, times: np.ndarray | list[float]) -> np.ndarray:
        """The frame shown at each clip time (seconds)."""
        t = np.asarray(times, dtype=np.float64)
        return np.clip(np.floor(t * self.fps + 1e-6).astype(int), 0, len(self.masks) - 1)

    def at(self, times: np.ndarray | list[float]) -> np.ndarray:
        """The masks at clip ``times``: bool ``(len(times), H, W)``."""
        return self.masks[self.index(times)]

    def picture(
        self, times: np.ndarray | list[float], color: tuple[int, int, int] = (240, 228, 66)
    ) -> np.ndarray:
        """The frames at ``times`` with the actor in ``color`` over a dimmed scene: uint8 ``(len, H, W, 3)``."""
        idx = self.index(times)
        frames = self.frames[idx].astype(np.float32)
        mask = self.masks[idx][..., None]  # (N, H, W, 1)
        tint = 0.45 * frames + 0.55 * np.asarray(color, dtype=np.float32)
        return np.where(mask, tint, 0.35 * frames).round().astype(np.uint8)


@cache
def _truths() -> dict[str, Truth]:
    """``{sha256 of the shipped file: Truth}`` for every SynthMotion example present."""
    from mvt.synth import example_scenes

    out = {}
    for filename, (batch, fps) in example_scenes().items():
        path = EXAMPLES_DIR / filename
        if path.is_file():
            masks, frames = np.concatenate(list(batch.masks)), np.concatenate(list(batch.clips))
            out[file_sha256(path)] = Truth(masks, float(fps), frames)
    return out


def ground_truth(sha256: str) -> Truth | None:
    """The truth of the example whose content hash is ``sha256``, or None (not a SynthMotion example)."""
    return _truths().get(sha256)


def example_for(path: str | os.PathLike) -> Example | None:
    """The example a file is (by content), or None."""
    sha = file_sha256(path)
    return next((e for e in available() if file_sha256(e.path) == sha), None)
