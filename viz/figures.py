"""plotly figures: the multiscale token grid, per-stage attention heatmaps, attention statistics, and
deletion / insertion curves.

plotly is imported inside each function (``import viz`` stays light). Arrays passed to plotly are numpy
float32, never lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mvt.outputs import ModelOutput

from .faithfulness import Curves
from .geometry import TokenGeom, trace
from .maps import map_volume, stage_map
from .render import to_frames

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def _stage_geoms(output: ModelOutput) -> list[tuple[int, TokenGeom, object]]:
    """(stage, geometry of the query tokens of the stage's :func:`stage_map`, that map)."""
    out = []
    lays = {id(lay.amap): lay for lay in trace(output)}
    for s in sorted({m.stage for m in output.attentions}):
        lay = lays[id(stage_map(output, s))]
        v = next(iter(lay.queries))
        out.append((s, lay.queries[v], lay.amap))
    return out


def _sample(frames_vol: np.ndarray, centres: np.ndarray) -> np.ndarray:
    idx = [np.clip(np.rint(centres[:, a]).astype(int), 0, frames_vol.shape[a] - 1) for a in range(3)]
    return frames_vol[idx[0], idx[1], idx[2]].astype(np.float32)


def _hover_data(
    geom: TokenGeom, keep: np.ndarray, centres: np.ndarray, vals: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """Numeric float32 hover columns (plotly ships numpy arrays as compact typed arrays, strings not):
    token index, grid t/h/w, footprint ranges ``[lo, hi)`` clipped to the input (frames, y, x; NaN for
    1-D pooled tokens), value."""
    pos = np.stack(np.unravel_index(keep, tuple(int(g) for g in geom.grid)), axis=1)
    fp = geom.footprint
    if fp is None:
        ranges = np.full((len(keep), 6), np.nan)
    else:
        half = np.asarray([(k - 1) / 2.0 for k in fp.kernel])
        lo = np.maximum(centres - half, 0.0)
        hi = np.minimum(centres + half + 1, np.asarray(shape, dtype=np.float64))
        ranges = np.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1], lo[:, 2], hi[:, 2]], axis=1)
    return np.concatenate([keep[:, None], pos, ranges, vals[:, None]], axis=1).astype(np.float32)


_HOVER = (
    "token %{customdata[0]:.0f} — grid (t,h,w) (%{customdata[1]:.0f}, %{customdata[2]:.0f}, "
    "%{customdata[3]:.0f})<br>footprint: frames %{customdata[4]:.0f}–%{customdata[5]:.0f}, "
    "y %{customdata[6]:.0f}–%{customdata[7]:.0f}, x %{customdata[8]:.0f}–%{customdata[9]:.0f}"
    "<br>attention %{customdata[10]:.4g}"
)


def token_grid_figure(output: ModelOutput, head: str | int = "mean", max_tokens: int = 30000):
    """3-D scatter of every stage's token grid (the query tokens of its :func:`viz.stage_map`) at the
    tokens' true positions over the clip volume.

    One trace per stage (buttons show one stage or all); a marker per token at its centre
    (x, y in pixels, frame), sized by the token's stride, coloured by the stage's attention (the map's
    volume on its — possibly pooled — key grid, painted with the key footprint and sampled at each token's
    centre). Hover: stage, token index, grid position, footprint, value. Stages with more than ``max_tokens`` tokens are strided.
    """
    import plotly.graph_objects as go

    shape = tuple(int(s) for s in output.input_shape)
    traces = []
    for s, geom, amap in _stage_geoms(output):
        vol, fp = map_volume(output, amap, head=head)
        frames_vol = to_frames(vol, shape, footprint=fp)
        centres = geom.centres()
        n = len(centres)
        step = max(1, int(np.ceil(n / max_tokens)))
        keep = np.arange(0, n, step)
        c = centres[keep]
        vals = _sample(frames_vol, c)
        grid = tuple(int(g) for g in geom.grid)
        size = 3.0 + 6.0 * (float(geom.footprint.stride[2]) / shape[2] if geom.footprint else 0.02) * 8
        traces.append(
            go.Scatter3d(
                x=c[:, 2].astype(np.float32),
                y=c[:, 0].astype(np.float32),
                z=(shape[1] - c[:, 1]).astype(np.float32),
                mode="markers",
                name=f"stage {s + 1}: {grid[0]}×{grid[1]}×{grid[2]}",
                marker=dict(size=size, color=vals, colorscale="Inferno", opacity=0.8, showscale=False),
                customdata=_hover_data(geom, keep, c, vals, shape),
                hovertemplate=f"stage {s + 1}<br>" + _HOVER + "<extra></extra>",
            )
        )
    buttons = [dict(label="all stages", method="update", args=[{"visible": [True] * len(traces)}])]
    for i, t in enumerate(traces):
        vis = [j == i for j in range(len(traces))]
        buttons.append(dict(label=t.name.split(":")[0], method="update", args=[{"visible": vis}]))
    fig = go.Figure(traces)
    fig.update_layout(
        scene=dict(
            xaxis=dict(title="x (px)", range=[0, shape[2]]),
            yaxis=dict(title="frame", range=[0, shape[0]]),
            zaxis=dict(title="y (px)", range=[0, shape[1]]),
            aspectmode="manual",
            aspectratio=dict(x=1, y=1.2, z=1),
        ),
        updatemenus=[dict(buttons=buttons, direction="down", x=0.0, y=1.12, xanchor="left")],
        margin=dict(l=0, r=0, t=40, b=0),
        legend=dict(orientation="h"),
        title="Token grids per stage, coloured by the stage's attention",
    )
    return fig


def stage_heatmaps_figure(output: ModelOutput, head: str | int = "mean", max_cols: int = 8):
    """Small multiples: a row per stage, a column per token time slice, the stage's last-map attention
    on its key grid, axes in input pixels (token centres)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    stages = _stage_geoms(output)
    vols = []
    for s, _, amap in stages:
        vol, fp = map_volume(output, amap, head=head)
        vols.append((s, vol, fp))
    cols = min(max_cols, max(v.shape[0] for _, v, _ in vols))
    fig = make_subplots(
        rows=len(vols),
        cols=cols,
        horizontal_spacing=0.01,
        vertical_spacing=0.04,
        row_titles=[f"stage {s + 1}" for s, _, _ in vols],
    )
    for r, (_, vol, fp) in enumerate(vols, start=1):
        ts = np.unique(np.linspace(0, vol.shape[0] - 1, min(cols, vol.shape[0])).round().astype(int))
        ys = (np.arange(vol.shape[1]) * fp.stride[1] - fp.padding[1] + (fp.kernel[1] - 1) / 2).astype(
            np.float32
        )
        xs = (np.arange(vol.shape[2]) * fp.stride[2] - fp.padding[2] + (fp.kernel[2] - 1) / 2).astype(
            np.float32
        )
        zmax = float(vol.max()) if vol.size else 1.0
        for c, t in enumerate(ts, start=1):
            fig.add_trace(
                go.Heatmap(
                    z=vol[t].astype(np.float32),
                    x=xs,
                    y=ys,
                    zmin=0.0,
                    zmax=zmax,
                    colorscale="Inferno",
                    showscale=False,
                    hovertemplate=f"slice {t}<br>x %{{x}} px, y %{{y}} px<br>%{{z:.4g}}<extra></extra>",
                ),
                row=r,
                col=c,
            )
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(
        margin=dict(l=0, r=40, t=20, b=0), title="Attention per stage (columns: token time slices)"
    )
    return fig


def stats_figure(stats: Mapping[str, Sequence[dict]]):
    """Entropy and mean attention distance (spatial px, temporal frames) per map, for several models.

    ``stats`` maps a model name to :func:`viz.attention_stats` rows. x is the attention call's depth
    (map index in forward order); the head-mean is a line, per-head CLS entropies are small markers.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("normalised entropy", "mean distance (px)", "mean distance (frames)"),
        horizontal_spacing=0.07,
    )
    for i, (name, rows) in enumerate(stats.items()):
        color = _PALETTE[i % len(_PALETTE)]
        mean = [r for r in rows if r["head"] == "mean"]
        heads = [r for r in rows if r["head"] != "mean"]
        x = np.asarray([r["map"] for r in mean], dtype=np.float32)
        text = np.asarray(
            [f"stage {r['stage'] + 1} block {r['block']} {r['kind']}" for r in mean], dtype=object
        )
        for col, key in enumerate(("entropy", "distance_px", "distance_frames"), start=1):
            y = np.asarray([r[key] for r in mean], dtype=np.float32)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    line=dict(color=color),
                    text=text,
                    hovertemplate="%{text}<br>%{y:.3g}<extra>" + name + "</extra>",
                ),
                row=1,
                col=col,
            )
        if heads:
            fig.add_trace(
                go.Scatter(
                    x=np.asarray([r["map"] for r in heads], dtype=np.float32),
                    y=np.asarray([r["entropy"] for r in heads], dtype=np.float32),
                    mode="markers",
                    name=f"{name} (CLS, per head)",
                    legendgroup=name,
                    marker=dict(color=color, size=4, opacity=0.5),
                    text=np.asarray(
                        [f"stage {r['stage'] + 1} block {r['block']} head {r['head']}" for r in heads],
                        dtype=object,
                    ),
                    hovertemplate="%{text}<br>%{y:.3g}<extra></extra>",
                ),
                row=1,
                col=1,
            )
    fig.update_xaxes(title_text="attention call (depth)")
    fig.update_layout(margin=dict(l=40, r=10, t=40, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


_BASELINE_STYLE = {"random": "#7f7f7f", "center": "#bcbd22", "oracle": "#000000"}


def curves_figure(curves: Mapping[str, Curves], title: str | None = None):
    """plotly Figure: deletion (left) and insertion (right) curves of several methods, AUC in the legend.

    Baselines named ``random``, ``center`` or ``oracle`` are drawn dashed in fixed grey/olive/black.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("deletion (lower AUC = more faithful)", "insertion (higher AUC = more faithful)"),
        horizontal_spacing=0.08,
    )
    for i, (name, c) in enumerate(curves.items()):
        base = name in _BASELINE_STYLE
        color = _BASELINE_STYLE.get(name, _PALETTE[i % len(_PALETTE)])
        line = dict(color=color, dash="dash" if base else "solid", width=1.5 if base else 2.0)
        x = np.asarray(c.fractions, dtype=np.float32)
        for col, (ys, a, what) in enumerate(
            ((c.deletion, c.deletion_auc, "deletion"), (c.insertion, c.insertion_auc, "insertion")), start=1
        ):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=np.asarray(ys, dtype=np.float32),
                    mode="lines+markers",
                    marker=dict(size=4),
                    line=line,
                    name=f"{name} {what[:3]}. AUC {a:.3f}",
                    legendgroup=name,
                    hovertemplate=f"{name}<br>{what} %{{x:.2f}} → p %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="fraction of the clip perturbed", range=[0, 1])
    fig.update_yaxes(title_text="p(target)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    fig.update_layout(
        margin=dict(l=10, r=10, t=90, b=10),
        title=dict(text=title or "Deletion / insertion", y=0.97),
        height=420,
    )
    return fig


def frame_matrix_figure(
    values: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    mass: np.ndarray | None = None,
    title: str = "Frame × frame attention",
):
    """A small heatmap of a time × time attention matrix (:class:`viz.query.FrameMatrix`): row ``i`` is how
    the queries at time ``i`` share their attention over the key times (rows sum to 1). ``rows`` / ``cols``
    label the times; ``mass`` (per row: the share on grid keys, the rest on CLS) goes into the hover."""
    import plotly.graph_objects as go

    z = np.asarray(values, dtype=np.float32)
    share = np.ones(len(z), dtype=np.float32) if mass is None else np.asarray(mass, dtype=np.float32)
    custom = np.repeat(share[:, None], z.shape[1], axis=1)
    heat = go.Heatmap(
        z=z,
        x=list(cols),
        y=list(rows),
        zmin=0.0,
        colorscale="Inferno",
        customdata=custom,
        colorbar=dict(thickness=8, len=0.8),
        hovertemplate="queries %{y}<br>keys %{x}<br>share %{z:.3f} (of the %{customdata:.0%} on grid "
        "keys)<extra></extra>",
    )
    layout = dict(  # one layout, not update_* calls: plotly's updates cost more than the matrix
        title=dict(text=title, font=dict(size=12)),
        margin=dict(l=10, r=10, t=36, b=10),
        height=330,
        yaxis=dict(autorange="reversed", title=dict(text="queries at"), tickfont=dict(size=9)),
        xaxis=dict(title=dict(text="attend to keys at"), tickfont=dict(size=9), tickangle=-45),
    )
    return go.Figure(heat, layout)
