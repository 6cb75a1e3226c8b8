"""The process's heap held near what it uses (glibc; elsewhere every call is a no-op).

A server thread that frees a result leaves the pages in its malloc arena; with many threads (the web server's
pool, the service's) glibc keeps up to 8 arenas per core, and RSS grows with each thread's high-water mark
rather than with what is alive. :func:`limit_arenas` (call once at start-up, before the request threads
allocate) caps the arenas; :func:`trim` hands freed pages back to the OS (after a session ends). Measured by
``bench/soak.py`` (bench/README.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_ARENA_MAX = -8
"""``mallopt``'s parameter number for the arena cap (glibc's malloc.h)."""


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc only: both must exist)
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(arenas: int = 2) -> bool:
    """At most ``arenas`` malloc arenas from now on (threads beyond share them). True when glibc took it."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, int(arenas)))


def trim() -> bool:
    """Give freed heap pages back to the OS. True when some were."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
