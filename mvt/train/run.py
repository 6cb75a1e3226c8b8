"""One training run, in the stages a reader follows: the model, its starting weights, what trains, the
auxiliary losses, the steps (on clips, or on cached frame tokens), the final evaluation, the checkpoint."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import synth
from ..zoo import ModelSpec, get_arch, get_spec
from .checkpoint import git_commit, lineage, save_checkpoint
from .config import TrainConfig
from .data import ClipStream
from .frame_cache import TRAINED_MODULES, check_model, fit_on_frame_cache
from .init import start_weights
from .losses import AuxLosses
from .steps import easy_fraction, evaluate, freeze_except, lr_at, make_optimizer, to_input, train_step

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainResult:
    steps: int
    accuracy: float
    shuffled_accuracy: float
    minutes: float
    final_loss: float
    path: Path | None


def train(
    cfg: TrainConfig,
    *,
    out: str | Path | None = None,
    model: nn.Module | None = None,
    spec: ModelSpec | None = None,
    log: Log = print,
) -> TrainResult:
    """Train ``cfg.arch`` (or the given ``model`` with input ``spec``) and write ``<out>/<arch>.synth.safetensors``.

    Deterministic: the weights depend only on ``cfg`` and the thread count (a time budget decides ``steps``
    inside the fixed warm-up, so ``--steps N`` reruns a budgeted run exactly).
    """
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    registered = model is None  # a model built here from the registry (not one passed in by a test)
    spec = get_spec(f"{cfg.arch}.untrained") if spec is None else spec
    model = get_arch(cfg.arch).builder(num_classes=len(synth.CLASSES)) if model is None else model
    start_weights(model, cfg.arch, cfg.start, registered=registered, log=log)
    choose_trainable(model, cfg, log)
    aux = AuxLosses.build(model, cfg, spec, log)
    optimizer = make_optimizer(nn.ModuleDict({"model": model, **aux.heads()}), cfg.optim)
    budget = Budget(cfg)
    clips = ClipStream(cfg, spec, masks=aux.moments is not None, total=budget.total)  # fills the buffer
    watch = Stopwatch()
    losses: list[float] = []
    if cfg.data.frame_cache:
        steps = fit_on_frame_cache(model, optimizer, cfg, spec, losses=losses, accs=[], log=log)
    else:
        steps = fit_on_clips(model, optimizer, cfg, spec, aux, clips, budget, watch, losses=losses, log=log)
    minutes, cpu_minutes = watch.minutes(), watch.cpu_minutes()
    scheduled = budget.total
    acc, shuffled = final_evaluation(model, cfg, spec, log)
    path = None
    if out is not None:
        metadata = run_metadata(
            cfg, spec, steps=steps, scheduled=scheduled, accuracy=acc, shuffled=shuffled, minutes=minutes,
            cpu_minutes=cpu_minutes,
        )  # fmt: skip
        path = save_checkpoint(model, Path(out) / f"{cfg.arch}.synth.safetensors", metadata)
        log(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MB)")
    return TrainResult(
        steps=steps,
        accuracy=acc,
        shuffled_accuracy=shuffled,
        minutes=minutes,
        final_loss=float(np.mean(losses[-10:])) if losses else float("nan"),
        path=path,
    )


def choose_trainable(model: nn.Module, cfg: TrainConfig, log: Log = print) -> None:
    """Freeze what ``cfg.optim.trainable`` leaves out (``--frame-cache``: all but the temporal half)."""
    if cfg.data.frame_cache:
        check_model(model)
        if cfg.schedule.steps is None:
            raise ValueError(
                "--frame-cache needs --steps (a step costs milliseconds; there is nothing to budget)"
            )
    trainable = cfg.optim.trainable or (TRAINED_MODULES if cfg.data.frame_cache else ())
    if cfg.data.frame_cache and (
        set(trainable) != set(TRAINED_MODULES)
        or cfg.aux.teacher
        or cfg.aux.mask_weight
        or cfg.aux.step_class_weight
    ):
        raise ValueError(
            "--frame-cache trains only temporal_encoder and head on cached tokens: no --trainable, --teacher, "
            "--mask-weight or --step-class-weight with it"
        )
    if trainable:
        log(f"training {freeze_except(model, trainable)} parameter tensors under {', '.join(trainable)}")


class Stopwatch:
    """Wall-clock and CPU (this process, all threads) minutes since it was made."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def minutes(self) -> float:
        return (time.perf_counter() - self.wall) / 60

    def cpu_minutes(self) -> float:
        return (time.process_time() - self.cpu) / 60


class Budget:
    """The number of steps: ``cfg.schedule.steps``, or chosen from a time budget after timing the steps
    after the first (which warms up) — inside the fixed learning-rate warm-up, so the first steps do not
    depend on the outcome."""

    PROBE_STEPS = 3

    def __init__(self, cfg: TrainConfig) -> None:
        sched = cfg.schedule
        self.total = sched.steps
        if self.total is None and cfg.optim.warmup_steps <= 1 + self.PROBE_STEPS:
            raise ValueError(
                "a time budget needs warmup_steps > 4 (the budget is decided inside the warm-up)"
            )
        use_cpu = sched.cpu_minutes is not None
        self.clock = time.process_time if use_cpu else time.perf_counter
        self.seconds = 60 * (sched.cpu_minutes if use_cpu else sched.minutes)  # type: ignore[operator]
        self.kind = "CPU" if use_cpu else "wall"
        self.started = self.probe_start = 0.0

    def start(self) -> None:
        self.started = self.clock()

    def observe(self, step: int, log: Log) -> None:
        """Call before ``step`` runs: times the probe steps and, after them, fixes :attr:`total`."""
        if step == 1:
            self.probe_start = self.clock()
        if self.total is None and step == 1 + self.PROBE_STEPS:
            per_step = (self.clock() - self.probe_start) / self.PROBE_STEPS
            left = self.seconds - (self.clock() - self.started)
            self.total = max(step + 1, step + int(left / per_step))
            log(
                f"{per_step:.2f} {self.kind} s/step -> {self.total} steps for {self.seconds / 60:g} {self.kind} min"
            )


def fit_on_clips(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    spec: ModelSpec,
    aux: AuxLosses,
    clips: ClipStream,
    budget: Budget,
    watch: Stopwatch,
    *,
    losses: list[float],
    log: Log = print,
) -> int:
    """The optimizer steps on SynthMotion clips (the next batch is made in a worker while one trains), until
    ``budget.total`` (or ``--max-minutes`` on ``watch``). Appends each step's loss to ``losses``; returns the
    number of steps run."""
    budget.start()
    accs: list[float] = []
    step = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(clips.next, 0, budget.total)
        while budget.total is None or step < budget.total:
            if cfg.schedule.max_minutes is not None and watch.minutes() > cfg.schedule.max_minutes:
                log(
                    f"stopping at step {step} of {budget.total}: --max-minutes {cfg.schedule.max_minutes:g} reached"
                )
                break
            (batch, labels, masks), new = pending.result()
            clips.absorb(new, step)  # the oldest slots get the new clips (the next batch is drawn after this)
            budget.observe(step, log)
            total = budget.total
            pending = pool.submit(clips.next, step + 1, total)
            lr = lr_at(step, total or 10**9, cfg.optim)  # the probe ends inside the fixed warm-up
            loss, acc = train_step(
                model,
                optimizer,
                to_input(batch, spec),
                torch.from_numpy(labels),
                lr=lr,
                label_smoothing=cfg.optim.label_smoothing,
                grad_clip=cfg.optim.grad_clip,
                masks=masks,
                **aux.step_kwargs(),
            )
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {step}")
            losses.append(loss)
            accs.append(acc)
            step += 1
            if step % cfg.schedule.log_every == 0 or step == total:
                k = cfg.schedule.log_every
                log(
                    f"step {step}/{total} loss {np.mean(losses[-k:]):.3f} acc {np.mean(accs[-k:]):.3f} "
                    f"lr {lr:.2e} easy {easy_fraction(step - 1, total or 10**9, cfg):.2f} "
                    f"{watch.minutes():.1f} min ({watch.cpu_minutes():.1f} CPU min)" + aux.log_suffix(k)
                )
            every = cfg.eval.eval_every
            if every and step % every == 0 and step != total:
                n = cfg.eval.eval_every_clips
                held_out = evaluate(model, spec, n=n, seed=cfg.resolved_eval_seed + 1)
                log(f"step {step}: top-1 {held_out:.3f} on {n} held-out clips")
        pending.cancel()
    return step


def final_evaluation(
    model: nn.Module, cfg: TrainConfig, spec: ModelSpec, log: Log = print
) -> tuple[float, float]:
    """Top-1 on ``eval_clips`` fresh clips of the evaluation stream, in frame order and with frames shuffled
    (a model that uses time drops towards chance when the order is destroyed)."""
    n, seed = cfg.eval.eval_clips, cfg.resolved_eval_seed
    acc = evaluate(model, spec, n=n, seed=seed)
    shuffled = evaluate(model, spec, n=n, seed=seed, shuffle_frames=True)
    log(f"{cfg.arch}: top-1 {acc:.3f} on {n} fresh clips (seed {seed}); frames shuffled {shuffled:.3f}")
    return acc, shuffled


def run_metadata(
    cfg: TrainConfig,
    spec: ModelSpec,
    *,
    steps: int,
    scheduled: int | None,
    accuracy: float,
    shuffled: float,
    minutes: float,
    cpu_minutes: float,
) -> dict[str, str]:
    """The checkpoint's string metadata (read back by the zoo, ``lineage`` and the weights README)."""
    return {
        "arch": cfg.arch,
        "config": json.dumps({**cfg.flat(), "steps": steps, "scheduled_steps": scheduled}),
        "spec": json.dumps(
            {"num_frames": spec.num_frames, "crop_size": spec.crop_size, "mean": spec.mean, "std": spec.std}
        ),
        "classes": json.dumps(list(synth.CLASSES)),
        "label_set": "synthmotion",
        "seed": str(cfg.seed),
        "eval_seed": str(cfg.resolved_eval_seed),
        "eval_clips": str(cfg.eval.eval_clips),
        "accuracy": f"{accuracy:.4f}",
        "shuffled_accuracy": f"{shuffled:.4f}",
        "steps": str(steps),
        "batch_size": str(cfg.optim.batch_size),
        "minutes": f"{minutes:.2f}",
        "cpu_minutes": f"{cpu_minutes:.2f}",
        "threads": str(torch.get_num_threads()),
        "commit": git_commit(),
        "lineage": json.dumps(lineage(cfg)),
    }
