"""The per-clip computation every engine runs: decode a clip once per sampling, then one row per model.

:func:`decode` turns a :class:`~lens.dataset.sources.ClipRef` into the frames each model sees (a file through
``lens.core.clips.read_clip`` + ``mvt.resize_and_crop``, exactly as :class:`lens.Service` reads it; a SynthMotion clip
through ``mvt.synth.generate``, with its actor mask), or into the error that stopped it. :func:`clip_rows`
runs every model on a decoded clip and returns one plain-dict row per model (the columns are
:data:`lens.dataset.schema.COLUMNS`): predictions, attention statistics per stage, and per method the
pointing game at pixel and token resolution with its ceilings and chance (where a mask exists), deletion /
insertion AUC (on clips marked ``scored``), the Spearman correlation with token flow, the pointing game with
sink keys left out, and seconds, computed with the project's registry (:mod:`lens.explain.methods`) and metrics
(:mod:`lens.explain.scoring`, :mod:`viz`, :mod:`viz.pointing`); with ``RowConfig.sinks``, the model's sink keys
(:mod:`mvt.sinks`). ``python -m mvt evaluate`` is a report over these rows.

Deterministic: the only randomness (the random baseline, the frame order of the shuffled prediction) is
seeded from the clip (:func:`~lens.dataset.sources.clip_seed`), never from the worker, so the local and the
Ray engine give the same rows for the same torch thread count (float sums depend on how a reduction is
split across threads: a different count moves scores in the 8th digit and can flip near-tied maxima).
"""

from __future__ import annotations

import io
import logging
import math
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

import mvt
import viz
from mvt import synth
from viz.faithfulness import DEFAULT_SUBSTRATE
from viz.pointing import ceilings, token_chance, token_pointing_game

from ..core.clips import read_clip
from ..core.records import Volume, Volumes
from ..core.storage import file_sha256
from ..explain import methods as M
from ..explain.randomise import levels as randomise_levels
from ..explain.randomise import randomised
from ..explain.scoring import score_model
from ..explain.sinks import SINK_STREAM, model_sinks, sink_record
from ..service.run import labels as model_labels
from ..service.run import run_model
from .schema import RANDOMISED, SCORES
from .sources import ClipRef, clip_seed, shuffle_order

log = logging.getLogger("mvt-lens")

Sampling = tuple[int, int, int, int]
"""(frames, frame stride, resize size, crop size): how a model samples a clip; models that share it share
one decode."""

DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "rollout": {"view": 0},
    "grad_rollout": {"view": 0},
    "token_flow": {"stages": True},
}
"""Rollouts onto the first view (MMViT: the full-resolution tower), maps on the frames a mask can score;
token flow also per stage (its last stage is what last-stage attention is correlated with)."""
FLOW_COMPARED = ("rollout", "grad_rollout", "attention")
"""Methods whose Spearman correlation with token flow each row holds (``attention``: its last stage, against
token flow on the tokens the last stage reads; the others against token flow on the input tokens)."""


def sampling(spec: mvt.ModelSpec) -> Sampling:
    return (int(spec.num_frames), int(spec.frame_stride or 0), int(spec.resize_size), int(spec.crop_size))


@dataclass(frozen=True)
class RowConfig:
    """What each row holds. ``methods``: explanation methods (registry names; per-stage methods are scored
    at their last stage, and the baselines ``random``, ``center`` and, with a mask, ``oracle`` are always
    added); ``target``: ``"label"`` explains the true class where the clip has one (else the prediction),
    ``"pred"`` the prediction; ``shuffled``: also predict with the frames in a shuffled order;
    ``volumes``: return every explanation volume (on its grid) for the ``.npz`` files; ``sinks``: probe each
    trained model for sink keys (:func:`model_sinks`, stream ``sink_seed``), mark them on its outputs, and
    also score ``attention`` and ``rollout`` with them left out; ``randomise``: levels of
    :mod:`lens.explain.randomise` (the model-randomisation sanity check) at which every explanation is scored
    again, on the model with those weights re-drawn (``randomise_seed``), for the same class."""

    methods: tuple[str, ...] = ("attention", "rollout")
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: DEFAULT_OPTIONS)
    steps: int = 8
    substrate: str = DEFAULT_SUBSTRATE
    top_k: int = 5
    target: str = "label"
    shuffled: bool = False
    volumes: bool = False
    sinks: bool = False
    sink_seed: int = SINK_STREAM
    randomise: tuple[str, ...] = ()
    randomise_seed: int = 0

    def __post_init__(self) -> None:
        if self.target not in ("label", "pred"):
            raise ValueError(f"target must be 'label' or 'pred', got {self.target!r}")
        object.__setattr__(self, "randomise", randomise_levels(self.randomise))

    @property
    def explanations(self) -> tuple[str, ...]:
        return tuple(n for n in M.normalise(self.methods) if M.get(n).kind != "baseline")

    def as_dict(self) -> dict:
        return {
            "methods": list(self.explanations),
            "options": {k: dict(v) for k, v in self.options.items()},
            "steps": self.steps,
            "substrate": self.substrate,
            "top_k": self.top_k,
            "target": self.target,
            "shuffled": self.shuffled,
            "volumes": self.volumes,
            "sinks": self.sinks,
            "sink_seed": self.sink_seed,
            "randomise": list(self.randomise),
            "randomise_seed": self.randomise_seed,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RowConfig:
        d = dict(d)
        d["methods"] = tuple(d.get("methods", ()))
        d["randomise"] = tuple(d.get("randomise", ()))
        return cls(**d)


@dataclass
class Decoded:
    """A clip as the models see it: uint8 ``(T, S, S, 3)`` frames per sampling (and the actor mask
    ``(T, S, S)`` for SynthMotion), or the error that stopped the decode."""

    frames: dict[Sampling, np.ndarray] = field(default_factory=dict)
    masks: dict[Sampling, np.ndarray] = field(default_factory=dict)
    sha256: str | None = None
    error: str | None = None
    seconds: float = 0.0


def decode_specs(names: Sequence[str]) -> list[mvt.ModelSpec]:
    """One spec per distinct sampling among the models ``names`` (from the registry: nothing is built)."""
    specs: dict[Sampling, mvt.ModelSpec] = {}
    for n in names:
        spec = mvt.get_spec(n)
        specs.setdefault(sampling(spec), spec)
    return list(specs.values())


def decode(ref: ClipRef, specs: Sequence[mvt.ModelSpec]) -> Decoded:
    """Decode ``ref`` once per spec (:func:`decode_specs`): a file through ``lens.core.clips.read_clip`` and
    ``mvt.resize_and_crop`` as :class:`lens.Service` reads it, a SynthMotion clip generated at the crop
    size with its mask. Never raises for a bad clip: the error becomes ``Decoded.error`` (a
    :class:`mvt.VideoError`'s sentence, or the exception's type and message)."""
    t0 = time.perf_counter()
    out = Decoded()
    try:
        if ref.is_synth:
            for spec in specs:
                b = synth.generate(
                    1,
                    int(ref.synth_seed),
                    frames=spec.num_frames,
                    size=spec.crop_size,
                    start=int(ref.synth_index),
                )
                out.frames[sampling(spec)], out.masks[sampling(spec)] = b.clips[0], b.masks[0]
        else:
            path = str(ref.path)
            out.sha256 = file_sha256(path)
            for spec in specs:
                clip = read_clip(path, spec, ref.start_s)
                out.frames[sampling(spec)] = mvt.resize_and_crop(clip.frames, spec)  # (T, S, S, 3)
    except mvt.VideoError as e:
        out.frames, out.masks, out.error = {}, {}, str(e)
    except Exception as e:  # a clip must never stop the run: it becomes an error row
        out.frames, out.masks = {}, {}
        out.error = (
            f"{os.path.basename(str(ref.path))}: could not be read ({type(e).__name__}: {str(e)[:200]})"
        )
    out.seconds = time.perf_counter() - t0
    return out


def pack(decoded: Decoded, samplings: Sequence[Sampling]) -> bytes:
    """``decoded``'s arrays as one uncompressed ``.npz`` (what a decode task hands to a model actor)."""
    arrays = {}
    for i, s in enumerate(samplings):
        if s in decoded.frames:
            arrays[f"frames_{i}"] = decoded.frames[s]
        if s in decoded.masks:
            arrays[f"mask_{i}"] = decoded.masks[s]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def unpack(payload: bytes | None, samplings: Sequence[Sampling], **fields: Any) -> Decoded:
    """The inverse of :func:`pack` (``fields``: ``sha256``, ``error``, ``seconds``)."""
    out = Decoded(**fields)
    if payload:
        with np.load(io.BytesIO(payload)) as z:
            for i, s in enumerate(samplings):
                if f"frames_{i}" in z:
                    out.frames[s] = z[f"frames_{i}"]
                if f"mask_{i}" in z:
                    out.masks[s] = z[f"mask_{i}"]
    return out


# -- one model on one clip ---------------------------------------------------------------------------------


def worker_name() -> str:
    """``host:pid`` of this process (which worker computed a row)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def label_index(label: str | None, labels: Sequence[str]) -> int | None:
    """The class index of a label as given: a class name of the model, or an index in range; else None."""
    if label is None:
        return None
    if label in labels:
        return labels.index(label)
    text = label.strip()
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(labels):
        return int(text)
    return None


def base_row(ref: ClipRef, name: str, decoded: Decoded) -> dict[str, Any]:
    """The columns every row has, with everything computed left empty."""
    return {
        "index": ref.index,
        "clip_id": ref.clip_id,
        "path": ref.path,
        "sha256": decoded.sha256,
        "start_s": ref.start_s,
        "model": name,
        "label_name": ref.label,
        "label": None,
        "error": decoded.error,
        "pred": None,
        "pred_name": None,
        "topk_classes": None,
        "topk_probs": None,
        "correct": None,
        "shuffled_pred": None,
        "target": None,
        "stage_entropy": None,
        "stage_distance_px": None,
        "stage_distance_frames": None,
        "scores": None,
        "randomised": None,
        "sinks": None,
        "seconds_decode": decoded.seconds,
        "seconds_forward": None,
        "seconds_explain": None,
        "seconds_scores": None,
        "seconds_randomised": None,
        "worker": worker_name(),
    }


def stage_stats(output) -> tuple[list[float], list[float], list[float]]:
    """Per stage (index = stage): the mean over the stage's attention maps of the head-mean entropy, mean
    attention distance in pixels and in frames (:func:`viz.attention_stats`); NaN for a stage without maps."""
    per: dict[int, list[dict]] = {}
    for r in viz.attention_stats(output):
        if r["head"] == "mean":
            per.setdefault(int(r["stage"]), []).append(r)
    n = max(per) + 1 if per else 0
    out: tuple[list[float], list[float], list[float]] = ([], [], [])
    for s in range(n):
        rows = per.get(s, [])
        for col, key in zip(out, ("entropy", "distance_px", "distance_frames")):
            vals = [float(r[key]) for r in rows if not math.isnan(float(r[key]))]
            col.append(float(np.mean(vals)) if vals else math.nan)
    return out


def _explanations(names: Sequence[str], volumes: Volumes, timings: Mapping[str, float], output):
    """For one clip's run: ``{method: Volume}`` of ``names`` (per-stage ones at their last stage), token flow per
    stage (``{stage: Volume}``, when asked), seconds per method, and ``{"model-relative slug": grid volume}``."""
    last = max(viz.stages(output)) if output is not None and output.attentions else None
    chosen, flows = {}, {}
    for key, vol in volumes.items():
        if key.method == "token_flow" and key.stage is not None:
            flows[key.stage] = vol
        if M.get(key.method).per_stage and key.stage != last:
            continue
        if not M.get(key.method).per_stage and key.stage is not None:
            continue
        chosen[key.method] = vol
    seconds = {n: float(timings.get(M.get(n).label, math.nan)) for n in names}
    grids = {k.slug: v.values for k, v in volumes.items()}
    return {n: chosen[n] for n in names if n in chosen}, flows, seconds, grids


def _spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Spearman's ρ of a map with a signed relevance, and with its magnitude (NaN on different grids)."""
    if np.size(a) != np.size(b):
        return math.nan, math.nan
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(viz.spearman(a, b)), float(viz.spearman(a, np.abs(b)))


def _pointing(vol: Volume, mask: np.ndarray, shape, cache: dict) -> dict[str, float]:
    """Pixel and token pointing game of one volume (maxima in float64, within a tolerance), with the
    ceilings (the best map on the same token grid) and chance of its grid (``cache``: per grid, per clip)."""
    frames = viz.to_frames(vol.values, shape, vol.footprint, dtype=np.float64)
    grid = (vol.footprint, tuple(vol.values.shape))
    if grid not in cache:
        c = ceilings(mask, vol.footprint, vol.values.shape)
        cache[grid] = (c["token"], c["pixel"], token_chance(mask, vol.footprint, vol.values.shape))
    return {
        "pointing_game": viz.pointing_game(frames, mask),
        "token_pointing_game": token_pointing_game(vol.values, vol.footprint, mask),
        "ceiling_token": cache[grid][0],
        "ceiling_pixel": cache[grid][1],
        "chance": cache[grid][2],
    }


SCORE_FIELDS = tuple(SCORES)
"""The fields of each entry of a row's ``scores`` (besides ``method``): :data:`lens.dataset.schema.SCORES`."""


def model_row(
    name: str,
    model: nn.Module,
    ref: ClipRef,
    decoded: Decoded,
    cfg: RowConfig,
    device: torch.device,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One model's row for a decoded clip, and its volumes (empty unless ``cfg.volumes``)."""
    row = base_row(ref, name, decoded)
    spec = model.spec
    s = sampling(spec)
    frames, mask = decoded.frames[s], decoded.masks.get(s)
    labels = model_labels(spec)
    label = label_index(ref.label, labels)
    sinks = model_sinks(model, cfg.sink_seed) if cfg.sinks else []  # before the clip's seed: no RNG shared
    row["sinks"] = [sink_record(k) for k in sinks]
    seed = clip_seed(ref, decoded.sha256)
    torch.manual_seed(seed)

    baselines = [*M.BASELINES, *(["oracle"] if mask is not None else [])]
    names = [*cfg.explanations, *baselines] if cfg.explanations else []

    t = time.perf_counter()
    x = mvt.normalise(frames, spec, device=device)  # (1, 3, T, S, S)
    run = run_model(
        model,
        x,
        names,
        target=label if cfg.target == "label" else None,
        options=cfg.options,
        attention=True,
        sinks=sinks,
        seed=seed,
        mask=mask,
    )
    output, logits, target = run.output, run.logits, run.target
    pred = int(logits[0].argmax())
    probs, idx = logits.softmax(-1)[0].topk(min(cfg.top_k, logits.shape[-1]))
    row.update(
        label=label,
        pred=pred,
        pred_name=labels[pred] if pred < len(labels) else f"class {pred}",
        topk_classes=[int(i) for i in idx.tolist()],
        topk_probs=[float(p) for p in probs.tolist()],
        correct=None if label is None else pred == label,
        target=target,
    )
    explain = sum(run.timings.get(M.get(n).label, 0.0) for n in names)
    if cfg.shuffled:
        order = torch.from_numpy(shuffle_order(ref, x.shape[2], decoded.sha256)).to(x.device)
        with torch.inference_mode():
            row["shuffled_pred"] = int(model(x[:, :, order]).argmax(-1)[0])
    row["seconds_forward"] = time.perf_counter() - t - explain
    row["seconds_explain"] = explain
    vols, flows, seconds, grids = _explanations(names, run.volumes, run.timings, output)

    t = time.perf_counter()
    ent, dpx, dfr = stage_stats(output)
    row.update(stage_entropy=ent, stage_distance_px=dpx, stage_distance_frames=dfr)
    shape = tuple(int(v) for v in x.shape[2:])
    maps = {m: viz.to_frames(v.values, shape, v.footprint) for m, v in vols.items()}
    scores = {m: dict.fromkeys(SCORE_FIELDS) for m in vols}
    cache: dict = {}
    for m, v in vols.items():
        scores[m]["seconds"] = seconds.get(m)
        if mask is not None:
            scores[m].update(_pointing(v, mask, shape, cache))
    if "token_flow" in vols:
        for m in FLOW_COMPARED:
            against = flows.get(max(flows)) if m == "attention" and flows else vols["token_flow"]
            if m in vols and against is not None:
                r, r_abs = _spearman(vols[m].values, against.values)
                scores[m].update(flow_correlation=r, flow_correlation_abs=r_abs)
    if mask is not None and any(output.sinks.values()):
        last = max(viz.stages(output))
        excluded = {
            "attention": lambda: viz.stage_volume(output, last, exclude_sinks=True),
            "rollout": lambda: viz.rollout_volume(output, view=0, exclude_sinks=True),
        }
        for m, fn in excluded.items():
            if m in scores:
                p = _pointing(Volume(*fn()), mask, shape, cache)
                scores[m].update(
                    sink_pointing_game=p["pointing_game"], sink_token_pointing_game=p["token_pointing_game"]
                )
    faith = {}
    if maps and ref.scored:
        with torch.inference_mode():
            faith = score_model(model, x, maps, target=target, steps=cfg.steps, substrate=cfg.substrate)
    for m in faith:
        scores[m].update(
            deletion_auc=float(faith[m]["curves"].deletion_auc),
            insertion_auc=float(faith[m]["curves"].insertion_auc),
        )
    row["scores"] = [{"method": m, **v} for m, v in scores.items()]
    row["seconds_scores"] = time.perf_counter() - t
    if cfg.randomise:
        t = time.perf_counter()
        trained = {m: v for m, v in vols.items() if m in cfg.explanations}
        random = vols.get("random")
        row["randomised"] = randomised_scores(model, x, trained, random, ref, mask, target, seed, cfg)
        row["seconds_randomised"] = time.perf_counter() - t
    return row, ({f"{name}/{k}": v for k, v in grids.items()} if cfg.volumes else {})


RANDOMISED_FIELDS = tuple(RANDOMISED)
"""The fields of each entry of a row's ``randomised`` (besides ``level`` and ``method``)."""
DELETION_LEVELS = ("whole",)
"""Randomisation levels scored by deletion / insertion too (on scored clips). Deletion costs ``2 · steps``
forwards per method, as much as every other score of a level together, and the whole-model level is the one
the deletion evidence needs (does the method beat the random baseline on its own model, and not on a random
one); the cascade levels get the pointing games and the similarity."""


def randomised_scores(
    model: nn.Module,
    x: torch.Tensor,
    trained: Mapping[str, Volume],
    random: Volume | None,
    ref: ClipRef,
    mask: np.ndarray | None,
    target: int,
    seed: int,
    cfg: RowConfig,
) -> list[dict[str, Any]]:
    """The model-randomisation sanity check on one clip: for each level of ``cfg.randomise``, the methods of
    ``trained`` (the trained model's volumes) computed on the randomised model for the same ``target``, with
    the same scores (pointing games where there is a mask, deletion / insertion on a scored clip at the
    :data:`DELETION_LEVELS` — by the
    randomised model's probability of ``target``, with the ``random`` baseline scored the same way, since
    AUCs of different models compare only against their own baseline) and ``similarity``, the Spearman ρ of
    the randomised map with the trained one on their grid (Adebayo et al.'s measure)."""
    out = []
    shape = tuple(int(v) for v in x.shape[2:])
    for level in cfg.randomise:
        twin = randomised(model, level, x, seed=cfg.randomise_seed)
        torch.manual_seed(seed)
        run = run_model(twin, x, list(trained), target=target, options=cfg.options, attention=True, seed=seed)
        vols = _explanations(list(trained), run.volumes, run.timings, run.output)[0]
        faith = {}
        if ref.scored and vols and level in DELETION_LEVELS:
            scored = {**vols, **({"random": random} if random is not None else {})}
            maps = {m: viz.to_frames(v.values, shape, v.footprint) for m, v in scored.items()}
            with torch.inference_mode():
                faith = score_model(twin, x, maps, target=target, steps=cfg.steps, substrate=cfg.substrate)
        if "random" in faith:
            vols = {**vols, "random": random}
        for m, v in vols.items():
            entry: dict[str, Any] = {"level": level, "method": m, **dict.fromkeys(RANDOMISED_FIELDS)}
            if m in trained and mask is not None:
                p = _pointing(v, mask, shape, {})
                entry.update(pointing_game=p["pointing_game"], token_pointing_game=p["token_pointing_game"])
            if m in faith:
                entry.update(
                    deletion_auc=float(faith[m]["curves"].deletion_auc),
                    insertion_auc=float(faith[m]["curves"].insertion_auc),
                )
            if m in trained:
                entry["similarity"] = _spearman(trained[m].values, v.values)[0]
            out.append(entry)
    return out


def clip_rows(
    models: Mapping[str, nn.Module],
    ref: ClipRef,
    decoded: Decoded,
    cfg: RowConfig,
    device: str | torch.device = "cpu",
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """A row per model (in ``models``' order) for one decoded clip, and the volumes of all of them. A
    decode error gives an error row per model; a model that fails gives an error row for that model."""
    dev = torch.device(device)
    rows, volumes = [], {}
    for name, model in models.items():
        if decoded.error is not None:
            rows.append(base_row(ref, name, decoded))
            continue
        cuda = dev.type == "cuda"
        try:  # the clip's seed goes into a forked RNG: the caller's random state is left as it was
            with (
                torch.random.fork_rng(devices=[dev.index or 0] if cuda else []),
                torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda),
            ):
                row, vols = model_row(name, model, ref, decoded, cfg, dev)
        except Exception as e:  # one model's failure must not take the clip (or the run) down
            log.exception("%s failed on %s", name, ref.clip_id)
            row, vols = base_row(ref, name, decoded), {}
            row["error"] = f"{name} failed ({type(e).__name__}: {str(e)[:200]})"
        rows.append(row)
        volumes.update(vols)
    return rows, volumes
