"""The auxiliary losses of a run, beside the cross-entropy: distillation from a teacher (:mod:`mvt.distill`)
and the SynthMotion mask / per-time-step supervision (:mod:`mvt.supervision`). Each reads a stage tap."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import synth
from ..distill import Distiller, capture_stage
from ..supervision import MaskMoments, StepClasses
from ..weights import load_file
from ..zoo import ModelSpec, get_arch, load_state_dict_strict
from .checkpoint import read_metadata
from .config import AuxConfig, TrainConfig


def stage_channels(model: nn.Module, stage: int, spec: ModelSpec) -> int:
    """Channels of ``model``'s stage tap ``stage`` (one dummy clip through the model; every tap is
    ``(B, C, ...)``)."""
    probe = torch.zeros(1, 3, spec.num_frames, spec.crop_size, spec.crop_size)
    with torch.no_grad(), capture_stage(model, stage) as seen:
        model.eval()(probe)
    return seen[-1].shape[1]


def make_distiller(model: nn.Module, aux: AuxConfig, spec: ModelSpec) -> Distiller:
    """A :class:`Distiller` from ``aux.teacher`` (a ``.synth`` checkpoint, built from its metadata's arch)."""
    assert aux.teacher is not None
    teacher_arch = read_metadata(aux.teacher).get("arch")
    if not teacher_arch:
        raise ValueError(
            f"--teacher {aux.teacher} has no 'arch' in its metadata (not a mvt.train checkpoint)"
        )
    teacher = get_arch(teacher_arch).builder(num_classes=len(synth.CLASSES))
    load_state_dict_strict(teacher, load_file(aux.teacher), what=f"--teacher {aux.teacher}")
    channels = (1, 1)  # the projection is unused without a hint
    if aux.hint_weight:
        channels = (
            stage_channels(model, aux.hint_stage, spec),
            stage_channels(teacher, aux.teacher_stage, spec),
        )
    return Distiller(
        teacher,
        *channels,
        student_stage=aux.hint_stage,
        teacher_stage=aux.teacher_stage,
        hint_weight=aux.hint_weight,
        kd_weight=aux.kd_weight,
    )


@dataclass
class AuxLosses:
    """The auxiliary losses a run adds (``None``: not used). Their projection heads train with the model."""

    distiller: Distiller | None = None
    moments: MaskMoments | None = None
    step_classes: StepClasses | None = None

    @classmethod
    def build(
        cls, model: nn.Module, cfg: TrainConfig, spec: ModelSpec, log: Callable[[str], None] = print
    ) -> AuxLosses:
        """The losses ``cfg.aux`` asks for, built in a fixed order (each draws its initialisation from the
        seeded generator)."""
        aux, out = cfg.aux, cls()
        if aux.teacher is not None:
            out.distiller = make_distiller(model, aux, spec)
            log(f"distilling from {aux.teacher}: hint {aux.hint_weight:g}, kd {aux.kd_weight:g}")
        if aux.mask_weight:
            out.moments = MaskMoments(
                stage_channels(model, aux.mask_stage, spec), stage=aux.mask_stage, weight=aux.mask_weight
            )
            log(f"mask moments from stage {aux.mask_stage}: weight {aux.mask_weight:g}")
        if aux.step_class_weight:
            out.step_classes = StepClasses(
                stage_channels(model, aux.step_class_stage, spec),
                len(synth.CLASSES),
                stage=aux.step_class_stage,
                weight=aux.step_class_weight,
                smoothing=cfg.optim.label_smoothing,
            )
            log(f"per-time-step classes from stage {aux.step_class_stage}: weight {aux.step_class_weight:g}")
        return out

    def heads(self) -> dict[str, nn.Module]:
        """The trainable projections, by the names the optimizer's module dict gives them."""
        named = {"distill": self.distiller, "moments": self.moments, "step_classes": self.step_classes}
        return {name: loss.proj for name, loss in named.items() if loss is not None}

    def step_kwargs(self) -> dict:
        """The keyword arguments of :func:`mvt.train.steps.train_step` for these losses."""
        return {"distiller": self.distiller, "moments": self.moments, "step_classes": self.step_classes}

    def log_suffix(self, k: int) -> str:
        """The losses' means over the last ``k`` steps, for the training log."""
        out = ""
        if self.distiller is not None:
            out += " hint {:.3f} kd {:.3f}".format(*np.mean(self.distiller.history[-k:], 0))
        if self.moments is not None:
            out += f" mask {np.mean(self.moments.history[-k:]):.3f}"
        if self.step_classes is not None:
            out += f" steps {np.mean(self.step_classes.history[-k:]):.3f}"
        return out
