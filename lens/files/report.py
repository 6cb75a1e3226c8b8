"""A self-contained ``report.html``: the comparison of several models on one clip, readable offline.

One file, no network: plotly.js is inlined once in ``<head>`` (every figure is a ``div`` plus a script that
calls it), images are PNG ``data:`` URIs, styles are inline. It names the clip (file, SHA-256, duration)
and, per model, shows the weights (trained or not, stated plainly), the top-5 predictions, a strip of
attention overlays (a row per stage, plus rollout), the multiscale token grid
(:func:`viz.token_grid_figure`), attention entropy/distance (:func:`viz.stats_figure`), timings, and, when
given, deletion/insertion curves with an AUC table (:func:`lens.faithfulness.score_result`). A model that
failed gets its error message instead.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import viz
from viz import Curves

from ..core.records import Analysis, ModelError, ModelResult, VolumeKey
from ..explain import methods as M
from ..render.overlays import STRIP_KINDS, strip_keys, volume_strip

MethodMetrics = Mapping[str, Any]
"""Per volume: a :class:`Curves`, or a dict with ``"curves"`` and optional ``"pointing_game"``,
``"mask_iou"`` (what :func:`lens.faithfulness.score_result` returns)."""
Metrics = Mapping[str, Mapping[VolumeKey, MethodMetrics]]
"""Per model name: its scores by volume."""

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
    return f"<p>Weights: {badge} <span class='note'>({_esc(r.description)})</span></p>"


def _strip_html(r: ModelResult, keys: list[VolumeKey], title: str, what: str) -> str:
    img = volume_strip(r, keys)
    label = ", ".join(M.volume_label(k) for k in keys)
    return (
        f"<h3>{_esc(title)}</h3>"
        f'<img class="strip" alt="{_esc(what)} of {_esc(r.name)}: {_esc(label)}" '
        f'src="{png_data_uri(img)}" width="{img.shape[1]}" height="{img.shape[0]}">'
        f"<p class='note'>Rows: {_esc(label)}; columns: evenly spaced frames.</p>"
    )


def _model_section(
    r: ModelResult | ModelError, figs: _Figures, metrics: Mapping[VolumeKey, MethodMetrics] | None
) -> str:
    parts = [f'<section id="{_esc(r.name)}"><h2>{_esc(r.name)}</h2>']
    if isinstance(r, ModelError):
        parts.append(f"<p class='badge untrained'>failed</p><p>{_esc(r.message)}</p></section>")
        return "\n".join(parts)
    parts.append(weights_html(r))
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
    times = ", ".join(f"{v:.2f}" for v in r.times)
    grids = ", ".join("×".join(str(g) for g in st.grid) for st in r.output.stages) if r.output else "–"
    parts.append(
        f"<p class='note'>Input {t} frames of {s}×{s} px at clip times {_esc(times)} s; token grids per "
        f"stage (T×H×W): {_esc(grids)}.</p>"
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
        parts.append(
            _table(["step", "seconds"], [(k, float(v)) for k, v in r.timings.items()], (False, True))
        )
    parts.append("</section>")
    return "\n".join(parts)


def _faithfulness_html(name: str, metrics: Mapping[VolumeKey, MethodMetrics], figs: _Figures) -> str:
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
    return _table(
        ["model", "weights", "top-1", "probability", "seconds"], rows, (False, False, False, True, True)
    )


def _clip_html(analysis: Analysis) -> str:
    c = analysis.clip
    start = "the whole clip" if analysis.start_s is None else f"from {analysis.start_s:g} s"
    return (
        f"<p>Clip: <code>{_esc(c.name)}</code> ({c.duration_s:.2f} s, {c.fps:.3g} fps, {c.width}×{c.height}; "
        f"{_esc(start)}) <span class='note'>SHA-256 {_esc(c.sha256)}</span></p>"
    )


def report_html(
    analysis: Analysis, *, metrics: Metrics | None = None, title: str = "mvt-lens report"
) -> tuple[str, int]:
    """The report as an HTML string, and the number of plotly figures in it."""
    from plotly.offline import get_plotlyjs

    figs = _Figures()
    sections = [_model_section(r, figs, (metrics or {}).get(r.name)) for r in analysis.entries]
    nav = " · ".join(f'<a href="#{_esc(r.name)}">{_esc(r.name)}</a>' for r in analysis.entries)
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>{_esc(title)}</h1>
{_clip_html(analysis)}
<p class="note">Written by mvt-lens; opens offline (plotly.js and images are embedded).</p>
{_summary(analysis)}
<p>{nav}</p>
{"".join(sections)}
</body></html>
"""
    return doc, figs.count


def write_report_html(
    analysis: Analysis, path: str | Path, *, metrics: Metrics | None = None, title: str = "mvt-lens report"
) -> Path:
    """Write ``report.html`` for ``analysis`` to ``path`` (a directory means ``path/report.html``).

    ``metrics`` (optional) maps a model name to ``{volume key: Curves}`` or to the output of
    :func:`lens.faithfulness.score_result`; those models get a faithfulness section (AUC table and curves).
    """
    path = Path(path)
    if path.is_dir() or path.suffix == "":
        path = path / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc, _ = report_html(analysis, metrics=metrics, title=title)
    path.write_text(doc, encoding="utf-8")
    return path
