"""An asked point as files: every model's query token and attention row at every stage (``.npy`` on the key
grid, its footprint in the JSON), and every model's frame × frame matrices — what ``python -m mvt explain
--query``, the app's Export (with a point asked) and the ``/query`` endpoint write.

Positions in the JSON are 0-based (``index``: (t, h, w) on the stage's query grid); the captions count from
1, as the app does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from viz.query import FrameMatrix

from ..core.records import Analysis, ModelError
from ..explain.query import ClipPoint, ModelQuery, Query


@dataclass(frozen=True)
class Asked:
    """A point asked of an analysis at every stage (``by_stage[k]``: stage ``k``; a model with fewer stages
    answers for its last), and each model's frame × frame matrix per stage (by model name)."""

    point: ClipPoint
    by_stage: tuple[Query, ...]
    matrices: Mapping[str, Sequence[FrameMatrix]] = field(default_factory=dict)


def _footprint(fp) -> dict | None:
    if fp is None:
        return None
    return {"stride": list(fp.stride), "kernel": list(fp.kernel), "padding": list(fp.padding)}


def token_record(tok) -> dict:
    """A query token as JSON (0-based grid position; where it sits on the model input)."""
    out = {"kind": tok.kind, "block": tok.block, "index": list(tok.position), "grid": list(tok.grid)}
    out["frames"] = list(tok.frames)
    if tok.window is not None:
        out["window"] = {"frames": list(tok.window[0]), "y": list(tok.window[1]), "x": list(tok.window[2])}
        out["pooled_from"] = list(tok.patches)
    if tok.span is not None:
        out["span"] = list(tok.span)
    return out


def answer_record(answer: ModelQuery | ModelError, files: Mapping[str, Path] | None = None) -> dict:
    """One model's answer as JSON: seen or why not, the caption, its tokens and files."""
    if isinstance(answer, ModelError):
        return {"name": answer.name, "error": answer.message}
    out = {"name": answer.name, "stage": answer.stage, "seen": answer.seen, "caption": answer.caption}
    if not answer.seen:
        return {**out, "reason": answer.reason}
    out["tokens"] = [token_record(t) for t in answer.tokens]
    out["cls_share"] = {k: round(float(v), 6) for k, v in answer.prefix.items()}
    out["point_on_input"] = {"x": answer.mark[0], "y": answer.mark[1]} if answer.mark else None
    out["footprint"] = _footprint(answer.volume.footprint if answer.volume is not None else None)
    if files:
        out["files"] = dict(files)
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def write_answer(answer: ModelQuery | ModelError, folder: Path, tag: str) -> dict:
    """``answer``'s row (and its spatial / temporal parts) as ``.npy`` files in ``folder``; its record."""
    if isinstance(answer, ModelError) or not answer.seen or answer.volume is None:
        return answer_record(answer)
    base = f"{_safe(answer.name)}__{tag}_stage{answer.stage + 1}"
    files = {"row": folder / f"{base}.npy"}
    np.save(files["row"], np.asarray(answer.volume.values, dtype=np.float32))
    if len(answer.parts) > 1:
        for kind, vol in answer.parts.items():
            files[kind] = folder / f"{base}_{kind}.npy"
            np.save(files[kind], np.asarray(vol.values, dtype=np.float32))
    return answer_record(answer, files)


def matrix_record(fm: FrameMatrix, path: Path) -> dict:
    np.save(path, fm.values.astype(np.float32))
    return {
        "stage": fm.stage, "kind": fm.kind, "block": fm.block, "file": path,
        "query_frames": [list(f) for f in fm.q_frames], "key_frames": [list(f) for f in fm.k_frames],
        "grid_key_share": [round(float(m), 6) for m in fm.mass],
    }  # fmt: skip


def write_asked(analysis: Analysis, asked: Asked, folder: Path, tag: str = "query") -> dict:
    """Every file of ``asked`` in ``folder`` and their record (also written as ``<tag>.json``)."""
    folder.mkdir(parents=True, exist_ok=True)
    p = asked.point
    models = []
    for i, entry in enumerate(analysis.entries):
        answers = {}
        for q in asked.by_stage:  # one record per stage the model has
            a = q.answers[i]
            answers.setdefault(getattr(a, "stage", 0), write_answer(a, folder, tag))
        record = {"name": entry.name, "stages": [answers[k] for k in sorted(answers)]}
        mats = asked.matrices.get(entry.name, ())
        safe = _safe(entry.name)
        record["frame_x_frame"] = [
            matrix_record(m, folder / f"{safe}__frames_stage{m.stage + 1}.npy") for m in mats
        ]
        models.append(record)
    out = {"point": {"t": p.t, "x": p.x, "y": p.y}, "clip": analysis.clip.as_dict(), "models": models}
    (folder / f"{tag}.json").write_text(json.dumps(out, indent=2, default=str, ensure_ascii=False) + "\n")
    return out
