"""Train a factorised-encoder ViViT's temporal half on per-frame tokens cached from its frozen spatial encoder.

ViViT model 2 pools every 2-frame tubelet into one token before any temporal mixing, so telling a clockwise swing
from a counter-clockwise one is the temporal encoder's job: it has to compare neighbouring frame tokens. On
SynthMotion the frame tokens of a model trained end to end carry that comparison (a small MLP on pairs of
neighbouring tokens tells cw from ccw on 95-97 % of held-out clips), yet the end-to-end run sits at chance on the
pair for thousands of steps. Trained alone on cached tokens, the temporal encoder finds it after ~2000 steps,
which end to end would cost hours; here a step costs milliseconds. ``--frame-cache N`` of ``python -m mvt.train``
runs this phase: the spatial encoder and patch embedding stay frozen, their tokens for ``N`` augmented clips
are computed once, and ``steps`` optimizer steps train ``temporal_encoder`` and ``head`` on them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .. import synth
from ..zoo import ModelSpec
from .config import TrainConfig
from .data import focus_class_ids
from .steps import lr_at, to_input, train_step

TRAINED_MODULES = ("temporal_encoder", "head")
"""What this phase trains; everything before the temporal encoder's input is frozen."""


class _FromFrames(nn.Module):
    """``model.classify_frames`` as a module's forward (so the ordinary training step applies to it)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.classify_frames(z)


def check_model(model: nn.Module) -> None:
    """Refuse a model without per-frame tokens and a temporal encoder to train on them (ViViT model 2 has both)."""
    if not (hasattr(model, "frame_tokens") and hasattr(model, "temporal_encoder")):
        raise ValueError(f"--frame-cache: {type(model).__name__} has no per-frame tokens (ViViT model 2 has)")


def cache_labels(n: int, cfg: TrainConfig) -> np.ndarray:
    """The class of each cached clip: ``focus_share`` of them from ``focus_classes``, the rest uniform."""
    rng = np.random.default_rng([cfg.seed, 5])
    uniform = rng.integers(len(synth.CLASSES), size=n)
    if not cfg.data.focus_classes:
        return uniform
    focus = rng.choice(focus_class_ids(cfg), size=n)
    return np.where(rng.random(n) < cfg.data.focus_share, focus, uniform)


@torch.no_grad()
def build_cache(
    model: nn.Module,
    cfg: TrainConfig,
    spec: ModelSpec,
    n: int,
    *,
    chunk: int = 32,
    log: Callable[[str], None] = print,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame tokens ``(n, T', D)`` and labels ``(n,)`` of clips ``0 .. n-1`` of the stream ``cfg.seed``
    (classes from :func:`cache_labels`), each under a random SynthMotion symmetry when ``cfg.data.augment``."""
    check_model(model)
    was_training = model.training
    model.eval()
    labels = cache_labels(n, cfg)
    tokens, targets = [], []
    for start in range(0, n, chunk):
        batch = synth.generate(
            min(chunk, n - start),
            cfg.seed,
            frames=spec.num_frames,
            size=spec.crop_size,
            start=start,
            labels=labels[start : start + chunk],
        )
        clips, ys = batch.clips, batch.labels
        if cfg.data.augment:
            ops = np.random.default_rng([cfg.seed, 6, start]).integers(synth.NUM_SYMMETRIES, size=len(ys))
            clips, ys, _ = synth.apply_symmetries(clips, ys, ops)
        tokens.append(model.frame_tokens(to_input(clips, spec)))  # (chunk, T', D)
        targets.append(torch.from_numpy(ys))
        if (start // chunk + 1) % 25 == 0:
            log(f"frame cache: {start + len(ys)}/{n} clips")
    model.train(was_training)
    return torch.cat(tokens), torch.cat(targets)


def fit_on_frame_cache(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    spec: ModelSpec,
    *,
    losses: list[float],
    accs: list[float],
    log: Callable[[str], None] = print,
) -> int:
    """Train ``model``'s temporal encoder and head for ``cfg.schedule.steps`` steps on ``cfg.data.frame_cache``
    cached clips.

    The caller freezes everything else (:data:`TRAINED_MODULES`) and builds ``optimizer`` over what is left.
    Appends each step's loss and batch accuracy to ``losses`` / ``accs``; returns the number of steps run."""
    steps, optim, log_every = cfg.schedule.steps, cfg.optim, cfg.schedule.log_every
    assert steps is not None  # train() refuses a time budget with --frame-cache
    tokens, labels = build_cache(model, cfg, spec, cfg.data.frame_cache, log=log)
    log(f"frame cache: {tuple(tokens.shape)} tokens of {len(labels)} clips")
    head = _FromFrames(model)
    for step in range(steps):
        pick = torch.from_numpy(
            np.random.default_rng([cfg.seed, 7, step]).choice(len(labels), optim.batch_size)
        )
        lr = lr_at(step, steps, optim)
        loss, acc = train_step(
            head,
            optimizer,
            tokens[pick],
            labels[pick],
            lr=lr,
            label_smoothing=optim.label_smoothing,
            grad_clip=optim.grad_clip,
        )
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {step}")
        losses.append(loss)
        accs.append(acc)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            k = log_every
            log(
                f"step {step + 1}/{steps} loss {np.mean(losses[-k:]):.3f} acc {np.mean(accs[-k:]):.3f} "
                f"lr {lr:.2e} (cached frame tokens)"
            )
    return steps
