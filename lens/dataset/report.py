"""``summary.html``: a dataset run's summary as one self-contained page (:mod:`lens.files.html`) with plotly
figures: accuracy per model, attention entropy and distance per stage, each method's pointing game and
deletion / insertion AUC next to the baselines, every number with its 95 % interval."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..files.html import Figures, esc, page, table
from .schema import SUMMARY

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
BASELINES = ("random", "center", "oracle")


def _num(ci: Mapping | None, digits: int = 3) -> str:
    if not ci or ci.get("mean") is None:
        return "–"
    return f"{ci['mean']:.{digits}f} [{ci['lo']:.{digits}f}, {ci['hi']:.{digits}f}]"


def _bars(go, x: list, cis: list[Mapping], name: str, color: str, **kw):
    y = [c["mean"] if c and c.get("mean") is not None else None for c in cis]
    up = [(c["hi"] - c["mean"]) if c and c.get("mean") is not None else None for c in cis]
    down = [(c["mean"] - c["lo"]) if c and c.get("mean") is not None else None for c in cis]
    n = [c.get("n", 0) if c else 0 for c in cis]
    return go.Bar(
        x=x,
        y=y,
        name=name,
        marker_color=color,
        error_y={"type": "data", "array": up, "arrayminus": down, "visible": True},
        customdata=n,
        hovertemplate="%{x}: %{y:.3f} (n=%{customdata})<extra>" + esc(name) + "</extra>",
        **kw,
    )


def accuracy_figure(models: Mapping[str, Mapping]):
    """Top-1 accuracy per model (and with the frames shuffled, where computed), 95 % Wilson intervals."""
    import plotly.graph_objects as go

    names = list(models)
    fig = go.Figure()
    fig.add_trace(_bars(go, names, [models[m]["accuracy"] for m in names], "top-1", PALETTE[0]))
    if any(models[m]["shuffled_accuracy"]["n"] for m in names):
        fig.add_trace(
            _bars(go, names, [models[m]["shuffled_accuracy"] for m in names], "frames shuffled", PALETTE[1])
        )
    fig.update_layout(title="Accuracy (95 % interval)", barmode="group", yaxis={"range": [0, 1]}, height=380)
    return fig


def stages_figure(models: Mapping[str, Mapping]):
    """Attention entropy and mean distance (pixels, frames) per stage, a line per model, 95 % intervals."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    keys = (
        ("entropy", "normalised entropy"),
        ("distance_px", "distance (px)"),
        ("distance_frames", "distance (frames)"),
    )
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in keys], horizontal_spacing=0.07)
    for i, (name, s) in enumerate(models.items()):
        color = PALETTE[i % len(PALETTE)]
        for col, (key, _) in enumerate(keys, start=1):
            cis = [st[key] for st in s["stages"]]
            fig.add_trace(
                go.Scatter(
                    x=[st["stage"] + 1 for st in s["stages"]],
                    y=[c["mean"] for c in cis],
                    error_y={
                        "type": "data",
                        "array": [(c["hi"] - c["mean"]) if c["mean"] is not None else None for c in cis],
                        "visible": True,
                    },
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    line={"color": color},
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="stage", dtick=1)
    fig.update_layout(
        title="Attention per stage (mean over clips and the stage's maps, 95 % interval)", height=400
    )
    return fig


def methods_figure(models: Mapping[str, Mapping]):
    """Pointing game, deletion AUC and insertion AUC per method, a bar per model; baselines hatched."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    keys = (
        ("pointing_game", "pointing game (higher: on the actor)"),
        ("deletion_auc", "deletion AUC (lower: more faithful)"),
        ("insertion_auc", "insertion AUC (higher: more faithful)"),
    )
    fig = make_subplots(rows=3, cols=1, subplot_titles=[t for _, t in keys], vertical_spacing=0.09)
    for i, (name, s) in enumerate(models.items()):
        methods = list(s["methods"])
        pattern = ["/" if m in BASELINES else "" for m in methods]
        for row, (key, _) in enumerate(keys, start=1):
            cis = [s["methods"][m][key] for m in methods]
            fig.add_trace(
                _bars(
                    go,
                    methods,
                    cis,
                    name,
                    PALETTE[i % len(PALETTE)],
                    legendgroup=name,
                    showlegend=row == 1,
                    marker_pattern_shape=pattern,
                ),
                row=row,
                col=1,
            )
    fig.update_layout(
        title="Explanations per method (baselines hatched; 95 % intervals)", barmode="group", height=900
    )
    return fig


def summary_html(summary: Mapping[str, Any], title: str = "mvt-lens: dataset summary") -> str:
    """The page as a string."""
    models = summary["models"]
    run = summary.get("run", {})
    figs = Figures()
    accuracy, stages, methods = (
        figs.div(build(models)) for build in (accuracy_figure, stages_figure, methods_figure)
    )
    shown = (
        "clips",
        "errors",
        "accuracy",
        "shuffled_accuracy",
        "seconds_per_clip",
        "seconds_scores_per_clip",
    )
    overview = table(
        ["model", *(SUMMARY[k].label for k in shown)],
        [[m, *(_num(s[k]) if isinstance(s[k], Mapping) else s[k] for k in shown)] for m, s in models.items()],
    )
    per_method = "".join(
        f"<h3>{esc(m)}</h3>"
        + table(
            ["method", "pointing game", "deletion AUC", "insertion AUC"],
            [
                [k, _num(v["pointing_game"]), _num(v["deletion_auc"]), _num(v["insertion_auc"])]
                for k, v in s["methods"].items()
            ],
        )
        for m, s in models.items()
    )
    errors = summary.get("errors", [])
    error_html = (
        table(["clip", "model", "error"], [[e["clip_id"], e["model"], e["error"]] for e in errors])
        if errors
        else "<p>None.</p>"
    )
    settings = ", ".join(f"{k}: {v}" for k, v in run.items() if k not in ("missing",))
    body = f"""<p class="note">{esc(settings)}</p>
<p class="note">Numbers are means with 95 % intervals (Wilson for rates, normal for means) and rest on n values
(hover a bar); deletion / insertion run on the scored clips only. Written by mvt-lens; opens offline.</p>
<h2>Models</h2>{overview}
{accuracy}
<h2>Attention per stage</h2>{stages}
<h2>Explanations</h2>{methods}{per_method}
<h2>Errors ({summary.get("error_rows", len(errors))} rows)</h2>{error_html}"""
    return page(title, body)


def write_html(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Write :func:`summary_html` to ``path``."""
    path = Path(path)
    path.write_text(summary_html(summary), encoding="utf-8")
    return path
