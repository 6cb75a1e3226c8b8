"""The process's heap held near what it uses (glibc; elsewhere every call is a no-op).

A server thread that frees a result leaves the pages in its malloc arena; with many threads (the web server's
pool, the service's) glibc keeps up to 8 arenas per core, and RSS grows with each thread's high-water mark
rather than with what is alive. :func:`limit_arenas` (call once at start-up, before the request threads
allocate) caps the arenas, :func:`map_large` keeps big blocks (activations, attention maps) out of them and
:func:`trim` hands freed pages back to the OS (after a session ends). Measured by ``bench/soak.py``
(bench/README.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_ARENA_MAX = -8
"""``mallopt``'s parameter number for the arena cap (glibc's malloc.h)."""
M_MMAP_THRESHOLD = -3
"""``mallopt``'s parameter number for the size from which a block gets its own mapping (glibc's malloc.h)."""


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


def map_large(threshold: int = 4 * 1024**2) -> bool:
    """Blocks of ``threshold`` bytes or more in their own memory mappings from now on, handed back to the OS as
    soon as they are freed. glibc's default threshold rises (up to 32 MiB) each time such a block is freed, after
    which a model's activations and attention maps (1–30 MB each) are carved from the arenas, where a freed one
    stays as a hole other threads' small blocks pin. True when glibc took it."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))


class _Mallinfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33 on): byte counts as ``size_t``."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]  # fmt: skip


def heap() -> dict[str, int] | None:
    """What malloc holds, in bytes: ``used`` (blocks alive, in the arenas and in their own mappings) and ``free``
    (freed but kept in the arenas: fragmentation ``trim`` could not return). ``None`` off glibc 2.33+. Tells a
    native leak (``used`` grows) from a fragmented heap (``free``)."""
    libc = _libc()
    fn = getattr(libc, "mallinfo2", None) if libc is not None else None
    if fn is None:
        return None
    fn.restype = _Mallinfo2
    info = fn()
    return {"used": info.uordblks + info.hblkhd, "free": info.fordblks}


def trim() -> bool:
    """Give freed heap pages back to the OS. True when some were."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
