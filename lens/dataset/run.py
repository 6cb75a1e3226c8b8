""":func:`analyse_dataset`: a source, models and methods in; rows, ``results.parquet`` and a summary out.

It checks the request, opens the output folder (:class:`~lens.dataset.store.Store`; ``resume`` skips clips
already done), runs an engine (:mod:`lens.dataset.engines`) with a progress bar (clips/s and ETA on
stderr), then consolidates the rows and writes ``summary.json`` and ``summary.html``. With ``out=None``
nothing is written: the rows come back in memory (what ``evaluate`` does).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

import mvt

from ..core.request import LensError
from ..explain import methods as M
from .engines import effective_threads, run_local, run_ray
from .rows import RowConfig
from .sources import ClipRef, read_source
from .store import Store

ENGINES = ("local", "ray")


@dataclass
class RunResult:
    """What a run did: ``rows`` (every row of ``out``'s results, or of this run without ``out``), how many
    clips were ``skipped`` (already done) and ``computed``, the clip ids that got no rows (``missing``: their
    worker died on every retry), the seconds it took, and the files written."""

    rows: list[dict]
    total: int
    skipped: int
    computed: int
    missing: list[str]
    seconds: float
    engine: str
    summary: dict = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def clips_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else float("nan")


class Progress:
    """The driver's progress: a tqdm bar (clips, clips/s, ETA) on stderr, and the caller's ``on_clip``."""

    def __init__(
        self, total: int, engine: str, show: bool, on_clip: Callable[[list[dict]], None] | None
    ) -> None:
        self.on_clip = on_clip
        self.bar = None
        if show and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                unit="clip",
                desc=f"analyse-dataset ({engine})",
                file=sys.stderr,
                bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed} elapsed, ETA {remaining}, {rate_fmt}",
                smoothing=0.1,
            )

    def __call__(self, rows: list[dict]) -> None:
        if self.bar is not None:
            self.bar.update(1)
        if self.on_clip is not None:
            self.on_clip(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check(models: Sequence[str], methods: Sequence[str], engine: str) -> tuple[list[str], tuple[str, ...]]:
    names = list(dict.fromkeys(models))
    if not names:
        raise LensError("name at least one model (--models)")
    for n in names:
        try:
            mvt.get_spec(n)
        except KeyError as e:
            raise LensError(str(e.args[0] if e.args else e)) from None
    if engine not in ENGINES:
        raise LensError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    return names, M.normalise(methods)


def _require(module: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise LensError(f"{what} needs {module}: pip install -r requirements-scale.txt (or mvt-lens[scale])")


@dataclass(frozen=True)
class DatasetConfig:
    """How a dataset run goes. ``rows``: what each row holds (methods, options, deletion settings, target,
    …: :class:`~lens.dataset.rows.RowConfig`). ``out``: the folder to write (``None``: keep rows in memory);
    ``resume`` continues a run there; ``report``: also write ``summary.html``. ``faithfulness_n``: deletion /
    insertion on the first N clips only (default: all). ``engine``: ``"local"`` (on ``device``) or ``"ray"``
    (``actors`` model actors of ``threads`` torch threads each, on local Ray or the cluster at ``address`` /
    ``RAY_ADDRESS``). ``flush_every``: clips per part file; ``progress``: a progress bar on stderr;
    ``on_clip(rows)`` is called on this process as each clip's rows arrive."""

    rows: RowConfig = field(default_factory=RowConfig)
    out: str | os.PathLike | None = None
    resume: bool = False
    report: bool = True
    faithfulness_n: int | None = None
    engine: str = "local"
    device: str = "cpu"
    actors: int | None = None
    threads: int | None = None
    address: str | None = None
    flush_every: int = 32
    progress: bool = True
    on_clip: Callable[[list[dict]], None] | None = None


def analyse_dataset(
    source: str | Sequence[ClipRef], models: Sequence[str], config: DatasetConfig | None = None
) -> RunResult:
    """Analyse every clip of ``source`` (a source string for :func:`~lens.dataset.sources.read_source`, or
    clip refs) with every model: one row per (clip, model), see :data:`lens.dataset.schema.COLUMNS`; the
    explanation methods (``config.rows.methods``, registry names) are scored with the random / centre /
    oracle baselines. How, and where to: ``config`` (:class:`DatasetConfig`)."""
    config = config or DatasetConfig()
    engine, out, threads = config.engine, config.out, config.threads
    names, wanted = _check(models, config.rows.methods, engine)
    if engine == "ray":
        _require("ray", "--engine ray")
    if out is not None:
        _require("pyarrow", "writing results.parquet")
    cfg = replace(config.rows, methods=wanted, volumes=config.rows.volumes and out is not None)
    refs = read_source(source) if isinstance(source, str) else list(source)
    faithfulness_n = config.faithfulness_n
    if faithfulness_n is not None:
        refs = [replace(r, scored=r.index < faithfulness_n) for r in refs]
    if len({r.clip_id for r in refs}) != len(refs):
        raise LensError("the source names a clip more than once; each clip must appear once")
    store = None
    kept: list[dict] = []
    settings = {"models": names, **cfg.as_dict(), "faithfulness_n": faithfulness_n}
    if out is not None:
        store = Store(out, settings, models=names, resume=config.resume, flush_every=config.flush_every)
    done = store.done() if store is not None and config.resume else set()
    todo = [r for r in refs if r.clip_id not in done]
    bar = Progress(len(todo), engine, config.progress, config.on_clip)
    got: set[str] = set()

    def sink(rows: list[dict], vols: Mapping[str, np.ndarray]) -> None:
        got.add(rows[0]["clip_id"])
        if store is not None:
            store.add(rows, vols)
        else:
            kept.extend(rows)
        bar(rows)

    t0 = time.perf_counter()
    try:
        if engine == "local":
            run_local(todo, names, cfg, sink, device=config.device, threads=threads)
        else:
            run_ray(todo, names, cfg, sink, actors=config.actors, threads=threads, address=config.address)
    finally:
        bar.close()
        if store is not None:
            store.flush()
    seconds = time.perf_counter() - t0
    order = {m: i for i, m in enumerate(names)}
    kept.sort(key=lambda r: (r["index"], order[r["model"]]))  # Ray delivers clips as they finish
    missing = [r.clip_id for r in todo if r.clip_id not in got]
    result = RunResult(
        rows=kept,
        total=len(refs),
        skipped=len(refs) - len(todo),
        computed=len(got),
        missing=missing,
        seconds=seconds,
        engine=engine,
    )
    if store is not None:
        from .summary import summarise

        result.rows = store.finish().to_pylist()
        wanted_ids = {r.clip_id for r in refs}
        result.rows = [r for r in result.rows if r["clip_id"] in wanted_ids]
        run = {
            "source": source if isinstance(source, str) else f"{len(refs)} clips",
            "engine": engine,
            "threads_per_worker": effective_threads(engine, threads),
            "clips": len(refs),
            "skipped": result.skipped,
            "computed": result.computed,
            "missing": missing,
            "seconds": round(seconds, 3),
            "clips_per_second": round(result.clips_per_second, 4) if result.computed else None,
            **settings,
        }
        result.summary = summarise(result.rows, names, run=run)
        result.files["results"] = store.out / "results.parquet"
        result.files["summary.json"] = store.write_json("summary.json", result.summary)
        if config.report:
            from .report import write_html

            result.files["summary.html"] = write_html(result.summary, store.out / "summary.html")
    return result
