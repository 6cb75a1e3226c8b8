"""The analysis service: clip → models → explanations → files, shared by the app and the CLI.

:meth:`Service.analyse` decodes the clip the way each model's spec asks, runs the model once with
attention capture, computes the asked explanation methods and keeps the results in a bounded cache keyed
by everything they depend on (clip hash, model, start time, methods, target class, options), so that any
view can be re-rendered later without running a model again. A model that fails becomes an error entry for
that model only. :meth:`Service.render` turns an analysis and a :class:`~lens.records.View` into overlay
videos and strips, written only into the service's own output folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mvt
from mvt.layers import Capture, supported
from mvt.quantize import INT8_LABEL, PRECISIONS

from . import clips
from . import methods as M
from .cache import Builder, ModelCache, ResultCache, build_model
from .faithfulness import score_result
from .jobs import Job, estimated_seconds
from .notes import mark as mark_sinks
from .records import (
    DEFAULT_VIEW,
    Analysis,
    AnalysisRef,
    LensError,
    ModelError,
    ModelResult,
    ResultKey,
    View,
    VolumeKey,
)
from .timeline import frame_weights, write_sprite
from .views import captions, resolve, stage_strip, strip_keys, write_overlay, write_png

log = logging.getLogger("mvt-lens")

Progress = Callable[[float, str], None]
MAX_MODELS = 4
"""How many models one comparison shows side by side (the app has this many panels)."""


def _quiet(frac: float, what: str) -> None:
    return None


_BACKGROUND_NICE = 10
"""Nice value of the background thread: the scheduler gives a nice-0 thread ~9× its CPU share, so a new
request goes first, yet the deferred work still advances on a machine busy with other processes (at 19 it
starved behind them in bench/service.py on the shared development machine)."""


def _lowest_priority() -> None:
    """Background threads yield the CPU to requests (Linux: the calling thread's nice value; threads it
    starts, e.g. OpenMP workers, inherit it). Elsewhere a no-op."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _BACKGROUND_NICE)


def _materialise_all(results: Sequence[ModelResult]) -> int:
    """Materialise ``results`` in order (the background task of :meth:`Service.warm`); how many there were."""
    for r in results:
        try:
            r.materialise()
        except Exception:  # a failure must not stop the others; a reader will hit (and report) it again
            log.exception("computing the deferred attention matrices of %s failed", r.name)
    return len(results)


def _frozen(options: Mapping[str, Mapping[str, Any]] | None) -> tuple:
    return tuple(sorted((k, tuple(sorted(v.items()))) for k, v in (options or {}).items()))


def top_k(logits: torch.Tensor, labels: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    probs = logits.float().softmax(-1)[0]
    vals, idx = probs.topk(min(k, probs.numel()))
    return [
        (labels[i] if i < len(labels) else f"class {i}", float(v))
        for v, i in zip(vals.tolist(), idx.tolist())
    ]


def _labels(spec: mvt.ModelSpec) -> tuple[str, ...]:
    try:
        return spec.labels
    except (KeyError, ImportError):
        return tuple(f"class {i}" for i in range(spec.num_classes or 0))


def start_time(start_s: float | str | None) -> float | None:
    """A start time from a user: empty, zero or negative means the whole clip."""
    if start_s in (None, ""):
        return None
    try:
        value = float(start_s)
    except (TypeError, ValueError):
        raise LensError(f"start time {start_s!r} is not a number of seconds") from None
    return value if value > 0 else None


@dataclass(frozen=True)
class Panel:
    """What one model's panel shows for a view: its result, the volume drawn and the files — or, in place of
    the picture, why it cannot be drawn (``error``; ``result`` is still there when the model ran)."""

    name: str
    result: ModelResult | None
    error: str | None = None
    key: VolumeKey | None = None
    overlay: Path | None = None
    """The overlay video (mp4) of the view: what a person downloads."""
    strip: Path | None = None
    """Every stage's attention (and the rollout) over eight frames, one row each (PNG)."""
    frames: Path | None = None
    """The overlay frames tiled into one JPEG (``grid`` columns × rows, in order): what the timeline shows."""
    grid: tuple[int, int] = (1, 1)
    times: tuple[float, ...] = ()
    """The clip time (seconds) of each frame the model saw."""
    weights: tuple[float, ...] = ()
    """How much of the explanation falls on each frame (shares summing to 1): the importance curve."""
    captions: tuple[str, ...] = ()
    """Sentences about this view, shown under the picture (see :data:`lens.views.CAPTIONERS`)."""
    view: View | None = None
    pending: bool = False
    """The model has not finished yet (see :class:`~lens.records.ModelError`)."""


class Service:
    """Caches (models, results, decoded clips) and the operations on them; safe to share between threads.

    ``device``: where models run (bf16 autocast on CUDA unless ``bf16=False``). ``out_dir``: the only folder :meth:`render` and
    :meth:`export` write to (default: a new temporary folder). ``max_models``: the most models one request
    may name (``None``: no limit). ``builder(name, device)`` builds a model (default
    ``mvt.create_model``). ``gpu`` wraps the function that runs the models (e.g. ``spaces.GPU``).
    ``compute_slots``: how many models may run at once, over all requests (``None``: no limit); downloads
    never take a slot.

    ``defer`` (default: on, unless ``gpu`` runs the models in another process): pay for what is shown. A
    model runs its fused fast path and keeps, per attention map, the per-head CLS row (computed now) and
    its queries and keys; the full head-mean matrices, and the volumes that read them (rollout), are
    computed on first read — or all at once in the background by :meth:`warm`.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        *,
        out_dir: str | Path | None = None,
        max_results: int = 24,
        max_models: int | None = MAX_MODELS,
        builder: Builder = build_model,
        gpu: Callable[[Callable], Callable] | None = None,
        compute_slots: int | None = 1,
        defer: bool | None = None,
        bf16: bool | None = None,
    ) -> None:
        self.models = ModelCache(device, builder)
        self.compute_slots = compute_slots
        self.compute_slot = threading.Semaphore(compute_slots) if compute_slots else None
        self._seconds: dict[str, float] = {}
        self._panels: ResultCache[tuple, Panel] = ResultCache(8 * max_results)
        self.results: ResultCache[ResultKey, ModelResult] = ResultCache(max_results)
        self.max_models = max_models
        self._out_dir = Path(out_dir) if out_dir is not None else None
        self._out_lock = threading.Lock()
        self._run = gpu(self._run_models) if gpu is not None else self._run_models
        self.defer = gpu is None if defer is None else bool(defer)
        self.bf16 = self.device.type == "cuda" if bf16 is None else bool(bf16)
        self._background: ThreadPoolExecutor | None = None

    @property
    def device(self) -> torch.device:
        return self.models.device

    @property
    def out_dir(self) -> Path:
        """The folder every file this service writes goes to (created on first use)."""
        with self._out_lock:
            if self._out_dir is None:
                self._out_dir = Path(tempfile.mkdtemp(prefix="mvt-lens-"))
            self._out_dir.mkdir(parents=True, exist_ok=True)
            return self._out_dir

    def session_dir(self, session: str | None) -> Path:
        """A folder of :attr:`out_dir` for one user's files (``None``: :attr:`out_dir` itself)."""
        if not session:
            return self.out_dir
        safe = "".join(c for c in str(session) if c.isalnum() or c in "-_")[:64] or "anonymous"
        folder = self.out_dir / f"session-{safe}"
        folder.mkdir(exist_ok=True)
        return folder

    def end_session(self, session: str | None) -> None:
        """Delete the files of one user's session (when their browser session ends)."""
        if session:
            shutil.rmtree(self.session_dir(session), ignore_errors=True)

    def close(self) -> None:
        """Delete every file this service wrote (at exit)."""
        with self._out_lock:
            if self._out_dir is not None:
                shutil.rmtree(self._out_dir, ignore_errors=True)

    # -- models --------------------------------------------------------------------------------------------

    def expected_seconds(self, name: str) -> float:
        """How long ``name`` is expected to take: the last time it ran here, else an estimate."""
        return self._seconds.get(name, estimated_seconds(name))

    def took(self, name: str, seconds: float | None) -> None:
        if seconds is not None:
            self._seconds[name] = float(seconds)

    def forget(self, name: str) -> None:
        """Drop the built model ``name`` and its cached results (after its registration or weights changed)."""
        self.models.forget(name)
        self.results.drop(lambda key: key.model == name)
        self._seconds.pop(name, None)

    def labels(self, name: str) -> tuple[str, ...]:
        """The class names of ``name`` as its weights give them (a loaded hub model's own ``id2label``)."""
        model = self.models.peek(name)
        return _labels(model.spec if model is not None else mvt.get_spec(name))

    # -- analysis ------------------------------------------------------------------------------------------

    def _check_precision(self, precision: str, methods: Sequence[str]) -> None:
        if precision not in PRECISIONS:
            raise LensError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        if precision == "fp32":
            return
        if self.device.type != "cpu":
            raise LensError("int8 quantisation runs on the CPU only; this app runs its models on a GPU.")
        if grad := [M.get(m).label for m in methods if M.get(m).needs_gradients]:
            raise LensError(
                f"{', '.join(grad)} need gradients, which the int8 layers do not have: untick int8 for them."
            )

    def _check_models(self, models: Sequence[str]) -> list[str]:
        names = list(models or [])
        if not names:
            raise LensError("Pick at least one model.")
        if self.max_models is not None and len(names) > self.max_models:
            raise LensError(f"Pick at most {self.max_models} models.")
        for n in names:
            try:
                mvt.get_spec(n)
            except KeyError as e:
                raise LensError(str(e.args[0] if e.args else e)) from None
        return names

    def analyse(
        self,
        clip: str | os.PathLike | None,
        models: Sequence[str],
        methods: Sequence[str] = M.DEFAULT_METHODS,
        *,
        start_s: float | str | None = None,
        target: int | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        progress: Progress | None = None,
        precision: str = "fp32",
    ) -> Analysis:
        """Run ``models`` on the video file ``clip`` and compute ``methods`` (none: predictions only, on the
        fast path). ``target`` is the class the gradient methods explain (default: each model's
        prediction); ``options`` maps a method name to its keyword options. Raises
        :class:`mvt.VideoError` when the file is not a usable video and :class:`LensError` for a bad
        request; a model that fails becomes a :class:`ModelError` entry. ``precision="int8"`` runs the
        models with int8 dynamically quantised linear layers (:func:`mvt.quantize.quantize_linears`: faster on
        a CPU, approximate; each result says so in its description and notes). The same as iterating
        :meth:`analyse_iter` to the end."""
        job = self.analyse_iter(
            clip,
            models,
            methods,
            start_s=start_s,
            target=target,
            options=options,
            progress=progress,
            precision=precision,
        )
        for _ in job:
            pass
        return job.analysis

    def analyse_iter(
        self,
        clip: str | os.PathLike | None,
        models: Sequence[str],
        methods: Sequence[str] = M.DEFAULT_METHODS,
        *,
        start_s: float | str | None = None,
        target: int | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        progress: Progress | None = None,
        precision: str = "fp32",
    ) -> Job:
        """:meth:`analyse`, streamed: a :class:`lens.jobs.Job` to iterate for ``(index, entry)`` as each model
        finishes (cached results first, then the model expected to finish first; downloads run meanwhile).
        The request and the clip are checked here, before anything runs."""
        if not clip:
            raise LensError("Upload a video clip (or record one with the webcam) first.")
        names = self._check_models(models)
        wanted = M.normalise(methods)
        self._check_precision(precision, wanted)
        start = start_time(start_s)
        report = progress or _quiet
        report(0.0, "reading the clip")
        info = clips.clip_info(clip)
        keys = [ResultKey(info.sha256, n, start, wanted, target, _frozen(options), precision) for n in names]
        return Job(self, info, names, keys, wanted, start, target, options, report, precision)

    def run_one(
        self,
        path: str,
        name: str,
        start: float | None,
        methods: tuple[str, ...],
        target: int | None,
        options: Mapping[str, Mapping[str, Any]] | None,
        progress: Progress,
        precision: str = "fp32",
    ) -> ModelResult | ModelError:
        """Run one model (through ``gpu`` when given); never raises for the model's own failures."""
        return self._run(path, [name], start, methods, target, options, progress, precision)[0]

    def get(self, ref: AnalysisRef | None) -> Analysis:
        """The analysis ``ref`` points at, from the cache (a :class:`LensError` if it was evicted)."""
        if ref is None:
            raise LensError("Run a comparison first.")
        entries: list[ModelResult | ModelError] = []
        for key, error in zip(ref.keys, ref.errors):
            entry = error if key is None else self.results.get(key)
            if entry is None:
                raise LensError("These results were evicted from the cache: press Compare again.")
            entries.append(entry)
        return Analysis(ref.clip, ref.start_s, ref.methods, ref.target, entries, list(ref.keys))

    def _run_models(
        self,
        path: str,
        names: list[str],
        start: float | None,
        methods: tuple[str, ...],
        target: int | None,
        options: Mapping[str, Mapping[str, Any]] | None,
        progress: Progress,
        precision: str = "fp32",
    ) -> list[ModelResult | ModelError]:
        """Run ``names`` on the clip. Under ``gpu`` (ZeroGPU) this runs in a worker: it only returns."""
        out: list[ModelResult | ModelError] = []
        dev = self.device
        for i, name in enumerate(names):

            def step(frac: float, what: str, i: int = i, name: str = name) -> None:
                progress((i + frac) / len(names), f"{name}: {what}")

            try:
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16):
                    out.append(
                        self._run_model(
                            path, name, start, methods, target, options, step, precision=precision
                        )
                    )
            except (mvt.VideoError, mvt.WeightsError, LensError) as e:
                out.append(ModelError(name, str(e)))
            except Exception as e:  # one model's failure must not take the others (or the server) down
                log.exception("%s failed on %s", name, path)
                out.append(ModelError(name, f"{name} failed ({type(e).__name__}: {str(e)[:200]})."))
        return out

    def _run_model(
        self,
        path: str,
        name: str,
        start: float | None,
        methods: tuple[str, ...],
        target: int | None,
        options: Mapping[str, Mapping[str, Any]] | None,
        report: Progress,
        precision: str = "fp32",
    ) -> ModelResult:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        report(0.0, "loading model")
        model = self.models.get(name, precision)
        spec = model.spec
        timings["load model"] = time.perf_counter() - t0

        report(0.1, "decoding")
        t = time.perf_counter()
        clip = clips.read_clip(path, spec, start)
        frames = mvt.resize_and_crop(clip.frames, spec)  # (T, S, S, 3): exactly what the model sees
        x = mvt.normalise(frames, spec, device=self.device)
        timings["decode"] = time.perf_counter() - t

        t = time.perf_counter()
        output = None
        with torch.inference_mode():
            if methods:
                lazy = self.defer and Capture.LAZY in supported(model)
                report(0.3, "forward, CLS rows of every map" if lazy else "forward with attention")
                output = (
                    model.forward_with_attention(x, capture=Capture.LAZY)
                    if lazy
                    else model.forward_with_attention(x)
                )
                logits = output.logits
                mark_sinks(output, name)
            else:
                report(0.3, "forward")
                logits = model(x)
        timings["forward + capture" if methods else "forward"] = time.perf_counter() - t
        for key, value in (output.extras.get("stage_seconds", {}) if output else {}).items():
            timings[f"  {key}"] = value
        classes = int(logits.shape[-1])
        if target is not None and not 0 <= int(target) < classes:
            raise LensError(f"class {target} does not exist for {name}: it has classes 0 to {classes - 1}")
        chosen = int(logits[0].argmax()) if target is None else int(target)

        volumes, method_times = M.compute(
            model,
            x,
            output,
            methods,
            target=chosen,
            options=options,
            lock=self.models.lock(name if precision == "fp32" else f"{name}@{precision}"),
            progress=lambda f, what: report(0.5 + 0.5 * f, what),
            defer=self.defer,
        )
        timings.update(method_times)
        timings["total"] = time.perf_counter() - t0
        report(1.0, "done")
        return ModelResult(
            name=name,
            description=spec.description if precision == "fp32" else f"{spec.description}; {INT8_LABEL}",
            trained=spec.trained,
            frames=frames,
            times=np.asarray(clip.times, dtype=np.float64),
            fps=float(clip.fps) / max(1, spec.frame_stride or 1),
            top5=top_k(logits, _labels(spec)),
            target=chosen,
            output=output,
            volumes=volumes,
            timings=timings,
            notes=list(clip.notes)
            + ([f"{INT8_LABEL}: not the model as trained."] if precision != "fp32" else []),
            precision=precision,
        )

    # -- deferred work -------------------------------------------------------------------------------------

    def warm(self, results: Analysis | ModelResult | Sequence[ModelResult]) -> Future:
        """Compute, in one background thread, everything ``results`` deferred (each map's head-mean matrix,
        then the pending volumes: rollout), so later views, statistics and token grids do not wait.

        Returns a :class:`~concurrent.futures.Future` that is done when all of them are. Call it once the
        panels are on screen. The thread runs at a low CPU priority (Linux ``nice`` 10, inherited by
        its OpenMP workers), so a new request's forward passes go first. A reader that needs a deferred
        value before then computes it itself or waits for the thread's computation of it — never twice.
        """
        if isinstance(results, Analysis):
            todo = results.results
        elif isinstance(results, ModelResult):
            todo = [results]
        else:
            todo = list(results)
        with self._out_lock:
            if self._background is None:
                self._background = ThreadPoolExecutor(
                    1, thread_name_prefix="mvt-lens-warm", initializer=_lowest_priority
                )
            pool = self._background
        return pool.submit(_materialise_all, [r for r in todo if not r.ready])

    # -- files ---------------------------------------------------------------------------------------------

    def render(
        self,
        analysis: Analysis,
        view: View | Sequence[View] = DEFAULT_VIEW,
        *,
        folder: str | Path | None = None,
        ready_only: bool = False,
    ) -> list[Panel]:
        """A :class:`Panel` per model for ``view`` (one view for all, or one per entry): the overlay video, the
        overlay frames as one image with their clip times and per-frame weights, and the all-stages strip.
        Files go to ``folder`` (default :attr:`out_dir`; it must be inside it), named by what they show, so the
        same view is written once. A model that failed, or a view it cannot give (not computed, heads its map
        lacks), is a panel with an ``error`` saying so: errors stay in their own panel. A view of a pending
        volume is computed (waited for); ``ready_only`` leaves pending rows out of the strip, so a panel never
        waits for what it does not show (render again once :meth:`warm` is done for them)."""
        views = [view] * len(analysis.entries) if isinstance(view, View) else list(view)
        if len(views) != len(analysis.entries):
            raise ValueError(f"{len(views)} views for {len(analysis.entries)} entries")
        out = Path(folder) if folder is not None else self.out_dir
        if out.resolve() != self.out_dir.resolve() and self.out_dir.resolve() not in out.resolve().parents:
            raise ValueError(f"{out} is not inside the service's folder {self.out_dir}")
        out.mkdir(parents=True, exist_ok=True)
        panels = []
        for entry, key, v in zip(analysis.entries, analysis.keys, views):
            if isinstance(entry, ModelError):
                panels.append(Panel(entry.name, None, error=entry.message, view=v, pending=entry.pending))
                continue
            cache_key = (key, v, str(out), ready_only and not entry.ready)
            panel = self._panels.get(cache_key)
            if panel is None or not (panel.frames and panel.frames.exists()):
                try:
                    panel = self._render_one(entry, key, v, out, ready_only)
                except LensError as e:
                    panel = Panel(entry.name, entry, error=str(e), view=v)
                self._panels.put(cache_key, panel)
            panels.append(panel)
        return panels

    def _render_one(
        self, entry: ModelResult, key: ResultKey | None, view: View, out: Path, ready_only: bool = False
    ) -> Panel:
        vkey, volume = resolve(entry, view)
        tag = hashlib.sha1(repr((key, view)).encode()).hexdigest()[:12]
        safe = entry.name.replace(".", "_")
        video = out / f"overlay_{safe}_{vkey.slug}_{tag}.mp4"
        if not video.exists():
            write_overlay(entry, volume, video, view)
        frames = out / f"frames_{safe}_{vkey.slug}_{tag}.jpg"
        grid = write_sprite(entry, volume, frames, view)
        rows = tuple(strip_keys(entry, ready_only=ready_only))
        stag = hashlib.sha1(repr((key, view.colormap, view.opacity, rows)).encode()).hexdigest()[:12]
        strip = out / f"strip_{safe}_{stag}.png"
        if not strip.exists():
            write_png(stage_strip(entry, view, ready_only=ready_only), strip)
        return Panel(
            entry.name,
            entry,
            key=vkey,
            overlay=video,
            strip=strip,
            frames=frames,
            grid=grid,
            times=tuple(float(t) for t in entry.times),
            weights=tuple(float(w) for w in frame_weights(entry, volume)),
            captions=captions(entry, view, vkey, volume),
            view=view,
        )

    def export(
        self,
        analysis: Analysis,
        *,
        metrics: Mapping[str, Mapping] | None = None,
        view: View = DEFAULT_VIEW,
        folder: str | Path | None = None,
    ) -> Path:
        """A zip of :func:`lens.export.write_export`'s files (overlays, volumes, report.json, report.html,
        timings.json), written in ``folder`` (default :attr:`out_dir`)."""
        from .export import write_export

        base = Path(folder) if folder is not None else self.out_dir
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=base, prefix="export-"))
        write_export(analysis, tmp / "mvt-lens", metrics=metrics, view=view)
        return Path(shutil.make_archive(str(tmp / "mvt-lens"), "zip", root_dir=tmp / "mvt-lens"))

    # -- scores --------------------------------------------------------------------------------------------

    def faithfulness(
        self, analysis: Analysis, *, steps: int = 8, progress: Progress | None = None
    ) -> dict[str, dict[VolumeKey, dict]]:
        """Deletion / insertion scores of every computed volume of every model, with the random and centre
        baselines (:func:`lens.faithfulness.score_result`), by model name."""
        results = analysis.results
        out = {}
        for i, r in enumerate(results):

            def step(frac: float, what: str, i: int = i, name: str = r.name) -> None:
                if progress is not None:
                    progress((i + frac) / len(results), f"{name}: {what}")

            model = self.models.get(r.name)
            with self.models.lock(r.name):
                out[r.name] = score_result(model, r, steps=int(steps), progress=step)
        return out
