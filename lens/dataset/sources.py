"""What a dataset run reads: a list of clips, from a folder, a glob, a list file or ``synth:N:SEED``.

Every source becomes a list of :class:`ClipRef` in a fixed order (sorted paths for folders and globs, file
order for lists, index order for SynthMotion); ``index`` is the position in that list and orders the
results. ``clip_id`` names the clip in the results and for ``--resume``: the absolute path of a file, or
``synth:SEED:INDEX``.

List files: ``.txt`` (one path per line; blank lines and ``#`` comments skipped) or ``.csv`` with columns
``path`` and optionally ``label`` (a class name, or a class index) and ``start_s`` (seconds). A CSV whose
first row does not name a ``path`` column is read positionally: ``path[,label[,start_s]]``. Relative paths
are relative to the list file's folder.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvt import synth

from ..core.request import LensError

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ogv", ".gif")
"""File name endings a folder or glob source picks up (case-insensitive)."""

SYNTH_PREFIX = "synth:"


@dataclass(frozen=True)
class ClipRef:
    """One clip of a source. ``label`` is as given (a class name or index; SynthMotion: the class name);
    ``scored``: whether deletion / insertion run on it (``evaluate`` scores only its first clips)."""

    index: int
    clip_id: str
    path: str | None = None
    label: str | None = None
    start_s: float | None = None
    synth_seed: int | None = None
    synth_index: int | None = None
    scored: bool = True

    @property
    def is_synth(self) -> bool:
        return self.synth_seed is not None


def synth_refs(n: int, seed: int, *, scored: int | None = None) -> list[ClipRef]:
    """Clips ``0 .. n-1`` of the SynthMotion stream ``seed`` (``scored``: only the first that many get
    deletion / insertion; ``None``: all)."""
    if n < 0:
        raise LensError(f"synth: needs a clip count >= 0, got {n}")
    return [
        ClipRef(
            index=i,
            clip_id=f"synth:{seed}:{i}",
            label=synth.CLASSES[synth.label_for(i, seed)],
            synth_seed=int(seed),
            synth_index=i,
            scored=scored is None or i < scored,
        )
        for i in range(n)
    ]


def _number(text: str, what: str, src: str) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise LensError(f"{src}: {what} {text!r} is not a number of seconds") from None
    return (
        value if value > 0 else None
    )  # as the Service reads a start time: zero means none (windows over the clip)


def _files(paths: list[Path]) -> list[ClipRef]:
    return [ClipRef(index=i, clip_id=str(p), path=str(p)) for i, p in enumerate(paths)]


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def _from_list(path: Path) -> list[ClipRef]:
    base = path.parent
    rows: list[tuple[str, str | None, str | None]] = []
    with open(path, newline="", encoding="utf-8") as f:
        if path.suffix.lower() == ".csv":
            table = [r for r in csv.reader(f) if r and not r[0].lstrip().startswith("#")]
            head = [c.strip().lower() for c in table[0]] if table else []
            if "path" in head:
                col = {name: head.index(name) for name in ("path", "label", "start_s") if name in head}
                table = table[1:]
            else:
                col = {"path": 0, "label": 1, "start_s": 2}

            def get(r: list[str], name: str) -> str | None:
                i = col.get(name)
                return r[i].strip() if i is not None and i < len(r) and r[i].strip() else None

            rows = [(get(r, "path") or "", get(r, "label"), get(r, "start_s")) for r in table]
        else:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    rows.append((line, None, None))
    refs = []
    for i, (p, label, start) in enumerate(rows):
        if not p:
            raise LensError(f"{path}: row {i + 1} has no path")
        full = Path(p) if os.path.isabs(p) else base / p
        full = Path(os.path.abspath(full))
        refs.append(
            ClipRef(
                index=i,
                clip_id=str(full),
                path=str(full),
                label=label,
                start_s=_number(start, "start", str(path)),
            )
        )
    return refs


def read_source(src: str) -> list[ClipRef]:
    """The clips of ``src``: ``synth:N:SEED``, a folder (video files under it, recursively), a glob, or a
    ``.txt`` / ``.csv`` list (see the module docstring). A :class:`LensError` says what is wrong with a
    source that gives nothing."""
    if src.startswith(SYNTH_PREFIX):
        parts = src[len(SYNTH_PREFIX) :].split(":")
        try:
            n, seed = (int(p) for p in parts)
        except ValueError:
            raise LensError(f"{src!r}: a SynthMotion source is synth:N:SEED, e.g. synth:200:7") from None
        return synth_refs(n, seed)
    path = Path(src).expanduser()
    if path.is_dir():
        found = sorted(Path(os.path.abspath(p)) for p in path.rglob("*") if _is_video(p))
        if not found:
            raise LensError(f"{src}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
        return _files(found)
    if path.is_file() and path.suffix.lower() in (".txt", ".csv"):
        refs = _from_list(path)
        if not refs:
            raise LensError(f"{src}: the list names no clips")
        return refs
    if path.is_file():
        return _files([Path(os.path.abspath(path))])
    if any(c in src for c in "*?["):
        found = sorted(Path(os.path.abspath(p)) for p in glob.glob(str(path), recursive=True))
        found = [p for p in found if _is_video(p)]
        if not found:
            raise LensError(f"{src}: the pattern matches no video files")
        return _files(found)
    raise LensError(
        f"{src}: not found. Give a folder, a glob (quoted), a .txt/.csv list of paths, or synth:N:SEED"
    )


def clip_seed(ref: ClipRef, sha256: str | None = None) -> int:
    """The seed of everything random about one clip (the random baseline): from the clip, never from the
    worker. SynthMotion clips keep ``evaluate``'s ``seed * 100003 + index``; files use their content hash
    (so a moved folder gives the same numbers), else a hash of the id."""
    if ref.is_synth:
        return int(ref.synth_seed) * 100_003 + int(ref.synth_index)  # type: ignore[arg-type]
    digest = sha256 or hashlib.sha256(ref.clip_id.encode()).hexdigest()
    return int(digest[:8], 16)


_SHUFFLE_STREAMS: dict[tuple[int, int], tuple[int, np.random.Generator]] = {}


def shuffle_order(ref: ClipRef, frames: int, sha256: str | None = None) -> np.ndarray:
    """The frame order of the frames-shuffled prediction of one clip (int64 ``(frames,)``).

    SynthMotion clip ``i`` of stream ``seed`` gets the ``i``-th permutation drawn from
    ``numpy.random.default_rng([seed, 7])``, the order ``mvt.train.evaluate(..., shuffle_frames=True)``
    uses, so ``evaluate``'s shuffled accuracy is unchanged; the stream is replayed up to ``i`` (kept per
    process, so clips in order cost one draw each). Files: ``default_rng([clip_seed, 7])``."""
    if not ref.is_synth:
        return np.random.default_rng([clip_seed(ref, sha256), 7]).permutation(frames)
    key = (int(ref.synth_seed), int(frames))  # type: ignore[arg-type]
    at, rng = _SHUFFLE_STREAMS.get(key, (0, None))  # type: ignore[assignment]
    want = int(ref.synth_index)  # type: ignore[arg-type]
    if rng is None or at > want:
        at, rng = 0, np.random.default_rng([key[0], 7])
    while at < want:
        rng.permutation(frames)
        at += 1
    order = rng.permutation(frames)
    _SHUFFLE_STREAMS[key] = (want + 1, rng)
    return order
