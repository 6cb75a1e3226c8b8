"""Feature and logit distillation from a trained SynthMotion model into another family (training only).

MViT trained from scratch on SynthMotion sits at chance for thousands of steps: no single frame tells the
class, so the 8-way label gives no first-order signal until motion features exist. A trained model of another
family gives one: its token grid is a dense regression target (FitNets-style *hints*) that the student's early
stages can follow from the first step, and its logits are soft targets (Hinton et al., 2015).

:class:`Distiller` reads both models' token grids through their ``stage_taps`` (identity modules every model
has for Grad-CAM), average-pools the teacher's grid onto the student's, maps the student's channels with a
1×1×1 projection (trained with the student, dropped afterwards) and scores the mean squared error against the
teacher's per-token layer-normalised features. The student's architecture and its saved checkpoint are
unchanged; the teacher is named in the checkpoint's metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


@contextmanager
def capture_stage(model: nn.Module, stage: int) -> Iterator[list[torch.Tensor]]:
    """While open, the output of ``model.stage_taps[stage]`` of each forward is appended to the yielded list."""
    taps = getattr(model, "stage_taps", None)
    if taps is None or not -len(taps) <= stage < len(taps):
        raise ValueError(f"{type(model).__name__} has no stage tap {stage}")
    seen: list[torch.Tensor] = []
    handle = taps[stage].register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        yield seen
    finally:
        handle.remove()


def as_grid(model: nn.Module, tapped: torch.Tensor) -> torch.Tensor:
    """A stage tap's tensor as a space-time grid ``(B, C, T, H, W)``.

    MViT, MMViT and ViViT taps already are grids. HVT taps are token sequences ``(B, C, G, 1, N)``; the first
    stage of a tubelet HVT (``G = 1``, ``N`` = the embedding's tokens, in (t, h, w) order) is unflattened onto
    its embedding grid. Later HVT stages are 1-D pooled sequences, not grids, and are refused."""
    b, c, g, h, n = tapped.shape
    cfg = getattr(model, "cfg", None)
    if not hasattr(cfg, "pool_block_width"):  # not an HVT: the tap is a grid already
        return tapped
    if not cfg.tubelet or g != 1:
        raise ValueError("a per-frame HVT's stage taps are per-frame token sequences, not a space-time grid")
    grid = (cfg.num_frames // cfg.tubelet, cfg.img_size // cfg.patch_size, cfg.img_size // cfg.patch_size)
    if grid[0] * grid[1] * grid[2] != h * n:
        raise ValueError(f"an HVT tap of {n} tokens is not the {grid} embedding grid (only stage 0 is)")
    return tapped.reshape(b, c, *grid)  # (B, C, 1, 1, T'H'W') -> (B, C, T', H', W')


class Distiller(nn.Module):
    """Distillation losses from a frozen ``teacher`` into a student.

    ``hint_weight`` scales the grid hint (student ``student_stage`` ↔ teacher ``teacher_stage``);
    ``kd_weight`` scales ``T² · KL(teacher ‖ student)`` on logits softened by ``temperature``. Only
    :attr:`proj` has parameters; give them to the student's optimizer."""

    def __init__(
        self,
        teacher: nn.Module,
        student_channels: int,
        teacher_channels: int,
        *,
        student_stage: int = 1,
        teacher_stage: int = 0,
        hint_weight: float = 1.0,
        kd_weight: float = 0.0,
        temperature: float = 2.0,
    ) -> None:
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.proj = nn.Conv3d(student_channels, teacher_channels, kernel_size=1)
        self.student_stage, self.teacher_stage = student_stage, teacher_stage
        self.hint_weight, self.kd_weight, self.temperature = hint_weight, kd_weight, temperature
        self.history: list[tuple[float, float]] = []
        """(hint, kd) of every :meth:`loss` call, for the training log."""

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        self.teacher.eval()  # the teacher stays in inference mode (no dropout, no drop-path)
        return self

    @torch.no_grad()
    def targets(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The teacher's logits ``(B, K)`` and, with a hint, its normalised grid ``(B, C_t, T, H, W)``."""
        if not self.hint_weight:
            return self.teacher(x), None
        with capture_stage(self.teacher, self.teacher_stage) as seen:
            logits = self.teacher(x)
        grid = as_grid(self.teacher, seen[-1])
        grid = F.layer_norm(grid.movedim(1, -1), grid.shape[1:2]).movedim(-1, 1)  # per-token LayerNorm
        return logits, grid

    def loss(
        self, student_logits: torch.Tensor, student_grid: torch.Tensor | None, x: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``{"hint": …, "kd": …}`` (weighted; a zero weight gives a zero tensor) for one batch.
        ``student_grid`` (the student's tapped stage) is needed only with a hint."""
        t_logits, t_grid = self.targets(x)
        out = {}
        zero = student_logits.new_zeros(())
        if self.hint_weight:
            if student_grid is None:
                raise ValueError("the hint needs the student's tapped stage grid")
            assert t_grid is not None
            t_grid = F.adaptive_avg_pool3d(t_grid, student_grid.shape[2:])  # (B, C_t, T_s, H_s, W_s)
            out["hint"] = self.hint_weight * F.mse_loss(self.proj(student_grid), t_grid)
        else:
            out["hint"] = zero
        if self.kd_weight:
            tau = self.temperature
            kl = F.kl_div(
                F.log_softmax(student_logits / tau, -1),
                F.log_softmax(t_logits / tau, -1),
                log_target=True,
                reduction="batchmean",
            )
            out["kd"] = self.kd_weight * tau * tau * kl
        else:
            out["kd"] = zero
        self.history.append((float(out["hint"].detach()), float(out["kd"].detach())))
        return out
