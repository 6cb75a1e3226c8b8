"""Files, sessions and what they hold (:class:`Lifetime`, part of :class:`lens.service.Service`).

Every file the service writes goes under one folder (:attr:`Lifetime.out_dir`), a user's under a folder of
their session; when the session ends its folder goes, and so does what was kept only for it:

- the panels drawn into its folder (they hold the results they show);
- the results of a class it chose to explain (a result for a class other than the prediction: another
  visitor rarely asks the same), unless another live session used them too.

What was derived from a result (its drawn panels, its walked query geometry) leaves the caches with it, when
it is evicted or dropped (:meth:`Lifetime.result_gone`), so that the results cache's bounds bound them too.

A session ending also collects the process's cyclic garbage, then hands freed heap back to the OS. In a process
this size Python's oldest generation is rarely collected, and a request leaves reference cycles that hold
arrays and tensors (``bench/cycles.py``: 25–91 MB of heap per 40 requests of the soak's mix); uncollected,
they made RSS drift up under a crowd. One full collection takes about 0.2 s here.
"""

from __future__ import annotations

import gc
import logging
import shutil
import tempfile
import threading
from pathlib import Path

from viz.query import Geometry

from ..core import memory
from ..core.cache import ModelCache, ResultCache
from ..core.clips import ClipCache
from ..core.records import ModelResult
from ..core.request import ResultKey
from ..core.threads import Threads
from ..render.panels import Panel

log = logging.getLogger("mvt-lens")


class Lifetime:
    """The service's folder, its users' sessions, and what leaves with them."""

    results: ResultCache[ResultKey, ModelResult]
    panels: ResultCache[tuple, Panel]
    geometries: ResultCache[int, Geometry]
    reports: ResultCache[tuple, str]
    clips: ClipCache
    models: ModelCache
    threads: Threads
    _out_dir: Path | None
    _out_lock: threading.Lock
    _held: dict[str, set[ResultKey]]

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

    def hold(self, key: ResultKey, who: str | None) -> None:
        """``who`` (a session) uses the result kept under ``key``: one for a chosen class is kept for it (and
        dropped when the last session using it ends)."""
        if who and key.target is not None:
            with self._out_lock:
                self._held.setdefault(who, set()).add(key)

    def result_gone(self, key: ResultKey, result: ModelResult) -> None:
        """A result left the cache: its panels and query geometries leave too (they hold it)."""
        self.panels.drop(lambda k: k[0] == key)
        outputs = {id(r.output) for r in (result, *result.windows) if r.output is not None}
        self.geometries.drop(lambda k: k in outputs)

    def end_session(self, session: str | None) -> None:
        """A user's browser session ended: delete its files, drop what was kept only for it, collect cyclic
        garbage and hand freed heap back to the OS (module docstring)."""
        if session:
            folder = str(self.session_dir(session))
            shutil.rmtree(folder, ignore_errors=True)
            self.panels.drop(lambda k: str(k[2]).startswith(folder))
            with self._out_lock:
                mine = self._held.pop(session, set())
                others = set().union(*self._held.values())
            self.results.drop(lambda k: k in mine and k not in others)
        gc.collect()
        memory.trim()
        log.info("caches after a session ended: %s", self.holding())

    def holding(self) -> str:
        """What the caches hold now, as one line: items and MB of results (deferred maps computed since
        included), query geometries and report pages, and the MB of the models built (``bench/soak.py``
        reads it to tell cache filling from a leak)."""
        mb = 2**20
        parts = [
            f"results {len(self.results)} ({self.results.bytes() / mb:.0f} MB)",
            f"geometries {len(self.geometries)} ({self.geometries.bytes() / mb:.0f} MB)",
            f"reports {len(self.reports)} ({self.reports.bytes() / mb:.0f} MB)",
            f"panels {len(self.panels)}",
            f"clips {len(self.clips)} ({self.clips.bytes() / mb:.0f} MB)",
            f"models {self.models.bytes() / mb:.0f} MB",
        ]
        held = memory.heap()
        if held is not None:  # malloc's own account: blocks alive vs freed but kept (fragmentation)
            parts.append(f"heap used {held['used'] / mb:.0f} MB, free {held['free'] / mb:.0f} MB")
        return ", ".join(parts)

    def close(self, timeout: float = 30.0) -> list[str]:
        """Stop every thread of the service (:meth:`lens.core.threads.Threads.close`), empty its caches and
        delete every file it wrote (at exit). Returns the threads still running after ``timeout`` s (a
        download stuck in a read)."""
        stuck = self.threads.close(timeout)
        for cache in (self.results, self.panels, self.clips, self.geometries, self.reports):
            cache.clear()
        with self._out_lock:
            if self._out_dir is not None:
                shutil.rmtree(self._out_dir, ignore_errors=True)
        return stuck
