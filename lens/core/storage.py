"""Files on disk: written whole or not at all, and known by their content."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Write through a temporary file in the same folder and rename it: readers never see half a file."""
    tmp = path.with_name(f".{uuid.uuid4().hex}.{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def identity(path: str | os.PathLike) -> tuple[str, int, int]:
    """(absolute path, size, mtime) — a file edited in place gets a new identity."""
    p = os.path.abspath(path)
    st = os.stat(p)
    return p, st.st_size, st.st_mtime_ns


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, computed once per file version (a memo of 64 short strings, not a cache
    of data: the decoded clips are the service's, :class:`lens.core.clips.ClipCache`)."""
    return _sha256(*identity(path))


@lru_cache(maxsize=64)
def _sha256(path: str, _size: int, _mtime: int, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
