""":func:`analyse_dataset`: a source, models and methods in; rows, ``results.parquet`` and a summary out.

It checks the request, opens the output folder (:class:`~lens.dataset.store.Store`; ``resume`` skips clips
already done), runs an engine (:mod:`lens.dataset.engines`) with a progress bar (clips/s and ETA on
stderr), then consolidates the rows and writes ``summary.json`` and ``summary.html``. With ``out=None``
nothing is written: the rows come back in memory (what ``evaluate`` does).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import mvt
from viz.faithfulness import DEFAULT_SUBSTRATE

from ..core.request import LensError
from ..explain import methods as M
from .engines import effective_threads, run_local, run_ray
from .rows import DEFAULT_OPTIONS, SINK_STREAM, RowConfig
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


def analyse_dataset(
    source: str | Sequence[ClipRef],
    models: Sequence[str],
    methods: Sequence[str] = M.DEFAULT_METHODS,
    out: str | os.PathLike | None = None,
    *,
    engine: str = "local",
    resume: bool = False,
    steps: int = 8,
    substrate: str = DEFAULT_SUBSTRATE,
    top_k: int = 5,
    target: str = "label",
    shuffled: bool = False,
    volumes: bool = False,
    sinks: bool = False,
    sink_seed: int = SINK_STREAM,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    faithfulness_n: int | None = None,
    actors: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    device: str = "cpu",
    flush_every: int = 32,
    progress: bool = True,
    on_clip: Callable[[list[dict]], None] | None = None,
    report: bool = True,
) -> RunResult:
    """Analyse every clip of ``source`` (a source string for :func:`~lens.dataset.sources.read_source`, or
    clip refs) with every model: one row per (clip, model), see :data:`lens.dataset.table.COLUMNS`.

    ``methods``: explanation methods of the registry (scored with the random / centre / oracle baselines);
    ``steps``, ``substrate``: deletion / insertion settings, run on the first ``faithfulness_n`` clips
    (default: all); ``target``, ``shuffled``, ``top_k``, ``volumes``, ``sinks``, ``sink_seed``, ``options``: see
    :class:`~lens.dataset.rows.RowConfig`. ``engine``: ``"local"`` or ``"ray"`` (``actors`` model actors
    of ``threads`` torch threads each, on local Ray or the cluster at ``address`` / ``RAY_ADDRESS``).
    ``out``: the folder to write (``None``: keep rows in memory); ``resume`` continues a run there.
    ``on_clip(rows)`` is called on this process as each clip's rows arrive."""
    names, wanted = _check(models, methods, engine)
    if engine == "ray":
        _require("ray", "--engine ray")
    if out is not None:
        _require("pyarrow", "writing results.parquet")
    cfg = RowConfig(
        methods=wanted,
        options=dict(DEFAULT_OPTIONS if options is None else options),
        steps=int(steps),
        substrate=substrate,
        top_k=int(top_k),
        target=target,
        shuffled=bool(shuffled),
        volumes=bool(volumes) and out is not None,
        sinks=bool(sinks),
        sink_seed=int(sink_seed),
    )
    refs = read_source(source) if isinstance(source, str) else list(source)
    if faithfulness_n is not None:
        refs = [dataclasses.replace(r, scored=r.index < faithfulness_n) for r in refs]
    if len({r.clip_id for r in refs}) != len(refs):
        raise LensError("the source names a clip more than once; each clip must appear once")
    store = None
    kept: list[dict] = []
    settings = {"models": names, **cfg.as_dict(), "faithfulness_n": faithfulness_n}
    if out is not None:
        store = Store(out, settings, models=names, resume=resume, flush_every=flush_every)
    done = store.done() if store is not None and resume else set()
    todo = [r for r in refs if r.clip_id not in done]
    bar = Progress(len(todo), engine, progress, on_clip)
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
            run_local(todo, names, cfg, sink, device=device, threads=threads)
        else:
            run_ray(todo, names, cfg, sink, actors=actors, threads=threads, address=address)
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
        if report:
            from .report import write_html

            result.files["summary.html"] = write_html(result.summary, store.out / "summary.html")
    return result
