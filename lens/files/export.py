"""An analysis as files: overlay mp4s, the volumes (.npz), ``report.json``, ``report.html``, ``timings.json``.

``report.json`` holds only what the analysis *is* — the clip (name, SHA-256, duration, fps, size), the
options, the versions (package, torch, each model's weights) and per model its predictions (the mean over its
windows), the frames it used, which part of the clip its windows cover and each window's clip times and own
top-5, its grids and volume shapes — so the same clip and options give the same bytes from the app's Export
and from ``python -m mvt explain``. Wall-clock timings change from run to run; they go to
``timings.json`` (and the report's HTML) instead.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

import mvt
from mvt.checkpoints import FORMAT_NAMES, Recognised

from ..core.cache import ResultCache
from ..core.records import Analysis, ModelError, ModelResult, VolumeKey
from ..core.storage import file_sha256
from ..core.windows import prediction_note
from ..explain import methods as M
from ..explain.scoring import summary
from ..render.display import DEFAULT_DISPLAY, Display
from ..render.overlays import write_overlay
from .queries import Asked, write_asked
from .report import Metrics, write_report_html

REPORT_FORMAT = "mvt-lens report 2"
"""2: per model ``coverage`` and ``windows`` (several windows per clip)."""


def package_version() -> str:
    """The running ``mvt-lens`` version (``mvt.__version__``, which ``pyproject.toml`` reads too): the same from a
    wheel, a checkout or a Space's uploaded files."""
    return mvt.__version__


def versions() -> dict[str, str]:
    import torch

    return {"mvt-lens": package_version(), "torch": torch.__version__.split("+")[0]}


def weights_record(name: str) -> dict:
    """Where a model's weights come from (the source's fields), plus the SHA-256 of a file shipped here."""
    spec = mvt.get_spec(name)
    source = {k: v for k, v in dataclasses.asdict(spec.weights).items() if v is not None}
    if spec.weights.kind == "file" and spec.weights.path:
        path = mvt.weights.shipped_path(spec.weights)
        if path.is_file():
            source["sha256"] = file_sha256(path)
    record = {"description": spec.description, "trained": bool(spec.trained), "source": source}
    if spec.checkpoint is not None:
        record["checkpoint"] = checkpoint_record(spec.checkpoint)
    return record


def checkpoint_record(rec: Recognised) -> dict:
    """What a user's checkpoint was recognised as (:class:`mvt.checkpoints.Recognised`): format, family,
    variant, head, where the labels came from, preprocessing and where it came from, parameters, the file."""
    pre = rec.preprocessing
    return {
        "file": Path(rec.location).name,
        "sha256": rec.sha256,
        "format": rec.format,
        "format_name": FORMAT_NAMES.get(rec.format, rec.format),
        "family": rec.family,
        "variant": rec.variant,
        "num_classes": int(rec.num_classes),
        "labels_source": rec.labels_source,
        "label_set": rec.label_set,
        "preprocessing": {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(pre).items()
        },
        "parameters": int(rec.parameters),
        "notes": list(rec.notes),
    }


def class_label(r: ModelResult) -> str:
    """The class ``r`` explains, by name (``class N`` when its model's labels do not name it)."""
    try:
        labels = mvt.get_spec(r.name).labels
    except KeyError:
        labels = ()
    return labels[r.target] if 0 <= r.target < len(labels) else f"class {r.target}"


def explained_record(r: ModelResult, display: Display = DEFAULT_DISPLAY) -> dict:
    """What a panel of ``r`` drawn with ``display`` explains: the method and the class (by name and index;
    attention and rollout do not depend on the class, which says so)."""
    m = M.get(display.method)
    return {
        "method": m.name,
        "method_label": m.label,
        "class": class_label(r),
        "class_index": int(r.target),
        "class_dependent": m.kind in ("gradient", "captum"),
    }


def windows_record(r: ModelResult) -> list[dict]:
    """Each window the model saw: its span (clip seconds), the clip times of its frames and its own top-5
    (the model's ``top5`` is their mean); the ``primary`` one's volumes are the model's own."""
    cov, primary = r.coverage, r.primary
    out = []
    for i, w in enumerate(r.seen):
        start, end = cov.spans[i] if cov is not None else (float(w.times[0]), float(w.times[-1]))
        out.append(
            {
                "index": i,
                "start_s": round(float(start), 6),
                "end_s": round(float(end), 6),
                "times_s": [round(float(v), 6) for v in w.times],
                "top5": [{"label": lab, "prob": round(float(p), 6)} for lab, p in w.top5],
                "primary": i == primary,
            }
        )
    return out


def coverage_record(r: ModelResult) -> dict | None:
    """What part of the clip the windows cover, and how the prediction was made (``None``: not known)."""
    cov = r.coverage
    if cov is None:
        return None
    return {
        "windows": cov.count,
        "needed": cov.needed,
        "chosen": cov.chosen,
        "seen_s": round(cov.seen_s, 6),
        "whole_clip": bool(cov.whole),
        "prediction": prediction_note(cov),
    }


def _model_record(r: ModelResult | ModelError, display: Display = DEFAULT_DISPLAY) -> dict:
    if isinstance(r, ModelError):
        return {"name": r.name, "error": r.message}
    t, s = int(r.frames.shape[0]), int(r.frames.shape[1])
    return {
        "name": r.name,
        "weights": weights_record(r.name),
        "top5": [{"label": lab, "prob": round(float(p), 6)} for lab, p in r.top5],
        "target": int(r.target),
        "explained": explained_record(r, display),
        "frames_used": {
            "count": t,
            "size": [s, s],
            "fps": round(float(r.fps), 6),
            "times_s": [round(float(v), 6) for v in r.times],
        },
        "stages": [
            {"stage": st.stage, "grid": list(st.grid), "channels": st.channels, "tokens": st.tokens}
            for st in (r.output.stages if r.output is not None else [])
        ],
        "volumes": {k.slug: list(v.values.shape) for k, v in r.volumes.items()},
        "coverage": coverage_record(r),
        "windows": windows_record(r),
        "notes": list(r.notes),
    }


def displays_of(analysis: Analysis, display: Display | Sequence[Display]) -> list[Display]:
    """One display per entry of ``analysis`` (``display`` for all, or one each)."""
    if isinstance(display, Display):
        return [display] * len(analysis.entries)
    out = list(display)
    if len(out) != len(analysis.entries):
        raise ValueError(f"{len(out)} displays for {len(analysis.entries)} entries")
    return out


def volume_arrays(r: ModelResult) -> dict[str, np.ndarray]:
    """Every explanation volume of ``r`` on its grid, by name: the primary window's as ``<slug>``, and with
    several windows each window's as ``w<k>_<slug>`` too (``report.json``'s ``windows`` says which is which)."""
    arrays = {k.slug: v.values for k, v in r.volumes.items()}
    if len(r.seen) > 1:
        for i, w in enumerate(r.seen):
            arrays.update({f"w{i}_{k.slug}": v.values for k, v in w.volumes.items()})
    return arrays


def report_json(
    analysis: Analysis, metrics: Metrics | None = None, display: Display | Sequence[Display] = DEFAULT_DISPLAY
) -> dict:
    """The content of ``report.json`` (see the module docstring); ``metrics`` adds faithfulness numbers;
    ``display`` (one, or one per entry) is what each model's panel shows: its ``explained`` method and class."""
    report = {
        "format": REPORT_FORMAT,
        "clip": analysis.clip.as_dict(),
        "start_s": analysis.start_s,
        "methods": list(analysis.methods),
        "target": analysis.target,
        "versions": versions(),
        "models": [_model_record(r, d) for r, d in zip(analysis.entries, displays_of(analysis, display))],
    }
    if metrics:
        report["faithfulness"] = {name: summary(scores) for name, scores in metrics.items()}
    return report


def timings_json(analysis: Analysis) -> dict:
    return {r.name: {k: round(float(v), 6) for k, v in r.timings.items()} for r in analysis.results}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def write_export(
    analysis: Analysis,
    out_dir: str | Path,
    *,
    metrics: Metrics | None = None,
    display: Display | Sequence[Display] = DEFAULT_DISPLAY,
    keys: Mapping[str, list[VolumeKey]] | None = None,
    asked: Sequence[Asked] = (),
    cache: ResultCache[tuple, str] | None = None,
) -> dict[str, Path]:
    """Write every file of an analysis into ``out_dir``; returns them by name (``"<model>:<volume>"``,
    ``"<model>:npz"``, ``"report.json"``, ``"report.html"``, ``"timings.json"``, ``"query.json"``). ``keys``
    limits the overlay videos per model (default: one per volume). ``display``: one for every model, or one per
    entry (as each panel shows it: report.json and report.html name its method and the class it explains);
    ``asked``: points asked of it (each model's query rows at every stage and its frame × frame matrices,
    :mod:`lens.files.queries`); ``cache``: report pages already made (:func:`write_report_html`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    displays = displays_of(analysis, display)
    by_name = {e.name: d for e, d in zip(analysis.entries, displays)}
    for r in analysis.results:
        safe = _safe(r.name)
        for k in (keys or {}).get(r.name, list(r.volumes)):
            written[f"{r.name}:{k.slug}"] = write_overlay(
                r, r.volumes[k], out / f"{safe}__{k.slug}.mp4", by_name[r.name]
            )
        if r.volumes:
            npz = out / f"{safe}__volumes.npz"
            np.savez_compressed(npz, **volume_arrays(r))
            written[f"{r.name}:npz"] = npz
    report = out / "report.json"
    report.write_text(
        json.dumps(report_json(analysis, metrics, displays), indent=2, ensure_ascii=False) + "\n"
    )
    written["report.json"] = report
    timings = out / "timings.json"
    timings.write_text(json.dumps(timings_json(analysis), indent=2) + "\n")
    written["timings.json"] = timings
    explained = {r.name: explained_record(r, by_name[r.name]) for r in analysis.results}
    written["report.html"] = write_report_html(
        analysis, out / "report.html", metrics=metrics, explained=explained, cache=cache
    )
    for i, a in enumerate(asked):
        tag = "query" if len(asked) == 1 else f"query{i + 1}"
        write_asked(analysis, a, out / tag, tag)
        written[f"{tag}.json"] = out / tag / f"{tag}.json"
    return written
