"""Numbers over a dataset's rows: per model accuracy, attention statistics per stage, each method's scores
(pointing game at pixel and token resolution with ceilings and chance, deletion / insertion AUC, flow
correlations, …) and the timings, each as a mean with a 95 % confidence interval; the deletion metric's
validity check (oracle vs random) and the model's sink keys. Every field is defined once, in
:mod:`lens.dataset.schema`.

Intervals: Wilson's score interval for rates (accuracy, pointing game: values 0 or 1); for means of
continuous scores (AUCs, entropies, distances) the normal interval ``mean ± 1.96 · sd / √n``. Missing
values (null: not computed for that clip) and NaN (undefined, e.g. an empty mask) are left out; ``n`` says
how many values each number rests on. ``summary.json`` is :func:`summarise`'s dict.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .schema import RANDOMISED, SCORES, TIMINGS

Z95 = 1.959963984540054


def _finite(values: Iterable[Any]) -> np.ndarray:
    arr = np.asarray([float(v) for v in values if v is not None], dtype=np.float64)
    return arr[np.isfinite(arr)]


def mean(values: Iterable[Any]) -> float:
    """Mean of the finite, non-null values (NaN when there are none)."""
    arr = _finite(values)
    return float(arr.mean()) if arr.size else math.nan


def mean_ci(values: Iterable[Any]) -> dict[str, float | int | None]:
    """``{"mean", "lo", "hi", "n"}``: normal 95 % interval of the mean (``lo = hi = mean`` for n = 1)."""
    arr = _finite(values)
    n = int(arr.size)
    if not n:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    m = float(arr.mean())
    half = Z95 * float(arr.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return {"mean": m, "lo": m - half, "hi": m + half, "n": n}


def rate_ci(values: Iterable[Any]) -> dict[str, float | int | None]:
    """``{"mean", "lo", "hi", "n"}`` of 0/1 values: the rate and Wilson's 95 % score interval."""
    arr = _finite(values)
    n = int(arr.size)
    if not n:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    p = float(arr.mean())
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return {"mean": p, "lo": max(0.0, centre - half), "hi": min(1.0, centre + half), "n": n}


RATES = tuple(k for k, f in SCORES.items() if f.rate)
"""Score fields that are 0/1 per clip (Wilson interval); the others are means."""


def method_scores(rows: Iterable[Mapping]) -> dict[str, dict[str, list]]:
    """``{method: {field: [...]}}`` over rows, in row order (methods in order of first appearance; the
    fields of each ``scores`` entry: ``pointing_game``, ``deletion_auc``, ``insertion_auc``, …)."""
    out: dict[str, dict[str, list]] = {}
    for r in rows:
        for s in r.get("scores") or []:
            d = out.setdefault(s["method"], {"pointing_game": [], "deletion_auc": [], "insertion_auc": []})
            for k, v in s.items():
                if k != "method":
                    d.setdefault(k, []).append(v)
    return out


def randomised_scores(rows: Iterable[Mapping]) -> dict[str, dict[str, dict[str, dict]]]:
    """``{level: {method: {field: interval}}}`` of the rows' ``randomised`` entries (the model-randomisation
    sanity check; empty without it)."""
    values: dict[str, dict[str, dict[str, list]]] = {}
    for r in rows:
        for e in r.get("randomised") or []:
            d = values.setdefault(e["level"], {}).setdefault(e["method"], {k: [] for k in RANDOMISED})
            for k in RANDOMISED:
                d[k].append(e.get(k))
    return {
        level: {
            m: {k: (rate_ci(vs) if k in RATES else mean_ci(vs)) for k, vs in fields.items()}
            for m, fields in methods.items()
        }
        for level, methods in values.items()
    }


def deletion_check(methods: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The metric's own validity check from mean deletion / insertion AUCs (``{method: {"deletion_auc":
    float, "insertion_auc": float}}``): deleting the actor (``oracle``) must hurt more than deleting random
    cells. ``{}`` without both."""
    try:
        d = {m: float(methods[m]["deletion_auc"]) for m in ("oracle", "random")}
        i = {m: float(methods[m]["insertion_auc"]) for m in ("oracle", "random")}
    except (KeyError, TypeError, ValueError):
        return {}
    if not all(math.isfinite(v) for v in (*d.values(), *i.values())):
        return {}
    return {
        "deletion_gap": d["random"] - d["oracle"],
        "deletion_valid": bool(d["oracle"] < d["random"]),
        "insertion_valid": bool(i["oracle"] > i["random"]),
    }


def _stages(rows: Sequence[Mapping]) -> list[dict]:
    n = max((len(r.get("stage_entropy") or []) for r in rows), default=0)
    out = []
    for s in range(n):
        entry: dict[str, Any] = {"stage": s}
        for key in ("entropy", "distance_px", "distance_frames"):
            col = f"stage_{key}"
            entry[key] = mean_ci(r[col][s] for r in rows if r.get(col) and len(r[col]) > s)
        out.append(entry)
    return out


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN / inf become None."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def model_summary(rows: Sequence[Mapping]) -> dict[str, Any]:
    """One model's numbers from its rows (see the module docstring)."""
    ok = [r for r in rows if r.get("error") is None]
    labelled = [r for r in ok if r.get("correct") is not None]
    shuffled = [r for r in labelled if r.get("shuffled_pred") is not None]
    methods = {
        m: {k: (rate_ci(vs) if k in RATES else mean_ci(vs)) for k, vs in v.items()}
        for m, v in method_scores(ok).items()
    }
    means = {
        m: {k: (c["mean"] if c["mean"] is not None else math.nan) for k, c in v.items()}
        for m, v in methods.items()
    }
    return {
        "clips": len(rows),
        "errors": len(rows) - len(ok),
        "accuracy": rate_ci(float(r["correct"]) for r in labelled),
        "shuffled_accuracy": rate_ci(float(r["shuffled_pred"] == r["label"]) for r in shuffled),
        "stages": _stages(ok),
        "methods": methods,
        "randomised": randomised_scores(ok),
        **deletion_check(means),
        "sinks": next((r["sinks"] for r in ok if r.get("sinks")), []),
        **{
            name: mean_ci(sum(float(r.get(c) or 0.0) for c in cols) for r in ok)
            for name, cols in TIMINGS.items()
        },
    }


def summarise(
    rows: Sequence[Mapping], models: Sequence[str], *, run: Mapping[str, Any] | None = None
) -> dict:
    """``{"run": run, "clips", "models": {name: model_summary}, "errors": [first 200 error rows]}``,
    JSON-safe."""
    by_model: dict[str, list[Mapping]] = {m: [] for m in models}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    errors = [
        {"clip_id": r["clip_id"], "model": r["model"], "error": r["error"]} for r in rows if r.get("error")
    ]
    return _clean(
        {
            "run": dict(run or {}),
            "clips": len({r["clip_id"] for r in rows}),
            "models": {m: model_summary(rs) for m, rs in by_model.items()},
            "errors": errors[:200],
            "error_rows": len(errors),
        }
    )
