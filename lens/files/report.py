"""``report.html``: the comparison of several models on one clip, one self-contained page
(:mod:`lens.files.html`) that reads offline. It names the clip (file, SHA-256, duration)
and, per model, shows the weights (trained or not, stated plainly), the top-5 predictions, a strip of
attention overlays (a row per stage, plus rollout), the multiscale token grid
(:func:`viz.token_grid_figure`), attention entropy/distance (:func:`viz.stats_figure`), timings, and, when
given, deletion/insertion curves with an AUC table (:func:`lens.explain.scoring.score_result`). A model that
failed gets its error message instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import viz
from viz import Curves

from ..core.cache import ResultCache
from ..core.records import Analysis, ModelError, ModelResult, VolumeKey
from ..core.windows import prediction_note, seen_note
from ..explain import methods as M
from ..render.overlays import STRIP_KINDS, strip_keys, volume_strip
from .html import Figures, esc, jpeg_data_uri, page, table

MethodMetrics = Mapping[str, Any]
"""Per volume: a :class:`Curves`, or a dict with ``"curves"`` and optional ``"pointing_game"``,
``"mask_iou"`` (what :func:`lens.explain.scoring.score_result` returns)."""
Metrics = Mapping[str, Mapping[VolumeKey, MethodMetrics]]
"""Per model name: its scores by volume."""


def _curves_of(metrics: Mapping[VolumeKey, MethodMetrics]) -> dict[str, tuple[Curves | None, float, float]]:
    out = {}
    for key, m in metrics.items():
        method = M.volume_label(key)
        if isinstance(m, Curves):
            out[method] = (m, float("nan"), float("nan"))
        else:
            out[method] = (
                m.get("curves"),
                float(m.get("pointing_game", float("nan"))),
                float(m.get("mask_iou", float("nan"))),
            )
    return out


def weights_html(r: ModelResult) -> str:
    """The weights line of a model's section: a plain TRAINED / UNTRAINED badge and the description."""
    if r.trained:
        badge = '<span class="badge trained">trained weights</span>'
    else:
        badge = (
            '<span class="badge untrained">UNTRAINED weights</span> '
            '<span class="note">random initialisation: predictions and maps carry no meaning</span>'
        )
    return f"<p>Weights: {badge} <span class='note'>({esc(r.description)})</span></p>"


def _strip_html(r: ModelResult, keys: list[VolumeKey], title: str, what: str) -> str:
    img = volume_strip(r, keys)
    label = ", ".join(M.volume_label(k) for k in keys)
    return (
        f"<h3>{esc(title)}</h3>"
        f'<img class="strip" alt="{esc(what)} of {esc(r.name)}: {esc(label)}" '
        f'src="{jpeg_data_uri(img)}" width="{img.shape[1]}" height="{img.shape[0]}">'
        f"<p class='note'>Rows: {esc(label)}; columns: evenly spaced frames.</p>"
    )


def explained_html(explained: Mapping[str, Any] | None) -> str:
    """What the model's panel explained: the method and the class (``explained_record`` of the export)."""
    if not explained:
        return ""
    depends = "" if explained.get("class_dependent") else " (this method is the same for every class)"
    return (
        f"<p class='explained'>Panel shows: <b>{esc(explained['method_label'])}</b>, explaining the class "
        f"<b>“{esc(explained['class'])}”</b> (index {int(explained['class_index'])}){esc(depends)}.</p>"
    )


def _model_section(
    r: ModelResult | ModelError,
    figs: Figures,
    metrics: Mapping[VolumeKey, MethodMetrics] | None,
    explained: Mapping[str, Any] | None = None,
) -> str:
    parts = [f'<section id="{esc(r.name)}"><h2>{esc(r.name)}</h2>']
    if isinstance(r, ModelError):
        parts.append(f"<p class='badge untrained'>failed</p><p>{esc(r.message)}</p></section>")
        return "\n".join(parts)
    parts.append(weights_html(r))
    parts.append(explained_html(explained))
    if r.notes:
        parts.append("<ul class='note'>" + "".join(f"<li>{esc(n)}</li>" for n in r.notes) + "</ul>")
    parts.append("<h3>Top-5 predictions</h3>")
    parts.append(
        table(
            ["#", "class", "probability"],
            [(i + 1, lab, p) for i, (lab, p) in enumerate(r.top5)],
            (True, False, True),
        )
    )
    if r.coverage is not None:
        note = f"Prediction: {prediction_note(r.coverage)}. {seen_note(r.coverage)}".strip()
        parts.append(f"<p class='note'>{esc(note)}</p>")
    t, s = r.frames.shape[0], r.frames.shape[1]
    times = ", ".join(f"{v:.2f}" for v in r.times)
    grids = ", ".join("×".join(str(g) for g in st.grid) for st in r.output.stages) if r.output else "–"
    which = f"window {r.primary + 1} of {len(r.seen)}: " if len(r.seen) > 1 else ""
    parts.append(
        f"<p class='note'>{esc(which)}Input {t} frames of {s}×{s} px at clip times {esc(times)} s; token grids per "
        f"stage (T×H×W): {esc(grids)}.</p>"
    )
    if keys := strip_keys(r):
        parts.append(_strip_html(r, keys, "Attention overlays", "attention overlays"))
    if others := [k for k in r.volumes if M.get(k.method).kind not in STRIP_KINDS]:
        parts.append(_strip_html(r, others, "Attributions", "attributions"))
    if r.output is not None:
        parts.append("<h3>Token grids</h3>")
        parts.append(figs.make(lambda: viz.token_grid_figure(r.output), "token grid figure", height=520))
        parts.append("<h3>Attention statistics</h3>")
        parts.append(
            figs.make(
                lambda: viz.stats_figure({r.name: viz.attention_stats(r.output)}),
                "attention statistics",
                height=360,
            )
        )
    if metrics:
        parts.append(_faithfulness_html(r.name, metrics, figs))
    if r.timings:
        parts.append("<h3>Timings</h3>")
        parts.append(table(["step", "seconds"], [(k, float(v)) for k, v in r.timings.items()], (False, True)))
    parts.append("</section>")
    return "\n".join(parts)


def _faithfulness_html(name: str, metrics: Mapping[VolumeKey, MethodMetrics], figs: Figures) -> str:
    rows = []
    curves: dict[str, Curves] = {}
    for method, (c, pg, iou) in _curves_of(metrics).items():
        if c is not None:
            curves[method] = c
        rows.append(
            (
                method,
                c.deletion_auc if c is not None else float("nan"),
                c.insertion_auc if c is not None else float("nan"),
                pg,
                iou,
            )
        )
    out = ["<h3>Faithfulness</h3>"]
    if curves:
        first = next(iter(curves.values()))
        out.append(
            f"<p class='note'>Deletion / insertion of {esc('×'.join(map(str, first.cell)))} cells "
            f"(frames×px×px), most relevant first, {esc(first.substrate)} substrate, target class "
            f"{first.target}. Lower deletion AUC and higher insertion AUC are better.</p>"
        )
    out.append(
        table(
            ["method", "deletion AUC ↓", "insertion AUC ↑", "pointing game ↑", "mask IoU ↑"],
            rows,
            (False, True, True, True, True),
        )
    )
    if curves:
        out.append(figs.div(viz.curves_figure(curves, title=f"{name}: deletion / insertion")))
    return "\n".join(out)


def _summary(analysis: Analysis) -> str:
    rows = []
    for r in analysis.entries:
        if isinstance(r, ModelError):
            rows.append((r.name, "failed", r.message, float("nan"), float("nan")))
            continue
        top = r.top5[0] if r.top5 else ("–", float("nan"))
        weights = "trained" if r.trained else "UNTRAINED"
        rows.append((r.name, weights, top[0], float(top[1]), float(r.timings.get("total", float("nan")))))
    return table(
        ["model", "weights", "top-1", "probability", "seconds"], rows, (False, False, False, True, True)
    )


def _clip_html(analysis: Analysis) -> str:
    c = analysis.clip
    start = "windows over the clip" if analysis.start_s is None else f"one window from {analysis.start_s:g} s"
    return (
        f"<p>Clip: <code>{esc(c.name)}</code> ({c.duration_s:.2f} s, {c.fps:.3g} fps, {c.width}×{c.height}; "
        f"{esc(start)}) <span class='note'>SHA-256 {esc(c.sha256)}</span></p>"
    )


def report_html(
    analysis: Analysis,
    *,
    metrics: Metrics | None = None,
    title: str = "mvt-lens report",
    explained: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[str, int]:
    """The report as an HTML string, and the number of plotly figures in it. ``explained``: per model, what
    its panel showed (method and class), named in its section."""
    figs = Figures()
    sections = [
        _model_section(r, figs, (metrics or {}).get(r.name), (explained or {}).get(r.name))
        for r in analysis.entries
    ]
    nav = " · ".join(f'<a href="#{esc(r.name)}">{esc(r.name)}</a>' for r in analysis.entries)
    body = f"""{_clip_html(analysis)}
<p class="note">Written by mvt-lens; opens offline (plotly.js and images are embedded).</p>
{_summary(analysis)}
<p>{nav}</p>
{"".join(sections)}"""
    return page(title, body), figs.count


def write_report_html(
    analysis: Analysis,
    path: str | Path,
    *,
    metrics: Metrics | None = None,
    title: str = "mvt-lens report",
    explained: Mapping[str, Mapping[str, Any]] | None = None,
    cache: ResultCache[tuple, str] | None = None,
) -> Path:
    """Write ``report.html`` for ``analysis`` to ``path`` (a directory means ``path/report.html``).

    ``metrics`` (optional) maps a model name to ``{volume key: Curves}`` or to the output of
    :func:`lens.explain.scoring.score_result`; those models get a faithfulness section (AUC table and curves).
    ``cache``: pages already written for the same analysis (its request, cached results and errors), title and
    ``explained`` — a page with ``metrics`` is always made anew.
    """
    path = Path(path)
    if path.is_dir() or path.suffix == "":
        path = path / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    key = None
    if cache is not None and metrics is None:
        errors = tuple(e.message for e in analysis.entries if isinstance(e, ModelError))
        said = repr(sorted((name, sorted(v.items())) for name, v in (explained or {}).items()))
        key = (analysis.request, tuple(analysis.keys), errors, title, said)
    doc = None if key is None else cache.get(key)
    if doc is None:
        doc, _ = report_html(analysis, metrics=metrics, title=title, explained=explained)
        if key is not None:
            cache.put(key, doc)
    path.write_text(doc, encoding="utf-8")
    return path
