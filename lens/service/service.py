"""The analysis service: clip → models → explanations → files, shared by the app, the API and the CLI.

:meth:`Service.analyse` decodes the clip the way each model's spec asks, runs the model once with attention
capture (:func:`lens.service.run.run_model`), computes the asked explanation methods and keeps the results in
a bounded cache keyed by everything they depend on (:class:`~lens.core.request.ResultKey`), so that any
display can be drawn later without running a model again. A model that fails becomes an error entry for that
model only. :meth:`Service.render` turns an analysis and a :class:`~lens.render.display.Display` into overlay
videos and strips, written only into the service's own output folder.

The service owns every cache (built models, results, drawn panels, decoded clips) and every background
thread (:attr:`Service.threads`: downloads, deferred maps, start-up, network probes); :meth:`Service.close`
stops the threads and deletes the files. It is the :class:`~lens.service.jobs.Runner` of its jobs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mvt
from mvt.quantize import INT8_LABEL, PRECISIONS
from viz.query import Geometry

from ..core.cache import Builder, ModelCache, ResultCache, build_model
from ..core.clips import ClipCache, clip_info
from ..core.records import Analysis, AnalysisRef, ModelError, ModelResult, VolumeKey
from ..core.request import (
    MAX_MODELS,
    LensError,
    Request,
    ResultKey,
    class_index,
    start_time,
    window_count,
)
from ..core.slot import ComputeSlot, waiting_said
from ..core.storage import OutOfSpace, disk_full
from ..core.threads import Threads
from ..core.windows import coverage
from ..explain import methods as M
from ..explain.scoring import score_result
from ..explain.sinks import sinks_of
from ..render.display import DEFAULT_DISPLAY, Display
from ..render.overlays import canonical
from ..render.panels import Panel, draw
from .asking import PointQueries
from .gpu import ZeroGpu
from .jobs import Download, Entry, Job, estimated_seconds, needs_download
from .lifetime import Lifetime
from .run import labels, mean_probs, run_windows, top_k

log = logging.getLogger("mvt-lens")

Progress = Callable[[float, str], None]


def _quiet(frac: float, what: str) -> None:
    return None


def _materialise_all(results: Sequence[ModelResult], slot: ComputeSlot) -> int:
    """Materialise ``results`` in order, each in a background turn of ``slot`` (the task of
    :meth:`Service.warm`); how many there were."""
    for r in results:
        try:
            with slot.hold("deferred maps", background=True):
                r.materialise()
        except Exception:  # a failure must not stop the others; a reader will hit (and report) it again
            log.exception("computing the deferred attention matrices of %s failed", r.name)
    return len(results)


def _summed(runs) -> dict[str, float]:
    """The windows' timings added up by step (one window: its own)."""
    out: dict[str, float] = {}
    for r in runs:
        for k, v in r.timings.items():
            out[k] = out.get(k, 0.0) + float(v)
    return out


def _combined(windows: list[ModelResult], cov, top5, timings: dict[str, float]) -> ModelResult:
    """One model's result over its windows: the window nearest the clip's middle as its own frames, output
    and volumes, the windows' mean prediction as its top-5, every window in ``windows``."""
    middle = (cov.spans[0][0] + cov.spans[-1][1]) / 2
    k = min(range(len(windows)), key=lambda i: abs(float(windows[i].times.mean()) - middle))
    kept = windows if len(windows) > 1 else []
    return replace(windows[k], top5=top5, windows=kept, coverage=cov, timings=timings)


class Service(Lifetime, PointQueries):
    """Caches (models, results, panels, decoded clips), threads, and the operations on them; safe to share
    between threads.

    ``device``: where models run (bf16 autocast on CUDA unless ``bf16=False``). ``out_dir``: the only folder
    :meth:`render` and :meth:`export` write to (default: a new temporary folder). ``max_models``: the most
    models one request may name (``None``: no limit). ``builder(name, device)`` builds a model (default
    ``mvt.create_model``). ``gpu``: ZeroGPU's decorator factory (``spaces.GPU``), called as
    ``gpu(duration=callable)``: every action then runs its models in one GPU call sized to them
    (:class:`lens.service.gpu.ZeroGpu`). ``compute_slots``: how many models may run at once, over all
    requests (``None``: no limit; round-robin across visitors, at most ``max_waiting`` wait: :mod:`lens.core.slot`);
    downloads never take a slot. ``max_model_bytes``, ``max_result_bytes``: the caches' bounds (``lens.core.cache``).

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
        max_waiting: int | None = 12,
        max_model_bytes: int | None = 3 * 2**30,
        max_result_bytes: int | None = 2 * 2**30,
        defer: bool | None = None,
        bf16: bool | None = None,
        max_clips: int = 8,
    ) -> None:
        self.models = ModelCache(device, builder, max_model_bytes)
        self.results: ResultCache[ResultKey, ModelResult] = ResultCache(
            max_results, max_result_bytes, on_evict=self.result_gone
        )
        self.panels: ResultCache[tuple, Panel] = ResultCache(8 * max_results)
        self.clips = ClipCache(max_clips)
        # report.html pages: 1–12 MB each, 0.5–5 s to make (a Kinetics-400 set's: 12 MB, 5 s); the API sends one
        # with every answer, so a crowd asking a few analyses in turn must find them here (bench/soak.py)
        self.reports: ResultCache[tuple, str] = ResultCache(32, 256 * 2**20, size=len)
        self.geometries: ResultCache[int, Geometry] = ResultCache(4 * max_results, max_result_bytes)
        self.threads = Threads()
        self.compute_slots = compute_slots
        self.compute_slot = ComputeSlot(compute_slots or None, max_waiting)
        self.max_models = max_models
        self._seconds: dict[str, float] = {}
        self._out_dir = Path(out_dir) if out_dir is not None else None
        self._out_lock = threading.Lock()
        self._held: dict[str, set[ResultKey]] = {}  # session → results of a class it chose (lifetime.py)
        self.zero = ZeroGpu(self, gpu) if gpu is not None else None  # ZeroGPU: an action's models in one call
        self.defer = gpu is None if defer is None else bool(defer)
        self.bf16 = self.device.type == "cuda" if bf16 is None else bool(bf16)

    @property
    def device(self) -> torch.device:
        return self.models.device

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
        return labels(model.spec if model is not None else mvt.get_spec(name))

    # -- requests ------------------------------------------------------------------------------------------

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
                mvt.get_spec(n)  # a checkpoint spec string (file:, url:, hub:) is recognised here
            except KeyError as e:
                raise LensError(str(e.args[0] if e.args else e)) from None
            except mvt.WeightsError as e:
                raise LensError(f"{n}: {e}") from None
        return names

    def add_model(self, source: str, *, labels: Any = None, arch: str | None = None) -> mvt.ModelSpec:
        """A user's checkpoint into this process's registry, in one call: ``source`` is a spec string
        (``file:…``, ``url:…``, ``hub:org/repo[@rev]``), a path, a URL or a repo id; ``labels`` names its classes
        when the file does not. Returns the spec: its ``name`` goes wherever a registry name goes (a
        comparison, export, faithfulness), ``spec.checkpoint`` is what was recognised (``.describe()``). A file
        that does not fit is one :class:`LensError` naming what did not, and nothing is cached."""
        try:
            return mvt.get_spec(mvt.register_checkpoint_model(source, labels=labels, arch=arch))
        except mvt.WeightsError as e:
            raise LensError(str(e)) from None

    def request(
        self,
        clip: str | os.PathLike | None,
        models: Sequence[str],
        methods: Sequence[str] = M.DEFAULT_METHODS,
        *,
        start_s: float | str | None = None,
        target: int | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        precision: str = "fp32",
        windows: int | str | bool | None = None,
    ) -> Request:
        """A checked :class:`Request`: a :class:`LensError` for a bad one, :class:`mvt.VideoError` when the
        file is not a usable video (its header is read here; the frames are read when a model runs).
        ``windows``: how many evenly spaced windows each model sees without a start time (``None``: each
        model's default, ``"all"``: every window; :func:`lens.core.request.window_count`)."""
        if not clip:
            raise LensError("Upload a video clip (or record one with the webcam) first.")
        names = self._check_models(models)
        wanted = M.normalise(methods)
        self._check_precision(precision, wanted)
        start, count = start_time(start_s), window_count(windows)
        return Request.of(
            clip_info(clip), names, wanted, start_s=start, target=target, options=options,
            precision=precision, windows=count,
        )  # fmt: skip

    def analyse(self, clip: str | os.PathLike | None, models: Sequence[str], *args, **kwargs) -> Analysis:
        """Run ``models`` on the video file ``clip`` and compute ``methods`` (none: predictions only, on the
        fast path); the arguments are :meth:`analyse_iter`'s. ``target`` is the class the gradient methods
        explain (default: each model's prediction); ``options`` maps a method name to its keyword options.
        Raises :class:`mvt.VideoError` when the file is not a usable video and :class:`LensError` for a bad
        request; a model that fails becomes a :class:`ModelError` entry. ``precision="int8"`` runs the models
        with int8 dynamically quantised linear layers (:func:`mvt.quantize.quantize_linears`: faster on a CPU,
        approximate; each result says so in its description and notes)."""
        job = self.analyse_iter(clip, models, *args, **kwargs)
        for _ in job:
            pass
        return job.analysis

    def analyse_iter(
        self,
        clip: str | os.PathLike | None,
        models: Sequence[str],
        methods: Sequence[str] = M.DEFAULT_METHODS,
        *,
        progress: Progress | None = None,
        who: str | None = None,
        **request: Any,
    ) -> Job:
        """:meth:`analyse`, streamed: a :class:`lens.service.jobs.Job` to iterate for ``(index, entry)`` as each
        model finishes (cached results first, then the model expected to finish first; downloads run
        meanwhile). The request (``start_s``, ``target``, ``options``, ``precision``: :meth:`request`) and the
        clip are checked here, before anything runs. ``who``: the visitor (for turns of the compute slot)."""
        report = progress or _quiet
        if clip:
            report(0.0, "reading the clip")
        return Job(self, self.request(clip, models, methods, **request), report, who=who)

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
        return Analysis(ref.request, entries, list(ref.keys))

    def explain_class(
        self,
        ref: AnalysisRef | None,
        index: int,
        klass: str,
        method: str,
        *,
        progress: Progress | None = None,
        who: str | None = None,
    ) -> Analysis:
        """The analysis ``ref`` points at with model ``index`` run again to explain the class ``klass`` (a label
        as typed or picked, ``class N`` or a number) with ``method`` (besides the methods it had)."""
        analysis = self.get(ref)
        if not 0 <= index < len(analysis.entries):
            raise LensError(f"there is no model {index + 1} in this comparison")
        name = analysis.entries[index].name
        target = class_index(klass, self.labels(name))
        if target is None:
            raise LensError(
                f"{name} has no class called {klass!r}: pick one of its top-5 or type its exact name."
            )
        one = self.analyse(
            analysis.clip.path,
            [name],
            [*analysis.methods, method],
            start_s=analysis.start_s,
            target=target,
            progress=progress,
            who=who,
        )
        return analysis.with_entry(index, one.entries[0], one.keys[0])

    # -- the runner of jobs --------------------------------------------------------------------------------

    def cached(self, key: ResultKey, who: str | None = None) -> ModelResult | None:
        hit = self.results.get(key)
        if hit is not None:
            self.hold(key, who)
        return hit

    def download(self, name: str) -> Download | None:
        if not needs_download(name, self.models.loaded()):
            return None
        d = Download(name)
        self.threads.start(f"download {name}", d.run)
        return d

    def run(
        self, request: Request, names: Sequence[str], progress: Progress, who: str | None = None
    ) -> list[Entry]:
        """Run ``names`` (one turn of the compute slot, as ``who``; through ``gpu`` when given, progress said
        here) and keep their results; raises only :class:`lens.core.slot.Busy` (the queue is full)."""
        names = list(names)
        with self._slot(names, progress, who):
            entries = (self.zero.run if self.zero is not None else self._run_models)(request, names, progress)
        for name, entry in zip(names, entries):
            if isinstance(entry, ModelResult):
                self.results.put(request.key(name), entry)
                self.hold(request.key(name), who)
                self.took(name, entry.timings.get("total"))
        return entries

    def _slot(self, names: Sequence[str], progress: Progress, who: str | None = None):
        return self.compute_slot.hold(who, progress=waiting_said(", ".join(names), progress))

    def _run_models(
        self, request: Request, names: Sequence[str], progress: Progress | None = None
    ) -> list[ModelResult | ModelError]:
        """Run ``names`` on the request's clip. On ZeroGPU this runs in the GPU worker: it only returns."""
        out: list[ModelResult | ModelError] = []
        report = progress or _quiet
        for i, name in enumerate(names):

            def step(frac: float, what: str, i: int = i, name: str = name) -> None:
                report((i + frac) / len(names), f"{name}: {what}")

            try:
                pin = self.models.pinned(name, request.precision)  # never evicted while it runs
                with pin, torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    out.append(self._run_model(request, name, step))
            except (mvt.VideoError, mvt.WeightsError, LensError) as e:
                out.append(ModelError(name, str(e)))
            except Exception as e:  # one model's failure must not take the others (or the server) down
                log.exception("%s failed on %s", name, request.clip.path)
                out.append(ModelError(name, f"{name} failed ({type(e).__name__}: {str(e)[:200]})."))
        return out

    def _run_model(self, request: Request, name: str, report: Progress) -> ModelResult:
        t0 = time.perf_counter()
        report(0.0, "loading model")
        precision = request.precision
        model = self.models.get(name, precision)
        spec = model.spec
        load = time.perf_counter() - t0
        report(0.1, "decoding")
        t = time.perf_counter()
        clips = self.clips.windows(request.clip.path, spec, request.start_s, request.windows)
        frames = [mvt.resize_and_crop(c.frames, spec) for c in clips]  # (T, S, S, 3): what the model sees
        xs = [mvt.normalise(f, spec, device=self.device) for f in frames]
        decode = time.perf_counter() - t
        runs = run_windows(
            model,
            xs,
            request.methods,
            target=request.target,
            options=request.option_map,
            lazy=self.defer,
            sinks=sinks_of(name),
            lock=self.models.lock(name if precision == "fp32" else f"{name}@{precision}"),
            progress=lambda f, what: report(0.1 + 0.9 * f, what),
        )
        report(1.0, "done")
        int8 = precision != "fp32"
        names = labels(spec)
        windows = [
            ModelResult(
                name=name,
                description=f"{spec.description}; {INT8_LABEL}" if int8 else spec.description,
                trained=spec.trained,
                frames=f,
                times=np.asarray(c.times, dtype=np.float64),
                fps=float(c.fps) / max(1, spec.frame_stride or 1),
                top5=top_k(run.logits, names),
                target=run.target,
                output=run.output,
                volumes=run.volumes,
                timings=run.timings,
                notes=list(c.notes) + ([f"{INT8_LABEL}: not the model as trained."] if int8 else []),
                precision=precision,
            )
            for c, f, run in zip(clips, frames, runs)
        ]
        chosen = "start" if request.start_s is not None else "every" if request.windows == 0 else "default"
        cov = coverage(clips, spec.frame_stride or 1, request.clip.duration_s, chosen)
        timings = {"load model": load, "decode": decode, **_summed(runs)}
        timings["total"] = time.perf_counter() - t0
        return _combined(windows, cov, top_k(mean_probs(runs), names, probs=True), timings)

    # -- deferred work -------------------------------------------------------------------------------------

    def complete(
        self, result: ModelResult, method: str, progress: Progress | None = None, who: str | None = None
    ) -> ModelResult:
        """Compute ``method``'s pending volumes in every window of ``result`` now, holding a compute slot (a
        panel's slower view, after every fast view is out; taken as ``who``); returns ``result``."""
        name = M.get(method).name
        todo = [(w, k) for w in result.seen for k in w.volumes if k.method == name and not w.volumes.ready(k)]
        if not todo:
            return result
        report = progress or _quiet
        with self._slot([result.name], report, who):
            for i, (w, k) in enumerate(todo):
                report(i / len(todo), f"{result.name}: {M.get(name).label}, window {i + 1} of {len(todo)}")
                _ = w.volumes[k]
        return result

    def warm(self, results: Analysis | ModelResult | Sequence[ModelResult]) -> Future:
        """Compute, in the background, everything ``results`` deferred (each map's head-mean matrix, then the
        pending volumes: rollout), so later displays, statistics and token grids do not wait.

        Returns a :class:`~concurrent.futures.Future` that is done when all of them are. Call it once the
        panels are on screen. The thread runs at a low CPU priority (Linux ``nice`` 10, inherited by its
        OpenMP workers), so a new request's forward passes go first. A reader that needs a deferred value
        before then computes it itself or waits for the thread's computation of it — never twice.
        """
        if isinstance(results, Analysis):
            todo = results.results
        elif isinstance(results, ModelResult):
            todo = [results]
        else:
            todo = list(results)
        pool = self.threads.pool("warm", 1, low_priority=True)
        return pool.submit(_materialise_all, [r for r in todo if not r.ready], self.compute_slot)

    # -- files ---------------------------------------------------------------------------------------------

    def _inside(self, folder: str | Path | None) -> Path:
        out = Path(folder) if folder is not None else self.out_dir
        if out.resolve() != self.out_dir.resolve() and self.out_dir.resolve() not in out.resolve().parents:
            raise ValueError(f"{out} is not inside the service's folder {self.out_dir}")
        out.mkdir(parents=True, exist_ok=True)
        return out

    def render(
        self,
        analysis: Analysis,
        display: Display | Sequence[Display] = DEFAULT_DISPLAY,
        *,
        folder: str | Path | None = None,
        ready_only: bool = False,
    ) -> list[Panel]:
        """A :class:`Panel` per model for ``display`` (one for all, or one per entry): the overlay video, the
        overlay frames as one image with their clip times and per-frame weights, and the all-stages strip.
        Files go to ``folder`` (default :attr:`out_dir`; it must be inside it), named by what they show, so the
        same display is written once. A model that failed, or a display it cannot give (not computed, heads its
        map lacks), is a panel with an ``error`` saying so: errors stay in their own panel. A display of a
        pending volume is computed (waited for); ``ready_only`` leaves pending rows out of the strip, so a
        panel never waits for what it does not show (render again once :meth:`warm` is done for them)."""
        displays = [display] * len(analysis.entries) if isinstance(display, Display) else list(display)
        if len(displays) != len(analysis.entries):
            raise ValueError(f"{len(displays)} displays for {len(analysis.entries)} entries")
        out = self._inside(folder)
        panels = []
        for entry, key, d in zip(analysis.entries, analysis.keys, displays):
            if isinstance(entry, ModelError):
                panels.append(Panel(entry.name, None, error=entry.message, display=d, pending=entry.pending))
                continue
            with contextlib.suppress(LensError):  # an unknown method: draw says so in the panel
                d = canonical(entry, d)  # displays that draw the same picture share one panel
            cache_key = (key, d, str(out), ready_only and not entry.ready)
            panel = self.panels.get(cache_key)
            if panel is None or not (panel.frames and panel.frames.exists()):
                try:
                    panel = draw(entry, key, d, out, ready_only)
                except OutOfSpace as e:  # in its panel, and not cached: there may be room next time
                    panels.append(Panel(entry.name, entry, error=str(e), display=d))
                    continue
                except LensError as e:
                    panel = Panel(entry.name, entry, error=str(e), display=d)
                self.panels.put(cache_key, panel)
            panels.append(panel)
        return panels

    def export(
        self,
        analysis: Analysis,
        *,
        metrics: Mapping[str, Mapping] | None = None,
        display: Display = DEFAULT_DISPLAY,
        folder: str | Path | None = None,
        point: tuple[float, float, float] | None = None,
    ) -> Path:
        """A zip of :func:`lens.files.export.write_export`'s files (overlays, volumes, report.json,
        report.html, timings.json; with ``point`` (t, x, y), where it looks: :meth:`ask_all`), written in
        ``folder`` (default :attr:`out_dir`; it must be inside it)."""
        from ..files.export import write_export

        tmp = Path(tempfile.mkdtemp(dir=self._inside(folder), prefix="export-"))
        asked = [self.ask_all(analysis, *point)] if point is not None else []
        try:
            write_export(
                analysis, tmp / "mvt-lens", metrics=metrics, display=display, asked=asked, cache=self.reports
            )
            return Path(shutil.make_archive(str(tmp / "mvt-lens"), "zip", root_dir=tmp / "mvt-lens"))
        except (OSError, ValueError) as e:  # nothing half-written stays (or is offered)
            shutil.rmtree(tmp, ignore_errors=True)
            if disk_full(e):
                raise OutOfSpace(
                    "The server's disk is full, so the export could not be written. Try again in a few minutes "
                    "(files of sessions that end are deleted)."
                ) from e
            raise

    # -- scores --------------------------------------------------------------------------------------------

    def faithfulness(
        self,
        analysis: Analysis,
        *,
        steps: int = 8,
        progress: Progress | None = None,
        who: str | None = None,
    ) -> dict[str, dict[VolumeKey, dict]]:
        """Deletion / insertion scores of every computed volume of every model, with the random and centre
        baselines (:func:`lens.explain.scoring.score_result`), by model name; each model in a turn of the
        compute slot taken as ``who`` (on ZeroGPU: all of them in one turn, one GPU call)."""
        if self.zero is not None:
            return self.zero.faithfulness(analysis, steps=int(steps), progress=progress, who=who)
        results = analysis.results
        out = {}
        for i, r in enumerate(results):

            def step(frac: float, what: str, i: int = i, name: str = r.name) -> None:
                if progress is not None:
                    progress((i + frac) / len(results), f"{name}: {what}")

            with self._slot([r.name], step, who), self.models.pinned(r.name), self.models.lock(r.name):
                model = self.models.get(r.name)
                out[r.name] = score_result(model, r, steps=int(steps), progress=step)
        return out
