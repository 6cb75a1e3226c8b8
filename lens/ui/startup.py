"""Space start-up: fetch the default model set's weights and warm the models up, in the background.

A new Space starts with empty caches. :func:`start` runs, on one of the service's threads, (1) picks the default set the
way the app does (:func:`lens.ui.defaults.default_set`: Kinetics-400 when it can be had), (2) downloads whatever
of it is not on disk, logging progress every ~10 % (``mvt.prefetch``), and (3) runs one comparison of a shipped
example with the app's default explanations, through the service like any request (it takes the compute slot
model by model, so a user who arrives meanwhile is served between models). After that the models are built
and every first-call cost (weights read, kernels chosen, buffers sized) has been paid: the first user's
Compare costs what a steady one does. The app is usable the whole time with whatever is ready. On ZeroGPU
step (3) only builds the models (:meth:`lens.service.gpu.ZeroGpu.preload`): a warm-up would spend GPU quota.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import mvt
from mvt.prefetch import prefetch

from ..core import memory
from ..explain.evidence import lead_method
from ..service.jobs import needs_download
from ..service.service import Service
from . import defaults, examples

log = logging.getLogger("mvt-lens.startup")

WARM_METHODS = ("attention", "rollout")
"""What the app computes by default besides each model's lead method (Show = most faithful, Also compute =
rollout)."""


def warm_clip(model_set: str) -> Path | None:
    """The shipped example that suits ``model_set`` (the one a first visitor is likeliest to try)."""
    return next((e.path for e in examples.available() if e.model_set == model_set), None)


def warm_up(
    service: Service, names: Sequence[str], clip: str | Path, methods: Sequence[str] = WARM_METHODS
) -> dict:
    """Run ``names`` once on ``clip`` with ``methods`` and each model's lead method (computed, as a panel's
    view streamed in after the fast one is); returns ``{name: seconds or error message}`` (logged)."""
    out: dict = {}
    t0 = time.perf_counter()
    leads = {n: lead_method(n) for n in names}
    analysis = service.analyse(clip, list(names), [*methods, *leads.values()])
    for e in analysis.entries:
        if not e.error:
            service.complete(e, leads[e.name])
        out[e.name] = e.message if e.error else round(float(e.timings.get("total", 0.0)), 2)
    log.info("warm-up on %s done in %.1f s: %s", Path(clip).name, time.perf_counter() - t0, out)
    return out


def run(
    service: Service,
    model_set: str | None = None,
    *,
    names: Sequence[str] | None = None,
    clip: str | Path | None = None,
) -> dict:
    """The start-up work, in the calling thread: prefetch then warm up; returns what happened per model
    (seconds of the warm-up run, or the error). ``names``/``clip`` override the set's models and example."""
    model_set = model_set or defaults.default_set(probe=True)
    names = list(names) if names is not None else defaults.set_models(model_set)
    known = set(mvt.list_models())
    unknown = {n: f"unknown model {n!r}" for n in names if n not in known}
    names = [n for n in names if n in known]
    todo = [n for n in names if needs_download(n, service.models.loaded())]
    log.info("start-up: %s (%s); downloading %s", model_set, ", ".join(names), ", ".join(todo) or "nothing")
    errors = {n: e for n, e in prefetch(todo).items() if e is not None}
    for name, e in errors.items():
        log.warning("start-up: %s is not available: %s", name, e)
    ready = [n for n in names if n not in errors]
    clip = clip or warm_clip(model_set)
    done = {**unknown, **{n: str(e) for n, e in errors.items()}}
    if service.threads.stopping.is_set():  # the service closed meanwhile: no warm-up
        done.update(dict.fromkeys(ready, "not warmed up: the service closed"))
    elif service.zero is not None:  # ZeroGPU: built on the device, outside any GPU call; no quota spent
        done.update(service.zero.preload(ready) or dict.fromkeys(ready, "built"))
    elif ready and clip is not None:
        done.update(warm_up(service, ready, clip))
    return done


def start(service: Service, model_set: str | None = None) -> threading.Thread:
    """:func:`run` on one of the service's threads (stopped by :meth:`Service.close`; never raises into the
    app: failures are logged). The heap is set up first: arenas capped, big blocks in their own mappings
    (:func:`lens.core.memory.limit_arenas`, :func:`lens.core.memory.map_large`)."""
    memory.limit_arenas()
    memory.map_large()
    return service.threads.start("start-up", lambda: run(service, model_set))


def exit_on_signals(
    close: Callable[[], object], signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)
) -> None:
    """On SIGTERM or SIGINT (a Space stopping, ``kill``, Ctrl-C): ``close()`` — the service's threads stopped and
    its folder, every session's files included, deleted — then the web server stopped as Ctrl-C stops it (a
    ``KeyboardInterrupt`` in the main thread, which ``launch`` handles), so the process ends as at a normal
    exit. Python's default SIGTERM kills the process without running ``atexit``; call this from the main
    thread of the app's process only (not on import: tests and notebooks keep their own handlers)."""

    def handler(signum: int, frame: object) -> None:
        log.info("signal %s: closing the service and deleting its files", signal.Signals(signum).name)
        try:
            close()
        finally:
            raise KeyboardInterrupt

    for s in signals:
        signal.signal(s, handler)
