"""mvt.device.keep_freed_memory: large allocations come from the heap afterwards (checked in a subprocess, so
the test process keeps glibc's defaults)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """
import ctypes, sys
sys.path.insert(0, {root!r})
libc = ctypes.CDLL("libc.so.6")

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
def mapped_blocks_for(nbytes):  # how many new mmapped blocks one allocation of nbytes makes
    n0 = libc.mallinfo2().hblks
    p = libc.malloc(nbytes)
    n = libc.mallinfo2().hblks - n0
    libc.free(ctypes.c_void_p(p))
    return n
before = mapped_blocks_for(64 << 20)
from mvt.device import keep_freed_memory
applied = keep_freed_memory()
after = mapped_blocks_for(64 << 20)
print(before, applied, after)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_large_allocations_come_from_the_heap_after_the_call():
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=root)], capture_output=True, text=True, check=True
    )
    before, applied, after = out.stdout.split()
    assert (before, applied, after) == ("1", "True", "0"), out.stdout
