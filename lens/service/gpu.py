"""ZeroGPU, designed for: one GPU call per user action, sized to its models, plain data both ways.

On a ZeroGPU Space, ``spaces.GPU`` runs the decorated function in a forked worker that holds a card for the
seconds the call asks for; its arguments and its result are pickled across, and a visitor's daily quota is a
few minutes (2 min unauthenticated). :class:`ZeroGpu` is how the service runs there:

* models are built outside the GPU function, on the service's device (``cuda``, which ZeroGPU emulates in
  the main process and makes real in the worker): at start-up (:meth:`ZeroGpu.preload`), else just before
  the call that needs them;
* the clip is decoded in the main process (CPU work spends no GPU seconds) and the decoded frames are sent;
* every model of an action — Compare, Explain class, faithfulness — runs in ONE call, whose duration is a
  callable of that call (``spaces`` supports it): :data:`OVERHEAD_S` plus :data:`MARGIN` times the models'
  expected seconds (:meth:`ZeroGpu.expected`), at least :data:`MIN_S`. A model that does not fit in
  :data:`MAX_S` is not run, and its panel says so; so is a faithfulness run that does not fit;
* what comes back is plain data (every tensor moved to the CPU in the worker), and progress is drawn by the
  main process from the time elapsed against the time expected: nothing callable travels to the worker.

The maps are computed in the call (the service does not defer them on ZeroGPU), so drawing, statistics and
token grids afterwards need no GPU call. Elsewhere (a CPU, a GPU Space, a workstation) none of this is used.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import wait
from dataclasses import dataclass
from typing import Any, Protocol

import torch

import mvt

from ..core.cache import ModelCache
from ..core.clips import ClipCache
from ..core.records import Analysis, ModelError, ModelResult, Volume, VolumeKey, Volumes
from ..core.request import LensError, Request
from ..core.threads import Threads
from ..explain import methods as M
from ..explain.scoring import score_result

log = logging.getLogger("mvt-lens.gpu")

Progress = Callable[[float, str], None]
Entry = ModelResult | ModelError

OVERHEAD_S = 5.0
"""Seconds a call costs besides its models: the worker's start and the weights' move onto the card."""
MARGIN = 1.5
"""Headroom over the expected seconds (a call that overruns is cut off by ZeroGPU)."""
MIN_S, MAX_S = 10, 120
"""The shortest call asked for, and the longest: an anonymous visitor's whole daily quota is 120 s."""
KIND_COST = {"attention": 0.0, "rollout": 0.5, "gradient": 3.0, "captum": 30.0, "baseline": 0.0}
"""A method's cost in forward passes, by kind: maps come with the forward; a gradient method is about a
forward and a backward with capture; a captum method runs ~16 of those (integrated gradients' steps)."""
FAITHFULNESS_BATCH = 0.5
"""Cost of one clip of a batched faithfulness forward, in forwards of one clip (batches of 8)."""
CARD_SPEEDUP = 8.0
"""How many times faster than the service's estimate (:func:`lens.service.jobs.estimated_seconds`, about a
2-vCPU model's time) a model is taken to run on a ZeroGPU card before it has been measured there: the
self-check's target ratio (four Kinetics-size models in <= 1.5 s on an A100/H100-class card, against 11-12 s
on 2 vCPUs), so with :data:`MARGIN` a first call asks for 1.5x what a card at the target takes."""
POLL_S = 0.25
"""How often the main process reports progress while a call runs."""


@dataclass(frozen=True)
class GpuCall:
    """One GPU call, by value (pickled to the worker): ``kind`` ``"run"`` (``request``'s ``names``, their
    decoded ``clips``) or ``"score"`` (``results``: what faithfulness scores, ``steps`` per curve); and the
    ``seconds`` it asks for. ``clips``: each model's windows, decoded."""

    kind: str
    names: tuple[str, ...]
    seconds: int
    request: Request | None = None
    clips: tuple[tuple[mvt.Clip, ...], ...] = ()
    results: tuple[ModelResult, ...] = ()
    steps: int = 8


def requested_seconds(call: GpuCall) -> int:
    """The duration callable given to ``spaces.GPU``: what ``call`` planned for itself."""
    return call.seconds


def asked(expected: float) -> int:
    """Seconds to ask for work expected to take ``expected`` seconds on the card."""
    return max(MIN_S, math.ceil(OVERHEAD_S + MARGIN * expected))


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (in lists, tuples, dicts and dataclasses, changed in place) detached
    and on the CPU: what a worker may send back (a CUDA tensor would not unpickle in the main process)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, list):
        return [to_cpu(v) for v in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(to_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            object.__setattr__(value, f.name, to_cpu(getattr(value, f.name)))
    return value


def painted(result: ModelResult) -> ModelResult:
    """What faithfulness needs of ``result``, by value: no captured output, every volume painted on the frames
    (the worker scores them as they are)."""
    shape = result.frames.shape[:3]
    volumes = Volumes({k: Volume(result.volumes[k].painted(shape)) for k in result.volumes})
    return dataclasses.replace(result, output=None, volumes=volumes, windows=[])


class Host(Protocol):
    """What :class:`ZeroGpu` uses of :class:`lens.Service` (named here, so the two do not import each other)."""

    models: ModelCache
    clips: ClipCache
    threads: Threads

    @property
    def device(self) -> torch.device: ...

    def expected_seconds(self, name: str) -> float: ...

    def _run_models(self, request: Request, names: Sequence[str], progress: Any = None) -> list[Entry]: ...

    def _slot(self, names: Sequence[str], progress: Progress, who: str | None = None) -> Any: ...


class ZeroGpu:
    """The service's models run through ``gpu`` (``spaces.GPU``), one call per action (module docstring)."""

    def __init__(self, service: Host, gpu: Callable[..., Callable]) -> None:
        self.service = service
        self._call = gpu(duration=requested_seconds)(self._work)
        self._forward: dict[str, float] = {}
        self.calls: deque[tuple[str, int, float]] = deque(maxlen=100)
        """The last calls made here: (kind and models, seconds asked, seconds it took)."""

    # -- planning ------------------------------------------------------------------------------------------

    def forward_seconds(self, name: str) -> float:
        """One forward of ``name`` as last measured in a call, else the service's expectation for it (on a
        card: divided by :data:`CARD_SPEEDUP`)."""
        if name in self._forward:
            return self._forward[name]
        card = self.service.device.type == "cuda"
        return self.service.expected_seconds(name) / (CARD_SPEEDUP if card else 1.0)

    def expected(self, name: str, methods: Sequence[str], windows: int = 1) -> float:
        """Seconds ``name`` is expected to take on the card with ``methods`` over ``windows`` windows."""
        cost = 1.0 + sum(KIND_COST.get(M.get(m).kind, 1.0) for m in methods)
        return self.forward_seconds(name) * cost * max(1, windows)

    def fit(
        self, names: Sequence[str], methods: Sequence[str], windows: Mapping[str, int] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """The models that fit in one call (in order; ``windows``: how many each runs), and why each of the
        others does not."""
        kept, refused, total = [], {}, 0.0
        for name in names:
            e = self.expected(name, methods, (windows or {}).get(name, 1))
            if asked(total + e) > MAX_S:
                refused[name] = (
                    f"{name} with these methods needs about {asked(e)} s of GPU time, more than is left of the "
                    f"{MAX_S} s one ZeroGPU call may ask for: pick fewer models or windows, or leave out the "
                    "captum methods."
                )
                continue
            kept.append(name)
            total += e
        return kept, refused

    # -- the actions (main process) --------------------------------------------------------------------------

    def preload(self, names: Sequence[str]) -> dict[str, str]:
        """Build ``names`` on the service's device now, outside any GPU call (start-up); what failed, why."""
        failed = {}
        for name in names:
            try:
                self.service.models.get(name)
            except Exception as e:  # a model that cannot be built says so when it is asked for
                failed[name] = f"{type(e).__name__}: {e}"
                log.warning("ZeroGPU start-up: %s not built: %s", name, e)
        return failed

    def _prepare(self, request: Request, name: str) -> tuple[mvt.Clip, ...]:
        """``name`` built (outside the GPU call) and its windows of the clip decoded."""
        spec = self.service.models.get(name, request.precision).spec
        return tuple(self.service.clips.windows(request.clip.path, spec, request.start_s, request.windows))

    def run(self, request: Request, names: Sequence[str], progress: Progress) -> list[Entry]:
        """Run ``names`` of ``request`` in one GPU call; one entry each, in order (never raises for a model)."""
        entries: dict[str, Entry] = {}
        clips: dict[str, tuple[mvt.Clip, ...]] = {}
        for name in dict.fromkeys(names):
            try:
                clips[name] = self._prepare(request, name)
            except (mvt.VideoError, mvt.WeightsError, LensError) as e:
                entries[name] = ModelError(name, str(e))
            except Exception as e:  # one model's failure must not take the others down
                log.exception("%s could not be prepared", name)
                entries[name] = ModelError(name, f"{name} failed ({type(e).__name__}: {str(e)[:200]}).")
        fits, refused = self.fit(list(clips), request.methods, {n: len(c) for n, c in clips.items()})
        entries.update({n: ModelError(n, why) for n, why in refused.items()})
        todo = tuple(fits)
        if todo:
            expected = sum(self.expected(n, request.methods, len(clips[n])) for n in todo)
            call = GpuCall("run", todo, asked(expected), request=request, clips=tuple(clips[n] for n in todo))
            try:
                entries.update(zip(todo, self._submit(call, expected, progress)))
            except Exception as e:  # refused (quota) or the worker failed: every model of the call says why
                entries.update({n: ModelError(n, self._failed(e)) for n in todo})
        for entry in entries.values():
            if isinstance(entry, ModelResult):
                seconds = entry.timings.get("forward + capture", entry.timings.get("forward"))
                if seconds:  # the windows' forwards added up: one window's
                    self._forward[entry.name] = float(seconds) / max(1, len(entry.seen))
        return [entries[n] for n in names]

    def faithfulness(
        self, analysis: Analysis, *, steps: int = 8, progress: Progress | None = None, who: str | None = None
    ) -> dict[str, dict[VolumeKey, dict]]:
        """Faithfulness scores of every model of ``analysis`` (as :meth:`lens.Service.faithfulness`), in one
        GPU call; a :class:`LensError` when it would not fit in one."""
        results = analysis.results
        if not results:
            return {}
        curves = 2 * (int(steps) + 1)  # deletion and insertion, each with its end points
        expected = sum(
            curves * (len(r.volumes) + len(M.BASELINES)) * FAITHFULNESS_BATCH * self.forward_seconds(r.name)
            for r in results
        )
        if asked(expected) > MAX_S:
            raise LensError(
                f"Scoring {len(results)} model(s) at {steps} steps needs about {asked(expected)} s of GPU time, "
                f"more than one ZeroGPU call may ask for ({MAX_S} s): use fewer steps or compare fewer models."
            )
        names = tuple(r.name for r in results)
        call = GpuCall(
            "score", names, asked(expected), results=tuple(painted(r) for r in results), steps=int(steps)
        )
        try:
            with self.service._slot(names, progress or (lambda frac, what: None), who):  # one turn for all
                scores = self._submit(call, expected, progress)
        except LensError:
            raise
        except Exception as e:
            raise LensError(self._failed(e)) from None
        return dict(zip(names, scores))

    def _failed(self, error: BaseException) -> str:
        log.warning("a ZeroGPU call failed: %s: %s", type(error).__name__, error)
        why = str(error) or type(error).__name__
        return f"The GPU call did not run: {why}"

    def _submit(self, call: GpuCall, expected: float, progress: Progress | None) -> list:
        """``call`` through ``spaces.GPU`` on a thread that keeps this request's context (ZeroGPU reads the
        visitor from it, for their quota); progress is drawn here meanwhile."""
        pool = self.service.threads.pool("gpu", 4)
        started = time.monotonic()
        future = pool.submit(contextvars.copy_context().run, self._call, call)
        what = f"{', '.join(call.names)}: on the GPU"
        while not wait([future], timeout=POLL_S).done:  # the call's own errors are raised below, not here
            if progress is not None:
                took = time.monotonic() - started
                progress(min(0.95, took / max(expected, 1e-3)), f"{what} ({took:.0f} s of ~{expected:.0f} s)")
        self.calls.append((f"{call.kind} {', '.join(call.names)}", call.seconds, time.monotonic() - started))
        return future.result()

    # -- the call (in the GPU worker) ------------------------------------------------------------------------

    def _work(self, call: GpuCall) -> list:
        """The GPU function: runs in ZeroGPU's forked worker; plain values in, CPU values out."""
        if (
            self.service.device.type == "cuda"
        ):  # forked OpenMP threads can hang (GNU); the work is on the card
            torch.set_num_threads(1)
        if call.kind == "run":
            r = call.request
            for name, clips in zip(
                call.names, call.clips
            ):  # decoded by the main process: kept, not decoded again
                spec = self.service.models.get(name, r.precision).spec
                self.service.clips.keep(r.clip.path, spec, r.start_s, r.windows, clips)
            return to_cpu(self.service._run_models(r, call.names))
        return to_cpu([self._score(r, call.steps) for r in call.results])

    def _score(self, result: ModelResult, steps: int) -> Mapping[VolumeKey, dict]:
        model = self.service.models.get(result.name)
        with self.service.models.lock(result.name):
            return score_result(model, result, steps=steps)
