"""The output folder of a dataset run, written only by the driver, so it works the same on a laptop and on a
cluster (the workers never touch it).

Layout of ``DIR``::

    run.json                 the settings rows depend on (models, methods, steps, ...): --resume checks them
    parts/part-<run>-<n>.parquet   rows as clips finish, a few clips per file; each file is written to a
                             temporary name and renamed, so a part is whole or absent, never half
    results.parquet          every part's rows, one per (clip, model), sorted by clip index then model;
                             rewritten at the end of each run
    volumes/<clip>.npz       with --volumes: each model's explanation volumes on their grids
                             (arrays named ``<model>/<method>[_<stage>]``)
    summary.json, summary.html   see :mod:`lens.dataset.summary` and :mod:`lens.dataset.report`

``--resume`` reads the clip ids of the parts: a clip whose rows exist for every model is skipped, so a run
killed at any moment loses at most the clips not yet flushed (``flush_every`` clips or ``flush_seconds``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.request import LensError
from ..core.storage import atomic_write
from .schema import to_table


def _savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def volume_file(clip_id: str) -> str:
    """File name of a clip's volumes: a readable stem plus a hash of its id (ids are paths)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(clip_id.replace(":", "_")).stem)[:60] or "clip"
    return f"{stem}-{hashlib.sha1(clip_id.encode()).hexdigest()[:10]}.npz"


class Store:
    """``DIR`` for one run: checks it against ``settings`` (a JSON-ready dict), writes parts, consolidates.

    Without ``resume`` a folder that already holds rows is refused (pass ``--resume`` or a new ``--out``);
    with it, the settings must match the folder's ``run.json``."""

    def __init__(
        self,
        out: str | os.PathLike,
        settings: Mapping[str, Any],
        *,
        models: Sequence[str],
        resume: bool = False,
        flush_every: int = 32,
        flush_seconds: float = 30.0,
    ) -> None:
        self.out = Path(out)
        self.parts = self.out / "parts"
        self.models = list(models)
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.flush_every, self.flush_seconds = max(1, int(flush_every)), float(flush_seconds)
        self._rows: list[dict] = []
        self._clips = 0
        self._last = time.monotonic()
        self._seq = 0
        settings = json.loads(json.dumps(settings))
        existing = sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []
        run_json = self.out / "run.json"
        if existing and not resume:
            raise LensError(
                f"{self.out} already holds results of a run: add --resume to continue it, or choose a new --out"
            )
        if resume and run_json.is_file():
            before = json.loads(run_json.read_text())
            diff = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            if diff:
                raise LensError(
                    f"{self.out} was made with other settings ({', '.join(f'{k}: {before.get(k)!r}' for k in diff)}); "
                    "resume with the same ones, or choose a new --out"
                )
        self.parts.mkdir(parents=True, exist_ok=True)
        for stale in self.parts.glob(".*"):  # temporary files of a run killed mid-write
            stale.unlink(missing_ok=True)
        atomic_write(run_json, lambda p: p.write_text(json.dumps(settings, indent=2)))

    # -- resume ----------------------------------------------------------------------------------------------

    def done(self) -> set[str]:
        """Clip ids whose rows exist for every model of this run."""
        import pyarrow.parquet as pq

        seen: dict[str, set[str]] = {}
        for part in sorted(self.parts.glob("part-*.parquet")):
            t = pq.read_table(part, columns=["clip_id", "model"])
            for cid, model in zip(t.column("clip_id").to_pylist(), t.column("model").to_pylist()):
                seen.setdefault(cid, set()).add(model)
        need = set(self.models)
        return {cid for cid, ms in seen.items() if need <= ms}

    # -- writing ---------------------------------------------------------------------------------------------

    def add(self, rows: list[dict], volumes: Mapping[str, np.ndarray] | None = None) -> None:
        """One clip's rows (and volumes): kept until the next flush, which is due every ``flush_every``
        clips or ``flush_seconds``."""
        if volumes:
            folder = self.out / "volumes"
            folder.mkdir(exist_ok=True)
            path = folder / volume_file(rows[0]["clip_id"])
            atomic_write(path, lambda p: _savez(p, volumes))
        self._rows += [{**r, "run": self.run} for r in rows]
        self._clips += 1
        if self._clips >= self.flush_every or time.monotonic() - self._last >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        import pyarrow.parquet as pq

        if self._rows:
            table = to_table(self._rows)
            path = self.parts / f"part-{self.run}-{self._seq:05d}.parquet"
            atomic_write(path, lambda p: pq.write_table(table, p))
            self._seq += 1
        self._rows, self._clips, self._last = [], 0, time.monotonic()

    def finish(self):
        """Flush, then write ``results.parquet``: every part's rows, one per (clip, model) (the first
        written wins), sorted by clip index and the run's model order. Returns the table."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.flush()
        parts = sorted(self.parts.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime_ns)
        tables = [pq.read_table(p) for p in parts]
        rows = pa.concat_tables(tables).to_pylist() if tables else []
        order = {m: i for i, m in enumerate(self.models)}
        unique: dict[tuple[str, str], dict] = {}
        for r in rows:
            unique.setdefault((r["clip_id"], r["model"]), r)
        kept = sorted(
            unique.values(), key=lambda r: (r["index"], order.get(r["model"], len(order)), r["model"])
        )
        table = to_table(kept)
        atomic_write(self.out / "results.parquet", lambda p: pq.write_table(table, p))
        return table

    def write_json(self, name: str, data: Any) -> Path:
        text = json.dumps(data, indent=2, allow_nan=False)
        return atomic_write(self.out / name, lambda p: p.write_text(text))
