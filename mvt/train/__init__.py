"""Train the small configs of each family on SynthMotion (CPU, deterministic) and ship the weights.

    python -m mvt.train --model mvit_t --minutes 15 --seed 0 --out mvt/assets/weights/

Clips are generated on the fly (``mvt.synth``): by default step ``k`` trains on clips ``k·B … k·B + B - 1``
of the stream ``seed``, so no clip is seen twice. Generating a clip costs about as much as a small model's
training step on it, so ``--buffer-clips N`` trains from a replay buffer of ``N`` clips instead, replacing the
``--fresh-per-step`` oldest with new clips of the stream at every step; each drawn clip gets a random exact
symmetry of SynthMotion (mirror, transpose, time reversal with the label mapped,
:func:`mvt.synth.symmetry_label`) unless ``--no-augment``. ``--motion-init`` starts space-time patch
embeddings as half appearance, half temporal-difference filters (:func:`~mvt.train.init.motion_init`); ``--warm-start``
copies matching tensors from a related model's checkpoint (:func:`~mvt.train.init.warm_start`, e.g. HVT into ViViT);
``--teacher`` adds distillation from a trained model of another family (:mod:`mvt.distill`: a token-grid
hint and, with ``--kd-weight``, soft logits); ``--mask-weight`` adds a regression of the actor's per-time mask
moments from a stage's tokens (:mod:`mvt.supervision`); ``--init`` continues a run (through the arch's converter, so
an ``mvit_t`` checkpoint starts an ``mmvit_t``). The model is evaluated on ``--eval-clips`` fresh clips of
another stream (``--eval-seed``), in frame order and with the frames shuffled (a model that uses time drops towards
chance when the order is destroyed). The result is ``<out>/<arch>.synth.safetensors`` with string metadata:
``arch, config, classes, seed, eval_seed, eval_clips, accuracy, shuffled_accuracy, steps, batch_size,
minutes, commit, lineage`` (:func:`~mvt.train.checkpoint.lineage`: every run it was continued or warm-started from).

Budget: ``--minutes`` is wall-clock time; ``--cpu-minutes`` is CPU time of this process (all threads), which
does not depend on what else runs on the machine: "20 minutes on 2 free cores" is ``--cpu-minutes 40``.
Either chooses ``steps`` from the cost of the first few steps; the chosen number is printed and stored.

Curriculum: for the first ``curriculum`` fraction of the steps part of each batch comes from a calmer
SynthMotion (:data:`mvt.synth.EASY_CONFIG`: few distractors, faint texture), from all of the batch (until
the warm-up ends) down to none; the rest of training and all evaluation use the default generator.

Determinism: weights depend only on ``(arch, seed, steps, batch_size, lr, ...)`` and the thread count.
``--steps N`` reruns a budgeted run exactly: the warm-up and the start of the curriculum do not depend on
``steps``, and the budget is decided inside the warm-up.

Layout (one concern a module): :mod:`~mvt.train.config` (the settings, grouped; the flags come from them),
:mod:`~mvt.train.cli` (``python -m mvt.train``), :mod:`~mvt.train.run` (:func:`train`, in stages),
:mod:`~mvt.train.steps` (one optimizer step, schedules, evaluation), :mod:`~mvt.train.data` (the clip stream),
:mod:`~mvt.train.init` (starting weights), :mod:`~mvt.train.losses` (auxiliary losses),
:mod:`~mvt.train.frame_cache` (ViViT model 2's cached-token phase), :mod:`~mvt.train.checkpoint` (the file
and its metadata).
"""

from .checkpoint import MAX_FILE_BYTES, git_commit, lineage, read_metadata, save_checkpoint
from .config import (
    AuxConfig,
    DataConfig,
    EvalConfig,
    OptimConfig,
    ScheduleConfig,
    StartConfig,
    TrainConfig,
)
from .init import WARM_START_RENAMES, motion_init, warm_start
from .losses import make_distiller, stage_channels
from .run import TrainResult, train
from .steps import easy_fraction, evaluate, freeze_except, lr_at, make_optimizer, to_input, train_step

__all__ = [
    "MAX_FILE_BYTES",
    "WARM_START_RENAMES",
    "AuxConfig",
    "DataConfig",
    "EvalConfig",
    "OptimConfig",
    "ScheduleConfig",
    "StartConfig",
    "TrainConfig",
    "TrainResult",
    "easy_fraction",
    "evaluate",
    "freeze_except",
    "git_commit",
    "lineage",
    "lr_at",
    "make_distiller",
    "make_optimizer",
    "motion_init",
    "read_metadata",
    "save_checkpoint",
    "stage_channels",
    "to_input",
    "train",
    "train_step",
    "warm_start",
]
