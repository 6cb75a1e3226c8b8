"""Every background thread of a service, started and stopped by one owner.

:class:`Threads` starts named threads and thread pools for the service (downloads, the background pool that
computes deferred maps, start-up prefetch and warm-up, the pool that asks the network about weights) and
:meth:`Threads.close` stops them all: it sets :attr:`Threads.stopping` (long tasks check it between steps),
shuts the pools down (queued work is cancelled) and joins every thread. Nothing else in ``lens`` starts a
thread that outlives the call that started it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("mvt-lens")

PREFIX = "mvt-lens"
"""Every thread the owner starts is named ``mvt-lens …`` (a test finds them by it)."""

BACKGROUND_NICE = 10
"""Nice value of low-priority threads: the scheduler gives a nice-0 thread ~9× their CPU share, so a new
request goes first, yet the deferred work still advances on a machine busy with other processes (at 19 it
starved behind them in bench/service.py on the shared development machine)."""


def lowest_priority() -> None:
    """The calling thread yields the CPU to requests (Linux: its nice value; threads it starts, e.g. OpenMP
    workers, inherit it). Elsewhere a no-op."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)


class Closed(RuntimeError):
    """The owner is closed: no new thread starts."""


class Threads:
    """Named threads and pools, all stopped by :meth:`close`. Thread-safe."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def start(self, name: str, target: Callable[[], object]) -> threading.Thread:
        """Run ``target()`` in a new daemon thread named ``mvt-lens <name>`` (a failure is logged)."""

        def run() -> None:
            try:
                target()
            except Exception:  # a background task must never take the app down
                log.exception("%s %s failed", PREFIX, name)

        with self._lock:
            self._check()
            self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(target=run, name=f"{PREFIX} {name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return thread

    def pool(self, name: str, workers: int = 1, *, low_priority: bool = False) -> ThreadPoolExecutor:
        """The pool called ``name`` (made on first use with ``workers`` threads; ``low_priority``: its threads
        yield the CPU to requests)."""
        with self._lock:
            self._check()
            pool = self._pools.get(name)
            if pool is None:
                pool = self._pools[name] = ThreadPoolExecutor(
                    workers,
                    thread_name_prefix=f"{PREFIX} {name}",
                    initializer=lowest_priority if low_priority else None,
                )
            return pool

    def close(self, timeout: float = 30.0) -> list[str]:
        """Stop everything: no new work, queued pool work cancelled, running work waited for (up to
        ``timeout`` seconds per thread). Returns the names of threads still running after that (a download
        stuck in a read that no timeout ends; daemon threads, so they never hold up the exit)."""
        with self._lock:
            self.stopping.set()
            pools, self._pools = list(self._pools.values()), {}
            threads, self._threads = list(self._threads), []
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        for pool in pools:
            pool.shutdown(wait=True)
        for t in threads:
            t.join(timeout)
        return [t.name for t in threads if t.is_alive()]

    def _check(self) -> None:
        if self.stopping.is_set():
            raise Closed("the service is closed")
