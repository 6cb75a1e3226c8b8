"""A self-contained ``report.html``: the app's comparison of several models on one clip, readable offline.

One file, no network: plotly.js is inlined once in ``<head>`` (every figure is a ``div`` plus a script that
calls it), images are PNG ``data:`` URIs, styles are inline. Per model it shows the weights (trained or
not, stated plainly), the top-5 predictions, a strip of attention overlays (a row per stage, plus rollout),
the multiscale token grid (:func:`viz.token_grid_figure`), attention entropy/distance
(:func:`viz.stats_figure`), timings, and, when given, deletion/insertion curves with an AUC table
(:mod:`viz.faithfulness`).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .faithfulness import Curves, curves_figure

if TYPE_CHECKING:
    from .pipeline import ModelResult

MethodMetrics = Mapping[str, Any]
"""Per method: a :class:`Curves`, or a dict with ``"curves"`` and optional ``"pointing_game"``, ``"mask_iou"``
(what :func:`viz.faithfulness.score_clip` / ``score_result`` return)."""

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:40px}h3{margin-top:24px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 10px;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 8px;border-radius:4px;font-weight:600;font-size:.9em}
.trained{background:#d9f2d9;color:#145214}.untrained{background:#fde0dc;color:#8a1c0c}
.note{color:#555;font-size:.92em}.strip{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}
.fig{margin:8px 0 16px 0}
"""


def png_data_uri(image: np.ndarray) -> str:
    """A uint8 (H, W, 3) or (H, W) image as a ``data:image/png;base64,...`` URI (PIL encoder)."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"png_data_uri expects uint8, got {arr.dtype}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(v: object, digits: int = 3) -> str:
    if isinstance(v, (float, np.floating)):
        return "–" if math.isnan(float(v)) else f"{float(v):.{digits}f}"
    return _esc(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[bool] = ()) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            cls = ' class="num"' if i < len(numeric) and numeric[i] else ""
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Figures:
    """Turns plotly figures into divs; counts them (the test checks every one rendered)."""

    def __init__(self) -> None:
        self.count = 0

    def make(self, build: Callable[[], Any], what: str, height: int | None = None) -> str:
        """``div(build())``, or a visible note if building the figure fails (the report still gets written)."""
        try:
            fig = build()
        except Exception as exc:  # a broken figure must not lose the rest of the report
            return f"<p class='note'>{_esc(what)} unavailable: {_esc(type(exc).__name__)}: {_esc(exc)}</p>"
        return self.div(fig, height=height)

    def div(self, fig, height: int | None = None) -> str:
        self.count += 1
        if height is not None:
            fig.update_layout(height=height)
        inner = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            include_mathjax=False,
            div_id=f"fig{self.count}",
            config={"displaylogo": False, "responsive": True},
        )
        return f'<div class="fig">{inner}</div>'


def _curves_of(metrics: Mapping[str, MethodMetrics]) -> dict[str, tuple[Curves | None, float, float]]:
    out = {}
    for method, m in metrics.items():
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
    return f"<p>Weights: {badge} <span class='note'>({_esc(r.description)})</span></p>"


def _model_section(r: ModelResult, figs: _Figures, metrics: Mapping[str, MethodMetrics] | None) -> str:
    from . import attention_stats, stats_figure, strip, token_grid_figure
    from .pipeline import METHODS, render_overlay, stage_strip

    parts = [f'<section id="{_esc(r.name)}"><h2>{_esc(r.name)}</h2>', weights_html(r)]
    if r.notes:
        parts.append("<ul class='note'>" + "".join(f"<li>{_esc(n)}</li>" for n in r.notes) + "</ul>")
    parts.append("<h3>Top-5 predictions</h3>")
    parts.append(
        _table(
            ["#", "class", "probability"],
            [(i + 1, lab, p) for i, (lab, p) in enumerate(r.top5)],
            (True, False, True),
        )
    )
    t, s = r.frames.shape[0], r.frames.shape[1]
    grids = ", ".join("×".join(str(g) for g in st.grid) for st in r.output.stages)
    parts.append(
        f"<p class='note'>Input {t} frames of {s}×{s} px; token grids per stage (T×H×W): {_esc(grids)}.</p>"
    )
    if r.volumes:
        img = stage_strip(r)
        keys = [k for k in r.volumes if k.startswith("attention/")]
        keys += [k for k in ("rollout", "grad_rollout") if k in r.volumes]
        label = ", ".join(
            f"stage {int(k.split('/')[1]) + 1}" if k.startswith("attention/") else METHODS.get(k, k)
            for k in keys
        )
        parts.append("<h3>Attention overlays</h3>")
        parts.append(
            f'<img class="strip" alt="attention overlays of {_esc(r.name)}: {_esc(label)}" '
            f'src="{png_data_uri(img)}" width="{img.shape[1]}" height="{img.shape[0]}">'
        )
        parts.append(f"<p class='note'>Rows: {_esc(label)}; columns: evenly spaced frames.</p>")
    others = [k for k in r.volumes if not k.startswith("attention/") and k not in ("rollout", "grad_rollout")]
    if others:
        img = strip([render_overlay(r, k) for k in others], labels=[METHODS.get(k, k) for k in others])
        label = ", ".join(METHODS.get(k, k) for k in others)
        parts.append("<h3>Attributions</h3>")
        parts.append(
            f'<img class="strip" alt="attributions of {_esc(r.name)}: {_esc(label)}" '
            f'src="{png_data_uri(img)}" width="{img.shape[1]}" height="{img.shape[0]}">'
        )
        parts.append(f"<p class='note'>Rows: {_esc(label)}; columns: evenly spaced frames.</p>")
    parts.append("<h3>Token grids</h3>")
    parts.append(figs.make(lambda: token_grid_figure(r.output), "token grid figure", height=520))
    parts.append("<h3>Attention statistics</h3>")
    parts.append(
        figs.make(
            lambda: stats_figure({r.name: attention_stats(r.output)}), "attention statistics", height=360
        )
    )
    if metrics:
        parts.append(_faithfulness_html(r.name, metrics, figs))
    if r.timings:
        parts.append("<h3>Timings</h3>")
        parts.append(
            _table(["step", "seconds"], [(k, float(v)) for k, v in r.timings.items()], (False, True))
        )
    parts.append("</section>")
    return "\n".join(parts)


def _faithfulness_html(name: str, metrics: Mapping[str, MethodMetrics], figs: _Figures) -> str:
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
            f"<p class='note'>Deletion / insertion of {_esc('×'.join(map(str, first.cell)))} cells "
            f"(frames×px×px), most relevant first, {_esc(first.substrate)} substrate, target class "
            f"{first.target}. Lower deletion AUC and higher insertion AUC are better.</p>"
        )
    out.append(
        _table(
            ["method", "deletion AUC ↓", "insertion AUC ↑", "pointing game ↑", "mask IoU ↑"],
            rows,
            (False, True, True, True, True),
        )
    )
    if curves:
        out.append(figs.div(curves_figure(curves, title=f"{name}: deletion / insertion")))
    return "\n".join(out)


def _summary(results: Sequence[ModelResult]) -> str:
    rows = []
    for r in results:
        top = r.top5[0] if r.top5 else ("–", float("nan"))
        rows.append(
            (
                r.name,
                "trained" if r.trained else "UNTRAINED",
                top[0],
                float(top[1]),
                float(r.timings.get("total", float("nan"))),
            )
        )
    return _table(
        ["model", "weights", "top-1", "probability", "seconds"], rows, (False, False, False, True, True)
    )


def report_html(
    results: Sequence[ModelResult],
    *,
    metrics: Mapping[str, Mapping[str, MethodMetrics]] | None = None,
    title: str = "mvt-lens report",
    clip_name: str | None = None,
) -> tuple[str, int]:
    """The report as an HTML string, and the number of plotly figures in it."""
    from plotly.offline import get_plotlyjs

    figs = _Figures()
    sections = [_model_section(r, figs, (metrics or {}).get(r.name)) for r in results]
    clip = f"<p>Clip: <code>{_esc(clip_name)}</code></p>" if clip_name else ""
    nav = " · ".join(f'<a href="#{_esc(r.name)}">{_esc(r.name)}</a>' for r in results)
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>{_esc(title)}</h1>
{clip}
<p class="note">Written by mvt-lens; opens offline (plotly.js and images are embedded).</p>
{_summary(results)}
<p>{nav}</p>
{"".join(sections)}
</body></html>
"""
    return doc, figs.count


def write_report_html(
    results: Sequence[ModelResult],
    path: str | Path,
    *,
    metrics: Mapping[str, Mapping[str, MethodMetrics]] | None = None,
    title: str = "mvt-lens report",
    clip_name: str | None = None,
) -> Path:
    """Write ``report.html`` for ``results`` (from :func:`viz.pipeline.run_model`) to ``path``.

    ``metrics`` (optional) maps a model name to ``{method: Curves}`` or to the output of
    :func:`viz.faithfulness.score_result` (``{method: {"curves", "pointing_game", "mask_iou"}}``); those models
    get a faithfulness section (AUC table and curves). ``path`` may be a directory (then
    ``path/report.html``). Returns the written file.
    """
    path = Path(path)
    if path.is_dir() or path.suffix == "":
        path = path / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc, _ = report_html(results, metrics=metrics, title=title, clip_name=clip_name)
    path.write_text(doc, encoding="utf-8")
    return path
