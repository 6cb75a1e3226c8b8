"""One comparison in progress: results stream out as each model finishes, downloads never hold the CPU.

:meth:`lens.Service.analyse_iter` returns a :class:`Job` for a :class:`~lens.core.request.Request`. Iterating
it yields ``(index, entry)`` — the position in the request and a :class:`~lens.core.records.ModelResult` or
:class:`~lens.core.records.ModelError` — as soon as each model is done:

* results already in the cache come out first;
* weights that are not on disk start downloading at once, each on its own thread (two requests for one file
  share one download, see :mod:`mvt.weights.fetch`); a model runs when its weights are there, so a cached model
  never waits for another's download, and a download never holds the compute slot;
* models run the one expected to finish first first (the last time it took, else an estimate from its input
  size);
* ``progress(fraction, text)`` says which model is running, what it is doing, and what is left.

The job knows its :class:`Runner` by four methods and nothing else: the service is one, a test's fake is
another. A runner's :meth:`Runner.run` takes the request and the models to run (plain, picklable values) and
reports progress itself in the calling process, so a runner may run them all in one call in another process
(ZeroGPU): a runner with a ``zero`` (:class:`lens.service.gpu.ZeroGpu`) is handed every model of the job at once, when their downloads
are in (one GPU call per comparison, not one per model).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import mvt
from mvt import weights
from mvt.prefetch import prefetch

from ..core.records import Analysis, AnalysisRef, ModelError, ModelResult
from ..core.request import ClipInfo, Request, ResultKey

Progress = Callable[[float, str], None]
Entry = ModelResult | ModelError
POLL_S = 0.25
"""How often a job waiting on downloads reports progress."""


@dataclass
class Download:
    """One model's weights coming in (:meth:`run` on a thread): bytes so far, and the outcome."""

    name: str
    started: float = field(default_factory=time.monotonic)
    done_bytes: int = 0
    total: int | None = None
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    meter: weights.RateMeter = field(default_factory=weights.RateMeter)
    text: str = "starting"

    def progress(self, _name: str, done: int, total: int | None) -> None:
        self.done_bytes, self.total = done, total
        self.text = self.meter(done, total)

    def run(self) -> None:
        try:
            self.error = prefetch([self.name], self.progress)[self.name]
        except BaseException as e:  # noqa: BLE001 (reported as this model's error, never lost)
            self.error = e
        finally:
            self.finished.set()

    @property
    def fraction(self) -> float:
        return min(self.done_bytes / self.total, 1.0) if self.total else 0.0


def needs_download(name: str, loaded: Sequence[str]) -> bool:
    """True when ``name``'s weights come from the network and are not on disk (nor already in memory)."""
    source = mvt.get_spec(name).weights
    return source.kind in ("url", "hf") and name not in loaded and weights.cached_path(source) is None


def estimated_seconds(name: str) -> float:
    """A rough cost when a model has never run here: its input size (frames × crop²), scaled to seconds."""
    spec = mvt.get_spec(name)
    return spec.num_frames * spec.crop_size**2 / 2e5


class Runner(Protocol):
    """What a :class:`Job` needs from whoever runs its models (:class:`lens.Service`, or a test's fake)."""

    def cached(self, key: ResultKey, who: str | None = None) -> ModelResult | None:
        """The result kept for ``key``, if any (used by ``who``)."""

    def download(self, name: str) -> Download | None:
        """A download of ``name``'s weights, started; ``None`` when they are on disk (or in memory)."""

    def expected_seconds(self, name: str) -> float:
        """How long ``name`` is expected to take (orders the models: quickest first)."""

    def run(
        self, request: Request, names: Sequence[str], progress: Progress, who: str | None = None
    ) -> list[Entry]:
        """Run ``names`` (models of ``request``, asked by ``who``: a visitor waiting its turn) and keep their
        results: one entry each, in order; never raises for a model's own failure."""


class Job:
    """Iterate for ``(index, entry)`` as models finish; :attr:`analysis` once iteration is over."""

    def __init__(self, runner: Runner, request: Request, progress: Progress, who: str | None = None) -> None:
        self.runner, self.request, self.who = runner, request, who
        self._report = progress
        self.entries: list[Entry | None] = [None] * len(request.models)
        self._done = 0
        self._downloads: dict[str, Download] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return self.request.models

    @property
    def clip(self) -> ClipInfo:
        return self.request.clip

    # -- results ---------------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return all(e is not None for e in self.entries)

    @property
    def analysis(self) -> Analysis:
        """The comparison (every entry; iterate the job to the end first)."""
        if not self.finished:
            raise RuntimeError("the job has not finished: iterate it to the end first")
        return Analysis(self.request, [e for e in self.entries if e is not None])

    def analysis_of(self, index: int) -> Analysis:
        """The finished entry ``index`` alone, as an analysis (to render it while others still run)."""
        entry = self.entries[index]
        if entry is None:
            raise RuntimeError(f"entry {index} has not finished")
        return Analysis(self.request.only(self.names[index]), [entry])

    def ref(self) -> AnalysisRef:
        """A handle on the results so far; a model still to come reads as an error saying so."""
        pending = "has not finished yet: wait for the comparison to finish"
        entries = [
            e if e is not None else ModelError(n, f"{n} {pending}.", pending=True)
            for n, e in zip(self.names, self.entries)
        ]
        return Analysis(self.request, entries).ref

    # -- running -----------------------------------------------------------------------------------------------

    def _emit(self, name: str, entry: Entry) -> Iterator[tuple[int, Entry]]:
        for i, n in enumerate(self.names):
            if n == name and self.entries[i] is None:
                self.entries[i] = entry
                self._done += 1
                yield i, entry

    def _left(self, running: str | None = None) -> str:
        left = [n for n, e in zip(self.names, self.entries) if e is None and n != running]
        text = f"{self._done} of {len(self.names)} done" + (f"; next: {', '.join(left)}" if left else "")
        coming = [d for d in self._downloads.values() if not d.finished.is_set() and d.name != running]
        if coming:
            text += "; downloading " + "; ".join(f"{d.name} {d.text}" for d in coming)
        return text

    def say(self, frac_of_one: float, text: str) -> None:
        total = max(len(self.names), 1)
        self._report(min((self._done + frac_of_one) / total, 1.0), text)

    def __iter__(self) -> Iterator[tuple[int, Entry]]:
        runner = self.runner
        for i, key in enumerate(self.request.keys):
            hit = runner.cached(key, self.who)
            if hit is not None and self.entries[i] is None:
                yield from self._emit(self.names[i], hit)
        todo = list(dict.fromkeys(n for n, e in zip(self.names, self.entries) if e is None))
        started = {n: runner.download(n) for n in todo}
        downloads = self._downloads = {n: d for n, d in started.items() if d is not None}
        if todo and getattr(runner, "zero", None) is not None:
            yield from self._all_at_once(todo, downloads)
            todo = []
        while todo:
            ready = [n for n in todo if n not in downloads or downloads[n].finished.is_set()]
            if not ready:
                self._say_downloads([downloads[n] for n in todo])
                next(iter(downloads[n] for n in todo)).finished.wait(POLL_S)
                continue
            name = min(ready, key=lambda n: self._expected(n, downloads.get(n)))
            todo.remove(name)
            d = downloads.get(name)
            if d is not None and d.error is not None:
                entry: Entry = ModelError(name, str(d.error))
            else:
                entry = self._run(name)
                if d is not None and isinstance(entry, ModelResult):
                    entry.timings = {"download weights": time.monotonic() - d.started, **entry.timings}
            yield from self._emit(name, entry)
        self._report(1.0, "done")

    def _expected(self, name: str, download: Download | None) -> float:
        if download is not None and download.error is not None:
            return -1.0  # its error is ready now
        return self.runner.expected_seconds(name)

    def _say_downloads(self, pending: list[Download]) -> None:
        texts = [f"{d.name} {d.text}" for d in pending]
        frac = sum(d.fraction for d in pending) / max(len(pending), 1)
        left = [n for n, e in zip(self.names, self.entries) if e is None]
        self.say(
            0.5 * frac,
            "downloading weights: " + "; ".join(texts) + f" ({self._done} of {len(left) + self._done} done)",
        )

    def _all_at_once(self, todo: list[str], downloads: dict[str, Download]) -> Iterator[tuple[int, Entry]]:
        """Every model of ``todo`` in one call of the runner, once every download is over (a failed one is
        that model's error)."""
        while pending := [
            downloads[n] for n in todo if n in downloads and not downloads[n].finished.is_set()
        ]:
            self._say_downloads(pending)
            pending[0].finished.wait(POLL_S)
        failed = {n: downloads[n].error for n in todo if n in downloads and downloads[n].error is not None}
        for name, error in failed.items():
            yield from self._emit(name, ModelError(name, str(error)))
        names = [n for n in todo if n not in failed]
        if not names:
            return
        left = self._left()
        say = lambda frac, what: self.say(frac * len(names), f"{what} ({left})")  # noqa: E731 (in this process)
        for name, entry in zip(names, self.runner.run(self.request, names, say)):
            d = downloads.get(name)
            if d is not None and isinstance(entry, ModelResult):
                entry.timings = {"download weights": time.monotonic() - d.started, **entry.timings}
            yield from self._emit(name, entry)

    def _run(self, name: str) -> Entry:
        left = self._left(name)
        return self.runner.run(self.request, [name], _Step(self, left), who=self.who)[0]


class _Step:
    """The progress a job hands its runner: the runner's text, then what is left (``what`` names the model)."""

    def __init__(self, job: Job, left: str) -> None:
        self.job, self.left = job, left

    def __call__(self, frac: float, what: str) -> None:
        self.job.say(frac, f"{what} ({self.left})")
