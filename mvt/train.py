"""Train the small configs of each family on SynthMotion (CPU, deterministic) and ship the weights.

    python -m mvt.train --model mvit_t --minutes 15 --seed 0 --out assets/weights/

Clips are generated on the fly (``mvt.synth``): by default step ``k`` trains on clips ``k·B … k·B + B - 1``
of the stream ``seed``, so no clip is seen twice. Generating a clip costs about as much as a small model's
training step on it, so ``--buffer-clips N`` trains from a replay buffer of ``N`` clips instead, replacing the
``--fresh-per-step`` oldest with new clips of the stream at every step; each drawn clip gets a random exact
symmetry of SynthMotion (mirror, transpose, time reversal with the label mapped,
:func:`mvt.synth.symmetry_label`) unless ``--no-augment``. ``--motion-init`` starts space-time patch
embeddings as half appearance, half temporal-difference filters (:func:`motion_init`); ``--warm-start``
copies matching tensors from a related model's checkpoint (:func:`warm_start`, e.g. HVT into ViViT);
``--teacher`` adds distillation from a trained model of another family (:mod:`mvt.distill`: a token-grid
hint and, with ``--kd-weight``, soft logits); ``--mask-weight`` adds a regression of the actor's per-time mask
moments from a stage's tokens (:mod:`mvt.supervision`); ``--init`` continues a run (through the arch's converter, so
an ``mvit_t`` checkpoint starts an ``mmvit_t``). The model is evaluated on ``--eval-clips`` fresh clips of
another stream (``--eval-seed``), in frame order and with the frames shuffled (a model that uses time drops towards
chance when the order is destroyed). The result is ``<out>/<arch>.synth.safetensors`` with string metadata:
``arch, config, classes, seed, eval_seed, eval_clips, accuracy, shuffled_accuracy, steps, batch_size,
minutes, commit, lineage`` (:func:`lineage`: every run it was continued or warm-started from).

Budget: ``--minutes`` is wall-clock time; ``--cpu-minutes`` is CPU time of this process (all threads), which
does not depend on what else runs on the machine: "20 minutes on 2 free cores" is ``--cpu-minutes 40``.
Either chooses ``steps`` from the cost of the first few steps; the chosen number is printed and stored.

Curriculum: for the first ``curriculum`` fraction of the steps part of each batch comes from a calmer
SynthMotion (:data:`mvt.synth.EASY_CONFIG`: few distractors, faint texture), from all of the batch (until
the warm-up ends) down to none; the rest of training and all evaluation use the default generator.

Determinism: weights depend only on ``(arch, seed, steps, batch_size, lr, ...)`` and the thread count.
``--steps N`` reruns a budgeted run exactly: the warm-up and the start of the curriculum do not depend on
``steps``, and the budget is decided inside the warm-up.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import frame_cache, synth
from .distill import Distiller, as_grid, capture_stage
from .supervision import MaskMoments, StepClasses
from .zoo import ModelSpec, get_arch, get_spec

MAX_FILE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (stored in the checkpoint's metadata)."""

    arch: str
    seed: int = 0
    steps: int | None = None
    """Optimizer steps; ``None`` picks them from ``minutes`` after timing the first steps."""
    minutes: float = 15.0
    cpu_minutes: float | None = None
    """CPU-time budget (process CPU time, all threads); overrides ``minutes`` when given."""
    max_minutes: float | None = None
    """Hard wall-clock stop (the run then ends before its schedule does; ``steps`` records where)."""
    curriculum: float = 0.3
    """Fraction of the steps during which some clips come from :data:`mvt.synth.EASY_CONFIG`."""
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.01
    warmup_steps: int = 20
    """Linear warm-up length; fixed (not a fraction of ``steps``) so the first steps do not depend on ``steps``."""
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    eval_clips: int = 200
    eval_seed: int | None = None
    """Stream of the evaluation clips; defaults to ``seed + 1_000_003`` (never a training stream)."""
    log_every: int = 10
    init: str | None = None
    """Start from this checkpoint (e.g. a previous run's file) instead of a fresh initialisation."""
    buffer_clips: int = 0
    """Train from a replay buffer of this many clips (0: every clip is fresh and used once). The buffer is
    filled first; each step then replaces the ``fresh_per_step`` oldest clips with new ones."""
    fresh_per_step: int = 4
    augment: bool = True
    """Apply a random SynthMotion symmetry (:func:`mvt.synth.apply_symmetry`) to each training clip."""
    eval_every: int = 0
    """Log top-1 on ``eval_every_clips`` held-out clips every this many steps (0: only at the end)."""
    eval_every_clips: int = 96
    warm_start: str | None = None
    """Copy matching tensors from this checkpoint of a related model (:func:`warm_start`) before training."""
    motion_init: bool = False
    """Re-initialise space-time patch embeddings with :func:`motion_init` (ignored with ``init``)."""
    teacher: str | None = None
    """A trained ``.synth`` checkpoint to distil from (:class:`mvt.distill.Distiller`); its arch comes from its
    metadata."""
    hint_weight: float = 1.0
    """Weight of the token-grid hint (student stage ``hint_stage`` ↔ teacher stage ``teacher_stage``)."""
    hint_stage: int = 1
    teacher_stage: int = 0
    kd_weight: float = 0.0
    """Weight of the soft-logit loss against the teacher (temperature 2)."""
    focus_classes: tuple[str, ...] = ()
    """Classes to oversample (the pair a model learns last, e.g. ``rotate_cw, rotate_ccw``); needs a buffer."""
    focus_share: float = 0.0
    """Share of each batch drawn from buffer clips of ``focus_classes`` (the rest uniformly from the buffer)."""
    mask_weight: float = 0.0
    """Weight of the actor-mask moments loss (:class:`mvt.supervision.MaskMoments`) at stage ``mask_stage``."""
    mask_stage: int = -1
    step_class_weight: float = 0.0
    """Weight of the per-time-step class loss (:class:`mvt.supervision.StepClasses`) at stage
    ``step_class_stage``."""
    step_class_stage: int = 0
    trainable: tuple[str, ...] = ()
    """Train only the model's parameters under these module names (e.g. ``temporal_encoder``, ``head``); the
    rest stay frozen at their ``init`` values. Empty: train everything."""
    frame_cache: int = 0
    """ViViT model 2 only: train just its temporal encoder and head, for ``steps`` steps, on the per-frame
    tokens of this many augmented clips computed once by the frozen spatial encoder (:mod:`mvt.frame_cache`;
    ``focus_share`` of the clips come from ``focus_classes``). 0: train on clips."""

    @property
    def resolved_eval_seed(self) -> int:
        return self.seed + 1_000_003 if self.eval_seed is None else self.eval_seed


@dataclass(frozen=True)
class TrainResult:
    steps: int
    accuracy: float
    shuffled_accuracy: float
    minutes: float
    final_loss: float
    path: Path | None


def to_input(clips: np.ndarray, spec: ModelSpec) -> torch.Tensor:
    """uint8 clips ``(N, T, S, S, 3)`` → normalised ``(N, 3, T, S, S)`` float32, as ``mvt.preprocess`` does
    for a clip that is already ``spec.crop_size`` square."""
    if clips.shape[2] != spec.crop_size or clips.shape[3] != spec.crop_size:
        raise ValueError(f"clips are {clips.shape[2:4]}, the model wants {spec.crop_size}²")
    x = (
        torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 4, 1, 2, 3).float().div_(255.0)
    )  # (N,3,T,S,S)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1, 1)
    return ((x - mean) / std).contiguous()


@torch.no_grad()
def motion_init(model: nn.Module) -> int:
    """Give every RGB space-time patch embedding (a ``Conv3d`` on 3 channels with a temporal kernel of 2 or
    more) a kernel that is constant in time for half of its output channels and a zero-sum temporal ramp for
    the other half, keeping each channel's random spatial filter and its variance. The ramp channels see only
    what changes between frames, which is where SynthMotion's evidence is, from the first step. Returns the
    number of re-initialised convolutions. Training choice only: the architecture is unchanged."""
    count = 0
    for module in model.modules():
        if not isinstance(module, nn.Conv3d) or module.in_channels != 3 or module.kernel_size[0] < 2:
            continue
        w = module.weight  # (O, 3, kt, kh, kw)
        kt = w.shape[2]
        spatial = w.mean(dim=2, keepdim=True) * math.sqrt(kt)  # (O, 3, 1, kh, kw): same variance as one tap
        ramp = torch.linspace(-1.0, 1.0, kt, dtype=w.dtype)
        ramp = ramp / ramp.pow(2).mean().sqrt()  # zero-sum, mean square 1
        flat = torch.ones(kt, dtype=w.dtype)
        profile = torch.stack([flat if o % 2 == 0 else ramp for o in range(w.shape[0])])  # (O, kt)
        w.copy_(spatial * profile[:, None, :, None, None] / math.sqrt(kt))
        count += 1
    return count


WARM_START_RENAMES: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    # HVT (timm ViT names) -> ViViT model 1-4 (the encoder's blocks; HVT's per-stage pooled pos_embeds unused).
    ("hvt", "vivit"): (
        ("patch_embed.proj.", "patch_embed."),
        ("pos_embed", "encoder.pos_embed"),
        ("blocks.", "encoder.blocks."),
        ("norm.", "encoder.norm."),
    ),
}
"""Key prefix renames from a source family's state dict to a target family's, for :func:`warm_start`."""


def _time_average_into(target: torch.Tensor, src: torch.Tensor) -> bool:
    """A space-time position embedding ``(1, [1 +] T·S, D)`` averaged over time into a spatial one
    ``(1, [1 +] S, D)`` (e.g. ViViT model 2's spatial encoder); False when no CLS/grid split fits."""
    for c_t, c_s in ((1, 1), (1, 0), (0, 1), (0, 0)):
        n_t, n_s = target.shape[1] - c_t, src.shape[1] - c_s
        if n_t > 0 and n_s > n_t and n_s % n_t == 0:
            grid = src[:, c_s:].reshape(1, n_s // n_t, n_t, src.shape[2])  # (1, T, S, D)
            target[:, c_t:] = grid.mean(dim=1)
            if c_t and c_s:
                target[:, :1] = src[:, :1]
            return True
    return False


@torch.no_grad()
def warm_start(
    model: nn.Module, state: dict[str, torch.Tensor], renames: tuple[tuple[str, str], ...] = ()
) -> tuple[list[str], list[str]]:
    """Copy from a related model's state dict every tensor whose (renamed) name and shape match.

    ``renames`` are ``(source_prefix, target_prefix)`` pairs (first match wins; see :data:`WARM_START_RENAMES`).
    A position embedding ``(1, N, D)`` also carries over when the target has one token fewer (the source's
    leading CLS position is dropped), one more (the target's CLS position stays at its initialisation), or is
    the source's space-time grid without time (averaged over time).
    Returns ``(left_at_init, unused)`` key lists so the caller can say what was not carried over."""

    def rename(key: str) -> str:
        for old, new in renames:
            if key.startswith(old):
                return new + key[len(old) :]
        return key

    source = {rename(k): (k, v) for k, v in state.items()}
    left, used = [], set()
    for key, target in model.state_dict().items():
        orig, src = source.get(key, (None, None))
        if src is None:
            left.append(key)
            continue
        if src.shape == target.shape:
            target.copy_(src)
        elif key.endswith("pos_embed") and src.ndim == 3 and src.shape[2] == target.shape[2]:
            if src.shape[1] == target.shape[1] + 1:
                target.copy_(src[:, 1:])  # (1, 1 + N, D) -> (1, N, D): drop the CLS position
            elif src.shape[1] + 1 == target.shape[1]:
                target[:, 1:] = src  # (1, N, D) -> (1, 1 + N, D): the CLS position keeps its init
            elif not _time_average_into(target, src):
                left.append(key)
                continue
        else:
            left.append(key)
            continue
        used.add(orig)
    return left, sorted(set(state) - used)


Batch = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""Training clips ``(N, T, H, W, 3)`` uint8, labels ``(N,)`` and actor masks ``(N, T, H, W)`` (or None)."""


def stage_channels(model: nn.Module, stage: int, spec: ModelSpec) -> int:
    """Channels of ``model``'s stage tap ``stage`` (one dummy clip through the model; every tap is
    ``(B, C, ...)``)."""
    probe = torch.zeros(1, 3, spec.num_frames, spec.crop_size, spec.crop_size)
    with torch.no_grad(), capture_stage(model, stage) as seen:
        model.eval()(probe)
    return seen[-1].shape[1]


def make_distiller(model: nn.Module, cfg: TrainConfig, spec: ModelSpec) -> Distiller:
    """A :class:`Distiller` from ``cfg.teacher`` (a ``.synth`` checkpoint, built from its metadata's arch)."""
    from .weights import load_file
    from .zoo import load_state_dict_strict

    assert cfg.teacher is not None
    teacher_arch = read_metadata(cfg.teacher).get("arch")
    if not teacher_arch:
        raise ValueError(
            f"--teacher {cfg.teacher} has no 'arch' in its metadata (not a mvt.train checkpoint)"
        )
    teacher = get_arch(teacher_arch).builder(num_classes=len(synth.CLASSES))
    load_state_dict_strict(teacher, load_file(cfg.teacher), what=f"--teacher {cfg.teacher}")
    channels = (1, 1)  # the projection is unused without a hint
    if cfg.hint_weight:
        channels = (
            stage_channels(model, cfg.hint_stage, spec),
            stage_channels(teacher, cfg.teacher_stage, spec),
        )
    return Distiller(
        teacher,
        *channels,
        student_stage=cfg.hint_stage,
        teacher_stage=cfg.teacher_stage,
        hint_weight=cfg.hint_weight,
        kd_weight=cfg.kd_weight,
    )


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``cfg.lr``, then cosine decay to ``cfg.lr * cfg.min_lr_ratio``."""
    warmup = max(1, cfg.warmup_steps)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


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


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms, position embeddings and class tokens (1-D or named so)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or any(k in name for k in ("pos_embed", "rel_pos", "cls_token", "pos_emb"))
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))


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


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def save_checkpoint(model: nn.Module, path: Path, metadata: dict[str, str]) -> Path:
    """Write the state dict as safetensors (fp32, or fp16 when fp32 would exceed 10 MB)."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    fp32_bytes = sum(v.numel() * v.element_size() for v in state.values())
    if fp32_bytes > MAX_FILE_BYTES:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
        metadata = {**metadata, "dtype": "float16"}
    else:
        metadata = {**metadata, "dtype": "float32"}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size / 2**20:.1f} MB, over the 10 MB limit")
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (header only; the tensors are not read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


LINEAGE_KEYS = (
    "arch",
    "config",
    "accuracy",
    "shuffled_accuracy",
    "steps",
    "cpu_minutes",
    "minutes",
    "commit",
)


def lineage(cfg: TrainConfig) -> list[dict]:
    """The runs this one starts from, oldest first: for each checkpoint named by ``cfg.init`` or
    ``cfg.warm_start`` (and, recursively, by theirs) its role, file name, SHA-256 and training metadata
    (:data:`LINEAGE_KEYS`, ``config`` parsed). Stored in the checkpoint, so a shipped file records every run
    that made it even when the intermediate files are gone. A parent without ``lineage`` metadata (older
    runs) ends its branch."""
    import hashlib

    chain: list[dict] = []
    for role in ("warm_start", "init"):
        src = getattr(cfg, role)
        if src is None:
            continue
        path = Path(src)
        meta = read_metadata(path)
        chain.extend(json.loads(meta.get("lineage", "[]")))
        entry = {"role": role, "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        for key in LINEAGE_KEYS:
            if key in meta:
                entry[key] = json.loads(meta[key]) if key == "config" else meta[key]
        chain.append(entry)
    return chain


def easy_fraction(step: int, total: int, cfg: TrainConfig) -> float:
    """Share of easy clips in the batch of ``step``: all of it through the warm-up, then linearly down to
    none at ``cfg.curriculum * total``."""
    if cfg.curriculum <= 0:
        return 0.0
    start, end = max(1, cfg.warmup_steps), cfg.curriculum * total
    if step < start:
        return 1.0
    if step >= end:
        return 0.0
    return 1.0 - (step - start) / max(1.0, end - start)


def train(
    cfg: TrainConfig,
    *,
    out: str | Path | None = None,
    model: nn.Module | None = None,
    spec: ModelSpec | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train ``cfg.arch`` (or the given ``model`` with input ``spec``) and write ``<out>/<arch>.synth.safetensors``."""
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    registered = model is None  # a model built here from the registry (not one passed in by a test)
    if spec is None:
        spec = get_spec(f"{cfg.arch}.untrained")
    if model is None:
        model = get_arch(cfg.arch).builder(num_classes=len(synth.CLASSES))
    if cfg.init is not None:
        from .weights import load_file
        from .zoo import load_state_dict_strict

        convert = get_arch(cfg.arch).convert if registered else None  # e.g. an MViT's weights -> MMViT towers
        load_state_dict_strict(model, load_file(cfg.init), convert, what=f"--init {cfg.init}")
    elif cfg.motion_init:
        log(f"motion_init: {motion_init(model)} space-time patch embedding(s) re-initialised")
    if cfg.warm_start is not None:
        from .weights import load_file

        source_arch = read_metadata(cfg.warm_start).get("arch", "")
        families = (get_arch(source_arch).family if source_arch else "", get_arch(cfg.arch).family)
        renames = WARM_START_RENAMES.get(families, ())
        left, unused = warm_start(model, load_file(cfg.warm_start), renames)
        log(
            f"warm start from {cfg.warm_start}: left at init {left or 'nothing'}; unused {unused or 'nothing'}"
        )
    if cfg.frame_cache:
        frame_cache.check_model(model)
        if cfg.steps is None:
            raise ValueError(
                "--frame-cache needs --steps (a step costs milliseconds; there is nothing to budget)"
            )
    trainable = cfg.trainable or (frame_cache.TRAINED_MODULES if cfg.frame_cache else ())
    if cfg.frame_cache and (
        set(trainable) != set(frame_cache.TRAINED_MODULES)
        or cfg.teacher
        or cfg.mask_weight
        or cfg.step_class_weight
    ):
        raise ValueError(
            "--frame-cache trains only temporal_encoder and head on cached tokens: no --trainable, --teacher, "
            "--mask-weight or --step-class-weight with it"
        )
    if trainable:
        log(f"training {freeze_except(model, trainable)} parameter tensors under {', '.join(trainable)}")
    trained = nn.ModuleDict({"model": model})  # what the optimizer updates
    distiller = None
    if cfg.teacher is not None:
        distiller = make_distiller(model, cfg, spec)
        log(f"distilling from {cfg.teacher}: hint {cfg.hint_weight:g}, kd {cfg.kd_weight:g}")
        trained["distill"] = distiller.proj
    moments = None
    if cfg.mask_weight:
        moments = MaskMoments(
            stage_channels(model, cfg.mask_stage, spec), stage=cfg.mask_stage, weight=cfg.mask_weight
        )
        log(f"mask moments from stage {cfg.mask_stage}: weight {cfg.mask_weight:g}")
        trained["moments"] = moments.proj
    step_classes = None
    if cfg.step_class_weight:
        step_classes = StepClasses(
            stage_channels(model, cfg.step_class_stage, spec),
            len(synth.CLASSES),
            stage=cfg.step_class_stage,
            weight=cfg.step_class_weight,
            smoothing=cfg.label_smoothing,
        )
        log(f"per-time-step classes from stage {cfg.step_class_stage}: weight {cfg.step_class_weight:g}")
        trained["step_classes"] = step_classes.proj
    optimizer = make_optimizer(trained, cfg)
    frames, size, bs = spec.num_frames, spec.crop_size, cfg.batch_size
    total = cfg.steps
    probe_steps = 3  # steps timed to choose ``total`` from the budget (the first one is a warm-up)
    if total is None and cfg.warmup_steps <= 1 + probe_steps:
        raise ValueError("a time budget needs warmup_steps > 4 (the budget is decided inside the warm-up)")
    use_cpu = cfg.cpu_minutes is not None
    clock = time.process_time if use_cpu else time.perf_counter
    budget_s = 60 * (cfg.cpu_minutes if use_cpu else cfg.minutes)  # type: ignore[operator]
    kind = "CPU" if use_cpu else "wall"

    def fresh(start: int, count: int, step: int, total: int | None) -> Batch:
        """Clips ``start .. start + count - 1`` of the stream; the first share is easy during the curriculum.
        Masks are kept only for the mask-moments loss."""
        easy = round(count * easy_fraction(step, total or 10**9, cfg))
        first = synth.generate(
            easy, cfg.seed, frames=frames, size=size, start=start, config=synth.EASY_CONFIG
        )
        rest = synth.generate(count - easy, cfg.seed, frames=frames, size=size, start=start + easy)
        masks = np.concatenate([first.masks, rest.masks]) if moments is not None else None
        return np.concatenate([first.clips, rest.clips]), np.concatenate([first.labels, rest.labels]), masks

    unknown = sorted(set(cfg.focus_classes) - set(synth.CLASSES))
    if unknown:
        raise ValueError(f"--focus-classes: unknown {unknown}; SynthMotion has {list(synth.CLASSES)}")
    if cfg.focus_classes and not cfg.buffer_clips and not cfg.frame_cache:
        raise ValueError("--focus-classes oversamples the replay buffer: give --buffer-clips")
    focus_ids = [synth.CLASSES.index(c) for c in cfg.focus_classes]
    buffer: Batch | None = None
    if cfg.buffer_clips and not cfg.frame_cache:
        buffer = fresh(0, cfg.buffer_clips, 0, total)

    def batch(step: int, total: int | None) -> Batch:
        rng = np.random.default_rng([cfg.seed, 2, step])
        if buffer is None:
            clips, labels, masks = fresh(step * bs, bs, step, total)
        else:
            focus = np.flatnonzero(np.isin(buffer[1], focus_ids)) if focus_ids else np.empty(0, int)
            n_focus = min(round(bs * cfg.focus_share), len(focus))
            if n_focus == 0:
                pick = np.sort(rng.choice(len(buffer[1]), size=bs, replace=False))
            else:  # n_focus clips of the focus classes, the rest uniformly from the other slots
                chosen = rng.choice(focus, size=n_focus, replace=False)
                others = np.setdiff1d(np.arange(len(buffer[1])), chosen)
                pick = np.sort(np.concatenate([chosen, rng.choice(others, size=bs - n_focus, replace=False)]))
            clips, labels = buffer[0][pick], buffer[1][pick]
            masks = None if buffer[2] is None else buffer[2][pick]
        if cfg.augment:
            ops = rng.integers(synth.NUM_SYMMETRIES, size=len(labels))
            clips, labels, masks = synth.apply_symmetries(clips, labels, ops, masks)
        return clips, labels, masks

    def refill(step: int, total: int | None) -> Batch | None:
        """New clips that replace the oldest buffer slots after ``step`` (None without a buffer)."""
        if buffer is None or cfg.fresh_per_step <= 0:
            return None
        return fresh(cfg.buffer_clips + step * cfg.fresh_per_step, cfg.fresh_per_step, step, total)

    def next_batch(step: int, total: int | None):
        return batch(step, total), refill(step, total)

    t0, c0 = time.perf_counter(), time.process_time()
    start_clock = clock()
    losses: list[float] = []
    accs: list[float] = []
    step = 0
    if cfg.frame_cache:
        step = frame_cache.fit_on_frame_cache(model, optimizer, cfg, spec, losses=losses, accs=accs, log=log)
    else:
        with ThreadPoolExecutor(max_workers=1) as pool:  # generates the next batch while this one trains
            pending = pool.submit(next_batch, 0, total)
            while total is None or step < total:
                if cfg.max_minutes is not None and time.perf_counter() - t0 > 60 * cfg.max_minutes:
                    log(f"stopping at step {step} of {total}: --max-minutes {cfg.max_minutes:g} reached")
                    break
                (clips, labels, masks), new = pending.result()
                if new is not None:  # the oldest slots get the new clips (the next batch is drawn after this)
                    assert buffer is not None
                    slots = (np.arange(len(new[1])) + step * cfg.fresh_per_step) % cfg.buffer_clips
                    for kept, added in zip(buffer, new):
                        if kept is not None:
                            kept[slots] = added
                if step == 1:
                    t_probe = clock()
                if total is None and step == 1 + probe_steps:
                    per_step = (clock() - t_probe) / probe_steps
                    total = max(step + 1, step + int((budget_s - (clock() - start_clock)) / per_step))
                    log(f"{per_step:.2f} {kind} s/step -> {total} steps for {budget_s / 60:g} {kind} min")
                pending = pool.submit(next_batch, step + 1, total)
                lr = lr_at(step, total or 10**9, cfg)  # the probe ends inside the fixed warm-up
                x, y = to_input(clips, spec), torch.from_numpy(labels)
                loss, acc = train_step(
                    model,
                    optimizer,
                    x,
                    y,
                    lr=lr,
                    label_smoothing=cfg.label_smoothing,
                    grad_clip=cfg.grad_clip,
                    distiller=distiller,
                    moments=moments,
                    masks=masks,
                    step_classes=step_classes,
                )
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss} at step {step}")
                losses.append(loss)
                accs.append(acc)
                step += 1
                if step % cfg.log_every == 0 or step == total:
                    k = cfg.log_every
                    log(
                        f"step {step}/{total} loss {np.mean(losses[-k:]):.3f} acc {np.mean(accs[-k:]):.3f} "
                        f"lr {lr:.2e} easy {easy_fraction(step - 1, total or 10**9, cfg):.2f} "
                        f"{(time.perf_counter() - t0) / 60:.1f} min ({(time.process_time() - c0) / 60:.1f} CPU min)"
                        + (
                            ""
                            if distiller is None
                            else " hint {:.3f} kd {:.3f}".format(*np.mean(distiller.history[-k:], 0))
                        )
                        + ("" if moments is None else f" mask {np.mean(moments.history[-k:]):.3f}")
                        + ("" if step_classes is None else f" steps {np.mean(step_classes.history[-k:]):.3f}")
                    )
                if cfg.eval_every and step % cfg.eval_every == 0 and step != total:
                    held_out = evaluate(model, spec, n=cfg.eval_every_clips, seed=cfg.resolved_eval_seed + 1)
                    log(f"step {step}: top-1 {held_out:.3f} on {cfg.eval_every_clips} held-out clips")
            pending.cancel()
    minutes = (time.perf_counter() - t0) / 60
    cpu_minutes = (time.process_time() - c0) / 60
    eval_seed = cfg.resolved_eval_seed
    acc = evaluate(model, spec, n=cfg.eval_clips, seed=eval_seed)
    shuffled = evaluate(model, spec, n=cfg.eval_clips, seed=eval_seed, shuffle_frames=True)
    log(
        f"{cfg.arch}: top-1 {acc:.3f} on {cfg.eval_clips} fresh clips (seed {eval_seed}); frames shuffled {shuffled:.3f}"
    )
    path = None
    if out is not None:
        metadata = {
            "arch": cfg.arch,
            "config": json.dumps({**asdict(cfg), "steps": step, "scheduled_steps": total}),
            "spec": json.dumps({"num_frames": frames, "crop_size": size, "mean": spec.mean, "std": spec.std}),
            "classes": json.dumps(list(synth.CLASSES)),
            "label_set": "synthmotion",
            "seed": str(cfg.seed),
            "eval_seed": str(eval_seed),
            "eval_clips": str(cfg.eval_clips),
            "accuracy": f"{acc:.4f}",
            "shuffled_accuracy": f"{shuffled:.4f}",
            "steps": str(step),
            "batch_size": str(bs),
            "minutes": f"{minutes:.2f}",
            "cpu_minutes": f"{cpu_minutes:.2f}",
            "threads": str(torch.get_num_threads()),
            "commit": git_commit(),
            "lineage": json.dumps(lineage(cfg)),
        }
        path = save_checkpoint(model, Path(out) / f"{cfg.arch}.synth.safetensors", metadata)
        log(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MB)")
    return TrainResult(
        steps=step,
        accuracy=acc,
        shuffled_accuracy=shuffled,
        minutes=minutes,
        final_loss=float(np.mean(losses[-10:])) if losses else float("nan"),
        path=path,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mvt.train", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="architecture, e.g. mvit_t, vivit_t1, hvt_t")
    p.add_argument("--minutes", type=float, default=15.0, help="time budget (chooses --steps)")
    p.add_argument("--cpu-minutes", type=float, default=None, help="CPU-time budget (overrides --minutes)")
    p.add_argument("--init", default=None, help="checkpoint to start from (continues a previous run)")
    p.add_argument("--max-minutes", type=float, default=None, help="hard wall-clock stop")
    p.add_argument("--curriculum", type=float, default=0.3, help="fraction of steps with easy clips mixed in")
    p.add_argument("--steps", type=int, default=None, help="exact number of optimizer steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--eval-clips", type=int, default=200)
    p.add_argument("--eval-seed", type=int, default=None)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--buffer-clips", type=int, default=0, help="replay buffer size (0: fresh clips only)")
    p.add_argument("--fresh-per-step", type=int, default=4, help="new clips per step into the buffer")
    p.add_argument("--no-augment", action="store_true", help="no random SynthMotion symmetries")
    p.add_argument(
        "--warm-start", default=None, help="copy matching tensors from a related model's checkpoint"
    )
    p.add_argument("--motion-init", action="store_true", help="space-time embeddings start as sums + ramps")
    p.add_argument("--teacher", default=None, help="trained .synth checkpoint to distil from")
    p.add_argument("--hint-weight", type=float, default=1.0, help="weight of the teacher token-grid hint")
    p.add_argument("--hint-stage", type=int, default=1, help="student stage matched to the teacher's grid")
    p.add_argument("--teacher-stage", type=int, default=0, help="teacher stage giving the grid hint")
    p.add_argument("--kd-weight", type=float, default=0.0, help="weight of the soft-logit loss")
    p.add_argument("--focus-classes", default="", help="comma-separated classes to oversample")
    p.add_argument("--focus-share", type=float, default=0.0, help="share of each batch from --focus-classes")
    p.add_argument("--mask-weight", type=float, default=0.0, help="weight of the actor-mask moments loss")
    p.add_argument("--mask-stage", type=int, default=-1, help="stage whose tokens regress the mask moments")
    p.add_argument(
        "--step-class-weight", type=float, default=0.0, help="weight of the per-time-step class loss"
    )
    p.add_argument(
        "--step-class-stage", type=int, default=0, help="stage whose time steps each tell the class"
    )
    p.add_argument(
        "--trainable", default="", help="comma-separated module names to train (the rest frozen); default all"
    )
    p.add_argument(
        "--frame-cache",
        type=int,
        default=0,
        help="ViViT model 2: train its temporal half on N clips' cached tokens",
    )
    p.add_argument("--eval-every", type=int, default=0, help="log held-out top-1 every N steps")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", default=None, help="directory for <arch>.synth.safetensors (omit to not save)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        arch=args.model,
        seed=args.seed,
        steps=args.steps,
        minutes=args.minutes,
        cpu_minutes=args.cpu_minutes,
        curriculum=args.curriculum,
        max_minutes=args.max_minutes,
        init=args.init,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        eval_clips=args.eval_clips,
        eval_seed=args.eval_seed,
        warmup_steps=args.warmup_steps,
        log_every=args.log_every,
        buffer_clips=args.buffer_clips,
        fresh_per_step=args.fresh_per_step,
        augment=not args.no_augment,
        eval_every=args.eval_every,
        motion_init=args.motion_init,
        warm_start=args.warm_start,
        teacher=args.teacher,
        hint_weight=args.hint_weight,
        hint_stage=args.hint_stage,
        teacher_stage=args.teacher_stage,
        kd_weight=args.kd_weight,
        focus_classes=tuple(c for c in args.focus_classes.split(",") if c),
        focus_share=args.focus_share,
        mask_weight=args.mask_weight,
        mask_stage=args.mask_stage,
        step_class_weight=args.step_class_weight,
        step_class_stage=args.step_class_stage,
        trainable=tuple(m for m in args.trainable.split(",") if m),
        frame_cache=args.frame_cache,
    )
    train(cfg, out=args.out, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
