"""The training clips of a run: the SynthMotion stream, optionally through a replay buffer.

By default step ``k`` trains on clips ``k·B … k·B + B - 1`` of the stream ``cfg.seed``, so no clip is seen
twice. Generating a clip costs about as much as a small model's training step on it, so ``buffer_clips``
trains from a buffer instead, replacing the ``fresh_per_step`` oldest clips with new ones of the stream at
every step (``focus_share`` of each batch drawn from ``focus_classes``). During the curriculum part of each
new batch of clips is easy (:func:`mvt.train.steps.easy_fraction`). Every drawn clip gets a random exact
symmetry of SynthMotion unless ``augment`` is off.
"""

from __future__ import annotations

import numpy as np

from .. import synth
from ..zoo import ModelSpec
from .config import TrainConfig
from .steps import easy_fraction

Batch = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""Training clips ``(N, T, H, W, 3)`` uint8, labels ``(N,)`` and actor masks ``(N, T, H, W)`` (or None)."""


def focus_class_ids(cfg: TrainConfig) -> list[int]:
    """The class indices of ``cfg.data.focus_classes``, refusing unknown names."""
    unknown = sorted(set(cfg.data.focus_classes) - set(synth.CLASSES))
    if unknown:
        raise ValueError(f"--focus-classes: unknown {unknown}; SynthMotion has {list(synth.CLASSES)}")
    return [synth.CLASSES.index(c) for c in cfg.data.focus_classes]


class ClipStream:
    """Batches of training clips for each step (see the module docstring). ``masks`` keeps the actor masks
    (for the mask-moments loss). The buffer, if any, is filled on construction from clips ``0 …`` of the
    stream; its length of schedule ``total`` (``None`` while a time budget is still being decided) sets
    the curriculum of the clips it generates."""

    def __init__(self, cfg: TrainConfig, spec: ModelSpec, *, masks: bool, total: int | None) -> None:
        self.cfg, self.masks = cfg, masks
        self.frames, self.size = spec.num_frames, spec.crop_size
        data = cfg.data
        self.focus_ids = focus_class_ids(cfg)
        if data.focus_classes and not data.buffer_clips and not data.frame_cache:
            raise ValueError("--focus-classes oversamples the replay buffer: give --buffer-clips")
        self.buffer: Batch | None = None
        if data.buffer_clips and not data.frame_cache:
            self.buffer = self.fresh(0, data.buffer_clips, 0, total)

    def fresh(self, start: int, count: int, step: int, total: int | None) -> Batch:
        """Clips ``start .. start + count - 1`` of the stream; the first share is easy during the curriculum."""
        cfg = self.cfg
        easy = round(count * easy_fraction(step, total or 10**9, cfg))
        first = synth.generate(
            easy, cfg.seed, frames=self.frames, size=self.size, start=start, config=synth.EASY_CONFIG
        )
        rest = synth.generate(count - easy, cfg.seed, frames=self.frames, size=self.size, start=start + easy)
        masks = np.concatenate([first.masks, rest.masks]) if self.masks else None
        return np.concatenate([first.clips, rest.clips]), np.concatenate([first.labels, rest.labels]), masks

    def batch(self, step: int, total: int | None) -> Batch:
        """The (augmented) batch of ``step``: fresh clips, or a draw from the buffer."""
        cfg, buffer = self.cfg, self.buffer
        bs = cfg.optim.batch_size
        rng = np.random.default_rng([cfg.seed, 2, step])
        if buffer is None:
            clips, labels, masks = self.fresh(step * bs, bs, step, total)
        else:
            focus = np.flatnonzero(np.isin(buffer[1], self.focus_ids)) if self.focus_ids else np.empty(0, int)
            n_focus = min(round(bs * cfg.data.focus_share), len(focus))
            if n_focus == 0:
                pick = np.sort(rng.choice(len(buffer[1]), size=bs, replace=False))
            else:  # n_focus clips of the focus classes, the rest uniformly from the other slots
                chosen = rng.choice(focus, size=n_focus, replace=False)
                others = np.setdiff1d(np.arange(len(buffer[1])), chosen)
                pick = np.sort(np.concatenate([chosen, rng.choice(others, size=bs - n_focus, replace=False)]))
            clips, labels = buffer[0][pick], buffer[1][pick]
            masks = None if buffer[2] is None else buffer[2][pick]
        if cfg.data.augment:
            ops = rng.integers(synth.NUM_SYMMETRIES, size=len(labels))
            clips, labels, masks = synth.apply_symmetries(clips, labels, ops, masks)
        return clips, labels, masks

    def refill(self, step: int, total: int | None) -> Batch | None:
        """New clips that replace the oldest buffer slots after ``step`` (None without a buffer)."""
        per_step = self.cfg.data.fresh_per_step
        if self.buffer is None or per_step <= 0:
            return None
        return self.fresh(self.cfg.data.buffer_clips + step * per_step, per_step, step, total)

    def next(self, step: int, total: int | None) -> tuple[Batch, Batch | None]:
        """The batch of ``step`` and the clips that refill the buffer after it (made together, in a worker)."""
        return self.batch(step, total), self.refill(step, total)

    def absorb(self, new: Batch | None, step: int) -> None:
        """Put the refill clips of ``step`` into the oldest buffer slots (before the next batch is drawn)."""
        if new is None:
            return
        assert self.buffer is not None
        slots = (np.arange(len(new[1])) + step * self.cfg.data.fresh_per_step) % self.cfg.data.buffer_clips
        for kept, added in zip(self.buffer, new):
            if kept is not None:
                kept[slots] = added
