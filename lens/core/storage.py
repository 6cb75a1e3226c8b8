"""Files on disk: written whole or not at all, and known by their content."""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from .request import LensError


class OutOfSpace(LensError):
    """The disk (or quota) is full: nothing was written. Unlike other errors it may pass: never cache it."""


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def disk_full(e: BaseException | None) -> bool:
    """Whether ``e`` (or what caused it: PyAV and mvt wrap OS errors) says the disk or quota is full."""
    seen = 0
    while e is not None and seen < 8:
        if getattr(e, "errno", None) in _FULL:
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Write through a temporary file in the same folder and rename it: readers never see half a file. A
    full disk is an :class:`OutOfSpace` that names the file (and leaves no part of it)."""
    tmp = path.with_name(f".{uuid.uuid4().hex}.{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, ValueError) as e:
        if not disk_full(e):
            raise
        raise OutOfSpace(
            f"The server's disk is full, so {path.name} could not be written. Try again in a few minutes "
            "(files of sessions that end are deleted)."
        ) from e
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
