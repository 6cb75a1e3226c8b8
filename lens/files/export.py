"""An analysis as files: overlay mp4s, the volumes (.npz), ``report.json``, ``report.html``, ``timings.json``.

``report.json`` holds only what the analysis *is* — the clip (name, SHA-256, duration, fps, size), the
options, the versions (package, torch, each model's weights) and per model its predictions, the frames it
used, its grids and volume shapes — so the same clip and options give the same bytes from the app's
Export and from ``python -m mvt explain``. Wall-clock timings change from run to run; they go to
``timings.json`` (and the report's HTML) instead.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

import numpy as np

import mvt

from ..core.records import Analysis, ModelError, ModelResult, VolumeKey
from ..core.storage import file_sha256
from ..explain.scoring import summary
from ..render.display import DEFAULT_DISPLAY, Display
from ..render.overlays import write_overlay
from .queries import Asked, write_asked
from .report import Metrics, write_report_html

REPORT_FORMAT = "mvt-lens report 1"


@cache
def package_version() -> str:
    """The installed ``mvt-lens`` version, else the one in the source tree's ``pyproject.toml``."""
    from importlib import metadata

    try:
        return metadata.version("mvt-lens")
    except metadata.PackageNotFoundError:
        pass
    pyproject = mvt.weights.REPO_ROOT / "pyproject.toml"
    try:
        import tomllib

        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (ImportError, OSError, KeyError, ValueError):
        return "unknown"


def versions() -> dict[str, str]:
    import torch

    return {"mvt-lens": package_version(), "torch": torch.__version__.split("+")[0]}


def weights_record(name: str) -> dict:
    """Where a model's weights come from (the source's fields), plus the SHA-256 of a file shipped here."""
    spec = mvt.get_spec(name)
    source = {k: v for k, v in dataclasses.asdict(spec.weights).items() if v is not None}
    if spec.weights.kind == "file" and spec.weights.path:
        path = mvt.weights.REPO_ROOT / spec.weights.path
        if path.is_file():
            source["sha256"] = file_sha256(path)
    return {"description": spec.description, "trained": bool(spec.trained), "source": source}


def _model_record(r: ModelResult | ModelError) -> dict:
    if isinstance(r, ModelError):
        return {"name": r.name, "error": r.message}
    t, s = int(r.frames.shape[0]), int(r.frames.shape[1])
    return {
        "name": r.name,
        "weights": weights_record(r.name),
        "top5": [{"label": lab, "prob": round(float(p), 6)} for lab, p in r.top5],
        "target": int(r.target),
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
        "notes": list(r.notes),
    }


def report_json(analysis: Analysis, metrics: Metrics | None = None) -> dict:
    """The content of ``report.json`` (see the module docstring); ``metrics`` adds faithfulness numbers."""
    report = {
        "format": REPORT_FORMAT,
        "clip": analysis.clip.as_dict(),
        "start_s": analysis.start_s,
        "methods": list(analysis.methods),
        "target": analysis.target,
        "versions": versions(),
        "models": [_model_record(r) for r in analysis.entries],
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
    display: Display = DEFAULT_DISPLAY,
    keys: Mapping[str, list[VolumeKey]] | None = None,
    asked: Sequence[Asked] = (),
) -> dict[str, Path]:
    """Write every file of an analysis into ``out_dir``; returns them by name (``"<model>:<volume>"``,
    ``"<model>:npz"``, ``"report.json"``, ``"report.html"``, ``"timings.json"``, ``"query.json"``). ``keys``
    limits the overlay videos per model (default: one per volume); ``asked``: points asked of it (each
    model's query rows at every stage and its frame × frame matrices, :mod:`lens.files.queries`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for r in analysis.results:
        safe = _safe(r.name)
        for k in (keys or {}).get(r.name, list(r.volumes)):
            written[f"{r.name}:{k.slug}"] = write_overlay(
                r, r.volumes[k], out / f"{safe}__{k.slug}.mp4", display
            )
        if r.volumes:
            npz = out / f"{safe}__volumes.npz"
            np.savez_compressed(npz, **{k.slug: v.values for k, v in r.volumes.items()})
            written[f"{r.name}:npz"] = npz
    report = out / "report.json"
    report.write_text(json.dumps(report_json(analysis, metrics), indent=2, ensure_ascii=False) + "\n")
    written["report.json"] = report
    timings = out / "timings.json"
    timings.write_text(json.dumps(timings_json(analysis), indent=2) + "\n")
    written["timings.json"] = timings
    written["report.html"] = write_report_html(analysis, out / "report.html", metrics=metrics)
    for i, a in enumerate(asked):
        tag = "query" if len(asked) == 1 else f"query{i + 1}"
        write_asked(analysis, a, out / tag, tag)
        written[f"{tag}.json"] = out / tag / f"{tag}.json"
    return written
