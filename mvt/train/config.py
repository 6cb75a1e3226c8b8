"""The configuration of one training run, grouped by concern; its fields are the command line's flags.

:class:`TrainConfig` holds the architecture and seed and five groups: where the weights start
(:class:`StartConfig`), the clips (:class:`DataConfig`), the optimiser and its learning-rate schedule
(:class:`OptimConfig`), the auxiliary losses (:class:`AuxConfig`), the budget (:class:`ScheduleConfig`) and
the evaluation (:class:`EvalConfig`). Every field's default, type and help text are written once, here:
``mvt.train.cli`` builds the argument parser from them (``--batch-size`` is ``optim.batch_size``), and a
checkpoint's ``config`` metadata is :meth:`TrainConfig.flat` (field name → value, as it always was).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def option(default: Any, help: str, **metadata: Any) -> Any:
    """A config field with its command-line help (``metadata`` may rename the flag: ``flag="--model"``)."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class StartConfig:
    """Where the weights start."""

    init: str | None = option(
        None, "checkpoint to start from (continues a previous run, through the arch's converter)"
    )
    warm_start: str | None = option(
        None, "copy matching tensors from a related model's checkpoint (mvt.train.init.warm_start)"
    )
    motion_init: bool = option(
        False, "space-time patch embeddings start as sums + temporal ramps (ignored with --init)"
    )


@dataclass(frozen=True)
class DataConfig:
    """Which clips each step trains on."""

    buffer_clips: int = option(
        0,
        "replay buffer of this many clips (0: every clip is fresh and used once); the buffer is filled first, "
        "then each step replaces the --fresh-per-step oldest clips",
    )
    fresh_per_step: int = option(4, "new clips per step into the buffer")
    augment: bool = option(
        True, "a random exact SynthMotion symmetry on each training clip", flag="--no-augment"
    )
    curriculum: float = option(
        0.3, "fraction of the steps during which some clips come from the calmer mvt.synth.EASY_CONFIG"
    )
    focus_classes: tuple[str, ...] = option(
        (),
        "comma-separated classes to oversample (e.g. rotate_cw,rotate_ccw); needs a buffer or --frame-cache",
    )
    focus_share: float = option(0.0, "share of each batch drawn from --focus-classes")
    frame_cache: int = option(
        0,
        "ViViT model 2: train its temporal encoder and head on the cached per-frame tokens of N augmented clips "
        "(mvt.train.frame_cache); 0: train on clips",
    )


@dataclass(frozen=True)
class OptimConfig:
    """AdamW, its learning-rate schedule and what it updates."""

    batch_size: int = option(16, "clips per optimizer step")
    lr: float = option(1e-3, "peak learning rate")
    min_lr_ratio: float = option(0.01, "the cosine decay ends at lr × this")
    warmup_steps: int = option(
        20, "linear warm-up steps (fixed, not a fraction of --steps, so the first steps do not depend on it)"
    )
    weight_decay: float = option(0.05, "AdamW weight decay (none on biases, norms, positions, class tokens)")
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy")
    grad_clip: float = option(1.0, "gradient-norm clip (0: none)")
    trainable: tuple[str, ...] = option(
        (), "comma-separated module names to train (the rest frozen at their --init values); default all"
    )


@dataclass(frozen=True)
class AuxConfig:
    """Auxiliary losses: distillation from a teacher and the SynthMotion mask/step supervision."""

    teacher: str | None = option(
        None, "a trained .synth checkpoint to distil from (its arch comes from its metadata)"
    )
    hint_weight: float = option(1.0, "weight of the teacher token-grid hint")
    hint_stage: int = option(1, "student stage matched to the teacher's grid")
    teacher_stage: int = option(0, "teacher stage giving the grid hint")
    kd_weight: float = option(0.0, "weight of the soft-logit loss against the teacher (temperature 2)")
    mask_weight: float = option(0.0, "weight of the actor-mask moments loss (mvt.supervision.MaskMoments)")
    mask_stage: int = option(-1, "stage whose tokens regress the mask moments")
    step_class_weight: float = option(
        0.0, "weight of the per-time-step class loss (mvt.supervision.StepClasses)"
    )
    step_class_stage: int = option(0, "stage whose time steps each tell the class")


@dataclass(frozen=True)
class ScheduleConfig:
    """How long the run is, and how often it logs."""

    steps: int | None = option(None, "exact number of optimizer steps (default: chosen from the time budget)")
    minutes: float = option(15.0, "wall-clock budget (chooses --steps from the first steps' cost)")
    cpu_minutes: float | None = option(
        None, "CPU-time budget of this process, all threads (overrides --minutes)"
    )
    max_minutes: float | None = option(None, "hard wall-clock stop (the run may end before its schedule)")
    log_every: int = option(10, "log every N steps")


@dataclass(frozen=True)
class EvalConfig:
    """The held-out clips."""

    eval_clips: int = option(200, "fresh clips for the final top-1 (in frame order and shuffled)")
    eval_seed: int | None = option(None, "stream of the evaluation clips (default: seed + 1000003)")
    eval_every: int = option(0, "log held-out top-1 every N steps (0: only at the end)")
    eval_every_clips: int = option(96, "clips for each --eval-every evaluation")


GROUPS: dict[str, type] = {
    "start": StartConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "aux": AuxConfig,
    "schedule": ScheduleConfig,
    "eval": EvalConfig,
}
"""The groups of :class:`TrainConfig`, by attribute name."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on (stored in the checkpoint's metadata as :meth:`flat`)."""

    arch: str = field(metadata={"help": "architecture, e.g. mvit_t, vivit_t1, hvt_t", "flag": "--model"})
    seed: int = option(0, "training clip stream and initialisation seed")
    start: StartConfig = field(default_factory=StartConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    aux: AuxConfig = field(default_factory=AuxConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def resolved_eval_seed(self) -> int:
        return self.seed + 1_000_003 if self.eval.eval_seed is None else self.eval.eval_seed

    def flat(self) -> dict[str, Any]:
        """Every setting by its field name (``{"arch": …, "seed": …, "init": …, "batch_size": …}``)."""
        out = {"arch": self.arch, "seed": self.seed}
        for group in GROUPS:
            out.update(asdict(getattr(self, group)))
        return out

    @classmethod
    def from_flat(cls, **settings: Any) -> TrainConfig:
        """A config from settings named as in :meth:`flat` (each goes to its group); unknown names fail."""
        top = {k: settings.pop(k) for k in ("arch", "seed") if k in settings}
        groups = {}
        for name, group in GROUPS.items():
            names = {f.name for f in fields(group)}
            groups[name] = group(**{k: settings.pop(k) for k in list(settings) if k in names})
        if settings:
            raise TypeError(f"unknown training settings {sorted(settings)}; known: {sorted(flat_names())}")
        return cls(**top, **groups)

    def replace(self, **settings: Any) -> TrainConfig:
        """A copy with the settings named as in :meth:`flat` changed."""
        return TrainConfig.from_flat(**{**self.flat(), **settings})


def flat_names() -> list[str]:
    """Every setting's name, in :meth:`TrainConfig.flat` order."""
    return ["arch", "seed"] + [f.name for group in GROUPS.values() for f in fields(group)]
