"""One comparison in progress: results stream out as each model finishes, downloads never hold the CPU.

:meth:`lens.Service.analyse_iter` returns a :class:`Job`. Creating it checks the request and reads the clip's
header (a bad clip or request raises there, before anything runs); iterating it yields ``(index, entry)`` —
the position in the request and a :class:`~lens.records.ModelResult` or :class:`~lens.records.ModelError` —
as soon as each model is done:

* results already in the cache come out first;
* weights that are not on disk start downloading at once, each in its own thread (two requests for one file
  share one download, see :mod:`mvt.weights.fetch`); a model runs when its weights are there, so a cached model
  never waits for another's download, and a download never holds the compute slot;
* models run one at a time per compute slot (:attr:`lens.Service.compute_slots`, shared by every request of
  the service: two comparisons on a 2-core CPU do not fight over the cores), the one expected to finish
  first first (the last time it took, else an estimate from its input size);
* ``progress(fraction, text)`` says which model is running, what it is doing, and what is left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mvt
from mvt import weights
from mvt.prefetch import prefetch

from ..core.records import Analysis, AnalysisRef, ClipInfo, ModelError, ModelResult, ResultKey

if TYPE_CHECKING:
    from .service import Service

Progress = Callable[[float, str], None]
Entry = ModelResult | ModelError
POLL_S = 0.25
"""How often a job waiting on downloads or on the compute slot reports progress."""


@dataclass
class _Download:
    """One model's weights coming in on a thread: bytes so far, and the outcome."""

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


def needs_download(name: str, loaded: list[str]) -> bool:
    """True when ``name``'s weights come from the network and are not on disk (nor already in memory)."""
    source = mvt.get_spec(name).weights
    return source.kind in ("url", "hf") and name not in loaded and weights.cached_path(source) is None


def estimated_seconds(name: str) -> float:
    """A rough cost when a model has never run here: its input size (frames × crop²), scaled to seconds."""
    spec = mvt.get_spec(name)
    return spec.num_frames * spec.crop_size**2 / 2e5


class Job:
    """Iterate for ``(index, entry)`` as models finish; :attr:`analysis` once iteration is over."""

    def __init__(
        self,
        service: Service,
        clip: ClipInfo,
        names: list[str],
        keys: list[ResultKey],
        methods: tuple[str, ...],
        start: float | None,
        target: int | None,
        options: Mapping[str, Mapping[str, Any]] | None,
        progress: Progress,
        precision: str = "fp32",
    ) -> None:
        self.service, self.clip, self.names, self.keys = service, clip, names, keys
        self.methods, self.start, self.target, self.options = methods, start, target, options
        self.precision = precision
        self._report = progress
        self.entries: list[Entry | None] = [None] * len(names)
        self._done = 0
        self._downloads: dict[str, _Download] = {}

    # -- results ---------------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return all(e is not None for e in self.entries)

    @property
    def analysis(self) -> Analysis:
        """The comparison (every entry; iterate the job to the end first)."""
        if not self.finished:
            raise RuntimeError("the job has not finished: iterate it to the end first")
        entries: list[Entry] = [e for e in self.entries if e is not None]
        return Analysis(
            clip=self.clip,
            start_s=self.start,
            methods=self.methods,
            target=self.target,
            entries=entries,
            keys=[k if isinstance(e, ModelResult) else None for k, e in zip(self.keys, entries)],
        )

    def analysis_of(self, index: int) -> Analysis:
        """The finished entry ``index`` alone, as an analysis (to render it while others still run)."""
        entry = self.entries[index]
        if entry is None:
            raise RuntimeError(f"entry {index} has not finished")
        key = self.keys[index] if isinstance(entry, ModelResult) else None
        return Analysis(self.clip, self.start, self.methods, self.target, [entry], [key])

    def ref(self) -> AnalysisRef:
        """A handle on the results so far; a model still to come reads as an error saying so."""
        pending = "has not finished yet: wait for the comparison to finish"
        entries = [
            e if e is not None else ModelError(n, f"{n} {pending}.", pending=True)
            for n, e in zip(self.names, self.entries)
        ]
        return AnalysisRef(
            clip=self.clip,
            start_s=self.start,
            methods=self.methods,
            target=self.target,
            keys=tuple(k if isinstance(e, ModelResult) else None for k, e in zip(self.keys, entries)),
            errors=tuple(e if isinstance(e, ModelError) else None for e in entries),
        )

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

    def _say(self, frac_of_one: float, text: str) -> None:
        total = max(len(self.names), 1)
        self._report(min((self._done + frac_of_one) / total, 1.0), text)

    def __iter__(self) -> Iterator[tuple[int, Entry]]:
        svc = self.service
        for i, key in enumerate(self.keys):
            hit = svc.results.get(key)
            if hit is not None and self.entries[i] is None:
                yield from self._emit(self.names[i], hit)
        todo = list(dict.fromkeys(n for n, e in zip(self.names, self.entries) if e is None))
        loaded = svc.models.loaded()
        downloads = self._downloads = {n: _Download(n) for n in todo if needs_download(n, loaded)}
        for d in downloads.values():
            threading.Thread(target=d.run, name=f"download {d.name}", daemon=True).start()
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

    def _expected(self, name: str, download: _Download | None) -> float:
        if download is not None and download.error is not None:
            return -1.0  # its error is ready now
        return self.service.expected_seconds(name)

    def _say_downloads(self, pending: list[_Download]) -> None:
        texts = [f"{d.name} {d.text}" for d in pending]
        frac = sum(d.fraction for d in pending) / max(len(pending), 1)
        left = [n for n, e in zip(self.names, self.entries) if e is None]
        self._say(
            0.5 * frac,
            "downloading weights: " + "; ".join(texts) + f" ({self._done} of {len(left) + self._done} done)",
        )

    def _run(self, name: str) -> Entry:
        svc = self.service
        slot = svc.compute_slot
        if slot is not None:
            while not slot.acquire(timeout=POLL_S):
                self._say(0.0, f"{name}: waiting for another comparison to finish ({self._left(name)})")
        try:
            left = self._left(name)

            def step(frac: float, what: str) -> None:  # ``what`` names the model already
                self._say(frac, f"{what} ({left})")

            index = self.names.index(name)
            key = self.keys[index]
            entry = svc.run_one(
                self.clip.path,
                name,
                self.start,
                self.methods,
                self.target,
                self.options,
                step,
                self.precision,
            )
        finally:
            if slot is not None:
                slot.release()
        if isinstance(entry, ModelResult):
            svc.results.put(key, entry)
            svc.took(name, entry.timings.get("total"))
        return entry
