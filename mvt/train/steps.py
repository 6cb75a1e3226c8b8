"""One training step and what it needs: the model input, the learning-rate and curriculum schedules, the
optimiser, freezing, and top-1 on held-out clips. Shared by the clip loop (:mod:`mvt.train.run`) and the
frame-cache loop (:mod:`mvt.train.frame_cache`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import synth
from ..distill import Distiller, as_grid, capture_stage
from ..preprocess import normalise
from ..supervision import MaskMoments, StepClasses
from ..zoo import ModelSpec
from .config import OptimConfig, TrainConfig


def to_input(clips: np.ndarray, spec: ModelSpec) -> torch.Tensor:
    """uint8 clips ``(N, T, S, S, 3)`` at ``S = spec.crop_size`` → the model input ``(N, 3, T, S, S)``
    (:func:`mvt.preprocess.normalise`: what ``mvt.preprocess`` gives for a clip already at crop size)."""
    return normalise(clips, spec)


def lr_at(step: int, total: int, optim: OptimConfig) -> float:
    """Linear warm-up to ``optim.lr``, then cosine decay to ``optim.lr * optim.min_lr_ratio``."""
    warmup = max(1, optim.warmup_steps)
    if step < warmup:
        return optim.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = optim.lr * optim.min_lr_ratio
    return floor + (optim.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def easy_fraction(step: int, total: int, cfg: TrainConfig) -> float:
    """Share of easy clips in the batch of ``step``: all of it through the warm-up, then linearly down to
    none at ``cfg.data.curriculum * total``."""
    if cfg.data.curriculum <= 0:
        return 0.0
    start, end = max(1, cfg.optim.warmup_steps), cfg.data.curriculum * total
    if step < start:
        return 1.0
    if step >= end:
        return 0.0
    return 1.0 - (step - start) / max(1.0, end - start)


def freeze_except(model: nn.Module, prefixes: Sequence[str]) -> int:
    """Freeze every parameter of ``model`` outside the modules named ``prefixes``; returns how many parameter
    tensors stay trainable. A prefix that names no parameter is an error (a typo would freeze everything)."""
    under = {
        pre: [n for n, _ in model.named_parameters() if n == pre or n.startswith(pre + ".")]
        for pre in prefixes
    }
    unknown = [pre for pre, names in under.items() if not names]
    if unknown:
        tops = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
        raise ValueError(f"--trainable {unknown} names no parameters; the model's modules are {tops}")
    keep = {n for names in under.values() for n in names}
    for name, p in model.named_parameters():
        p.requires_grad_(name in keep)
    return len(keep)


def make_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms, position embeddings and class tokens (1-D or named so)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or any(k in name for k in ("pos_embed", "rel_pos", "cls_token", "pos_emb"))
        (no_decay if skip else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=(0.9, 0.999))


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    label_smoothing: float = 0.1,
    grad_clip: float = 1.0,
    distiller: Distiller | None = None,
    moments: MaskMoments | None = None,
    masks: np.ndarray | None = None,
    step_classes: StepClasses | None = None,
) -> tuple[float, float]:
    """One optimizer step; returns (loss, batch accuracy). With a ``distiller`` its losses are added; with
    ``moments`` the regression of the actor ``masks`` ``(B, T, H, W)`` from its stage is added; with
    ``step_classes`` the per-time-step class loss of its stage."""
    model.train()
    for group in optimizer.param_groups:
        group["lr"] = lr
    hint = distiller is not None and distiller.hint_weight
    with (
        capture_stage(model, distiller.student_stage) if hint else nullcontext([]) as seen,  # type: ignore[union-attr]
        capture_stage(model, moments.stage) if moments is not None else nullcontext([]) as tapped,
        capture_stage(model, step_classes.stage) if step_classes is not None else nullcontext([]) as stepped,
    ):
        logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    if distiller is not None:
        distiller.train()
        extra = distiller.loss(logits, seen[-1] if seen else None, x)
        loss = loss + extra["hint"] + extra["kd"]
    if moments is not None:
        if masks is None:
            raise ValueError("the mask-moments loss needs the batch's masks")
        loss = loss + moments.loss(as_grid(model, tapped[-1]), masks)
    if step_classes is not None:
        loss = loss + step_classes.loss(as_grid(model, stepped[-1]), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        params = list(model.parameters())
        for extra_head in (distiller, moments, step_classes):
            params += [] if extra_head is None else list(extra_head.proj.parameters())
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return float(loss.detach()), float((logits.detach().argmax(-1) == y).float().mean())


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    spec: ModelSpec,
    *,
    n: int = 200,
    seed: int = 1_000_003,
    batch_size: int = 16,
    shuffle_frames: bool = False,
) -> float:
    """Top-1 accuracy on ``n`` clips of the stream ``seed``. With ``shuffle_frames`` each clip's frames are
    put in a random (seeded) order first, which destroys the motion but keeps every frame."""
    model.eval()
    rng = np.random.default_rng([seed, 7])
    correct = 0
    for start in range(0, n, batch_size):
        batch = synth.generate(
            min(batch_size, n - start), seed, frames=spec.num_frames, size=spec.crop_size, start=start
        )
        clips = batch.clips
        if shuffle_frames:
            order = np.stack([rng.permutation(clips.shape[1]) for _ in range(len(clips))])  # (N, T)
            clips = np.take_along_axis(clips, order[:, :, None, None, None], axis=1)
        logits = model(to_input(clips, spec))
        correct += int((logits.argmax(-1).numpy() == batch.labels).sum())
    return correct / max(1, n)
