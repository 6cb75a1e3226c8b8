"""Explain a whole dataset: every clip × every model → one row each, as Parquet, plus a summary.

    python -m mvt analyse-dataset SRC --models ... --methods ... --out DIR [--engine local|ray] [--resume]

Layout (one concern a module): :mod:`~lens.dataset.sources` (what SRC names: folder, glob, list,
``synth:N:SEED``), :mod:`~lens.dataset.rows` (the per-clip computation both engines run),
:mod:`~lens.dataset.engines` (in-process, or Ray Data with an actor pool), :mod:`~lens.dataset.schema` (every
field of a row and of a summary, defined once), :mod:`~lens.dataset.store` (the output folder, parts and
resume), :mod:`~lens.dataset.summary` and :mod:`~lens.dataset.report` (``summary.json`` / ``summary.html``),
:mod:`~lens.dataset.run` (:func:`analyse_dataset`, which ties them together) and
:mod:`~lens.dataset.evaluate` (``python -m mvt evaluate``: a preset over the summary).

May import: mvt, viz, lens.core, lens.explain, lens.render, lens.files, lens.service (the run path).

Ray and pyarrow come with ``requirements-scale.txt`` (not needed by the app); only the Ray engine imports
Ray, and only writing Parquet imports pyarrow (``evaluate`` keeps rows in memory).
"""

from .engines import Plan, plan
from .rows import DEFAULT_OPTIONS, RowConfig, clip_rows, decode
from .run import ENGINES, DatasetConfig, RunResult, analyse_dataset
from .schema import COLUMNS
from .sources import ClipRef, read_source, synth_refs
from .summary import summarise

__all__ = [
    "COLUMNS",
    "DEFAULT_OPTIONS",
    "DatasetConfig",
    "ENGINES",
    "ClipRef",
    "Plan",
    "RowConfig",
    "RunResult",
    "analyse_dataset",
    "clip_rows",
    "decode",
    "plan",
    "read_source",
    "summarise",
    "synth_refs",
]
