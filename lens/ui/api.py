"""The app's public API ("Use via API"): a few named endpoints, plain values in, JSON and files out.

Every endpoint is a whole request by value — a clip file, model names, methods, a start time — so a script
keeps no session: asking again for the same clip and options is answered from the service's cache. The JSON
is ``report.json``'s (:func:`lens.files.export.report_json`: the clip, and per model its predictions, the
frames it saw and their clip times, its windows, its token grids) with the files beside it: each explanation
volume as a ``.npy`` array on its token grid (each window's too, ``w<k>_<slug>``), and ``report.html``;
``/query`` answers a point asked of the clip (:func:`query`). Paths in the answer are files the service wrote
(the app hands them to the client as downloads).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import mvt

from ..core.records import Analysis, ModelResult
from ..core.request import LensError, class_index
from ..explain.methods import DEFAULT_METHODS
from ..explain.scoring import summary
from ..files.export import report_json, volume_arrays
from ..files.queries import write_asked
from ..files.report import write_report_html
from ..render.display import DEFAULT_DISPLAY
from ..service.service import Service


def allowed(models: Sequence[str]) -> list[str]:
    """``models`` when the public API may run them: registry names and ``hub:`` repo ids, never a spec string
    that reads the server's files or fetches a URL (``file:``, ``url:``) or a model a browser session added
    from its upload (a :class:`LensError` naming them)."""
    names = [models] if isinstance(models, str) else list(models or [])
    bad = [n for n in names if str(n).startswith(("file:", "url:")) or _uploaded(str(n))]
    if bad:
        raise LensError(
            f"{', '.join(map(str, bad))}: the API runs the registry's models and Hugging Face repos (hub:org/name); "
            "for a checkpoint file of your own use the app's “Add a model” or `python -m mvt explain --models file:…`."
        )  # fmt: skip
    return names


def _uploaded(name: str) -> bool:
    if name.startswith("hub:"):
        return False
    try:
        rec = mvt.get_spec(name).checkpoint
    except KeyError:
        return False
    return rec is not None and rec.source.startswith(("file:", "url:"))


def _folder(service: Service, session: str | None) -> Path:
    return Path(tempfile.mkdtemp(dir=service.session_dir(session), prefix="api-"))


def _analysis(
    service: Service, clip: str, models: Sequence[str], methods, start_s, windows=None, who=None
) -> Analysis:
    return service.analyse(
        clip, allowed(models), list(methods or DEFAULT_METHODS), start_s=start_s, windows=windows, who=who
    )


def answer(analysis: Analysis, folder: Path, service: Service) -> dict:
    """``report.json`` of ``analysis`` with its files written into ``folder``: per model ``files`` (volume
    slug → ``.npy``) and ``report`` (``report.html``). A weights file's ``path`` is named ``file`` here."""
    out = report_json(analysis)
    for record, entry in zip(out["models"], analysis.entries):
        source = record.get("weights", {}).get("source", {})
        if "path" in source:  # a "path" key reads as a file to download to gradio_client: say "file"
            source["file"] = source.pop("path")
        if isinstance(entry, ModelResult):
            entry.materialise()
            files = {}
            for slug, values in volume_arrays(entry).items():
                path = folder / f"{entry.name.replace('.', '_')}__{slug}.npy"
                np.save(path, np.asarray(values, dtype=np.float32))
                files[slug] = path
            record["files"] = files
    out["report"] = write_report_html(analysis, folder / "report.html", cache=service.reports)
    return out


def analyse(
    service: Service,
    clip: str,
    models: Sequence[str],
    methods: Sequence[str] | None = None,
    start_s: float | None = None,
    windows: int | str | None = None,
    *,
    session: str | None = None,
) -> dict:
    """Run ``models`` on ``clip`` — one window from ``start_s``, or evenly spaced ``windows`` over the clip
    (``None``: each model's default; ``"all"``: every window) — and compute ``methods`` (default: attention
    and rollout): :func:`answer`."""
    analysis = _analysis(service, clip, models, methods, start_s, windows, session)
    return answer(analysis, _folder(service, session), service)


def explain_class(
    service: Service,
    clip: str,
    model: str,
    klass: str,
    method: str = "grad_rollout",
    start_s: float | None = None,
    *,
    session: str | None = None,
) -> dict:
    """Explain ``model``'s class ``klass`` (a label, ``class N`` or a number) on ``clip`` with ``method``: one
    run of the model (one GPU call on ZeroGPU)."""
    service.request(clip, allowed([model]), [method], start_s=start_s)  # a bad clip, model or method first
    target = class_index(klass, service.labels(model))
    if target is None:
        raise LensError(
            f"{model} has no class called {klass!r}: give one of its labels, `class N` or a number."
        )
    analysis = service.analyse(clip, [model], [method], start_s=start_s, target=target, who=session)
    return answer(analysis, _folder(service, session), service)


def faithfulness(
    service: Service,
    clip: str,
    models: Sequence[str],
    methods: Sequence[str] | None = None,
    start_s: float | None = None,
    steps: int = 8,
    *,
    session: str | None = None,
) -> dict:
    """Deletion / insertion AUCs of every volume of ``methods`` (and the random and centre baselines), per
    model: ``{model: {volume: {deletion_auc, insertion_auc, ...}}}`` (``session``: files are written for
    none)."""
    analysis = _analysis(service, clip, models, methods, start_s, who=session)
    scores = service.faithfulness(analysis, steps=int(steps), who=session)
    return {name: summary(s) for name, s in scores.items()}


def export(
    service: Service,
    clip: str,
    models: Sequence[str],
    methods: Sequence[str] | None = None,
    start_s: float | None = None,
    *,
    session: str | None = None,
) -> Path:
    """The export zip (overlay mp4s, volumes, report.json, report.html, timings.json) of the analysis."""
    analysis = _analysis(service, clip, models, methods, start_s, who=session)
    return service.export(analysis, display=DEFAULT_DISPLAY, folder=service.session_dir(session))


def as_files(value: Any, wrap: Callable[[Path], Any]) -> Any:
    """``value`` with every :class:`~pathlib.Path` in it (inside lists and dicts) replaced by ``wrap(path)``
    (what the web framework sends as a download)."""
    if isinstance(value, list):
        return [as_files(x, wrap) for x in value]
    if isinstance(value, dict):
        return {k: as_files(x, wrap) for k, x in value.items()}
    return wrap(value) if isinstance(value, Path) else value


def query(
    service: Service,
    clip: str,
    models: Sequence[str],
    t: float,
    x: float,
    y: float,
    stage: int | None = None,
    start_s: float | None = None,
    *,
    session: str | None = None,
) -> dict:
    """Where the clip point (``t`` seconds; ``x``, ``y`` in the clip's pixels) looks in every model (the run
    :func:`analyse` makes by default — rollout deferred, so nothing more is computed — and so the same cached
    result when that clip was just compared): per model, its answer at ``stage`` (counted from 1; ``None``:
    every stage), each a query token, its caption and its attention row as a ``.npy`` on the key grid (or why
    the model did not see the point), and its frame × frame matrices (:mod:`lens.files.queries`)."""
    analysis = _analysis(service, clip, models, DEFAULT_METHODS, start_s, who=session)
    asked = service.ask_all(analysis, float(t), float(x), float(y))
    if stage is not None:
        one = service.query(analysis, t, x, y, stage=max(int(stage) - 1, 0))
        asked = replace(asked, by_stage=(one,))
    return write_asked(analysis, asked, _folder(service, session))
