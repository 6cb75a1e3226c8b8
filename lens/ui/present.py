"""What the app shows for a comparison, as plain data: one :class:`~lens.ui.screens.PanelScreen` per model
panel, the timeline, the ground-truth panel, the banner and a JSON summary. Everything a panel says (title,
picture or error, the controls its model can give, the class it explains) is decided here and tested
without a browser; :mod:`lens.ui.actions` puts it into screens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..core.records import Analysis, ModelError, ModelResult
from ..core.request import ClipInfo
from ..core.windows import prediction_note, seen_note
from ..explain import methods as M
from ..explain.evidence import FAITHFUL, FAITHFUL_LABEL
from ..files.export import windows_record
from ..render.display import Display
from ..render.overlays import head_choices, stage_choices, write_jpeg
from ..render.panels import Panel
from ..render.timeline import (
    COLORS,
    TRUTH_COLOR,
    Sprite,
    Track,
    Url,
    panel_html,
    placeholder_html,
    sprite_grid,
    tile,
    timeline_html,
)
from .examples import ground_truth
from .screens import PanelScreen


def color(index: int) -> str:
    return COLORS[index % len(COLORS)]


def title(name: str, result: ModelResult | None, description: str = "") -> str:
    """Markdown: the model's name and what its weights are (untrained weights said plainly), plus clip notes."""
    text = f"### {name}\n{result.description if result is not None else description}"
    if result is not None and not result.trained:
        text += "  \n**untrained weights: the attention shown is not learned**"
    if result is not None and result.notes:
        text += "  \n" + "; ".join(result.notes)
    return text


def pending(name: str, index: int, text: str = "waiting for its turn…") -> PanelScreen:
    from mvt import get_spec

    return PanelScreen(
        name, title(name, None, get_spec(name).description), placeholder_html(name, text, color(index))
    )


def target_label(result: ModelResult, labels: Sequence[str]) -> str:
    return labels[result.target] if 0 <= result.target < len(labels) else f"class {result.target}"


def show_choices(methods: Sequence[str]) -> list[tuple[str, str]]:
    """Show's choices after a comparison: each model's most faithful method, then every method computed."""
    return [(FAITHFUL_LABEL, FAITHFUL), *M.choices_of(methods)]


def ready_for(result: ModelResult, display: Display) -> bool:
    """Whether ``display``'s volumes are computed in every window of ``result`` (drawing it waits for nothing)."""
    method = M.get(display.method).name
    return all(w.volumes.ready(k) for w in result.seen for k in w.volumes if k.method == method)


def panel_screen(
    panel: Panel, index: int, url: Url, labels: Sequence[str] = (), note: str = ""
) -> PanelScreen:
    """The panel of one model for its display (or its error, in place); ``note`` is said first (e.g. that a
    slower view follows)."""
    r = panel.result
    if r is None and panel.pending:
        return pending(panel.name, index)
    if r is None:
        return PanelScreen(panel.name, f"### {panel.name}", panel_html(
            panel.name, frames=None, error=panel.error, top5=(), target_label=None, captions=(), url=url,
            color=color(index),
        ), ready=True)  # fmt: skip
    display = panel.display or Display()
    explained = target_label(r, labels) if labels else None
    frames = None
    if panel.frames is not None and panel.error is None:
        method = panel.key.method if panel.key is not None else display.method
        frames = Sprite(
            panel.name, panel.frames, panel.grid, panel.times, color(index), M.get(method).label,
            panel.window_of, panel.windows, method,
        )  # fmt: skip
    seen = [seen_note(r.coverage)] if seen_note(r.coverage) else []
    body = panel_html(
        panel.name,
        frames=frames,
        error=panel.error,
        top5=r.top5,
        target_label=explained,
        captions=[*([note] if note else []), *_class_caption(r, display, explained), *panel.captions, *seen],
        url=url,
        color=color(index),
        prediction=prediction_note(r.coverage),
    )
    stages = stage_choices(r, display.method)
    stage = (panel.key.stage + 1) if panel.key is not None and panel.key.stage is not None else None
    heads = head_choices(r, display.method, None if stage is None else stage - 1)
    head = display.head if isinstance(display.head, str) else f"head {int(display.head) + 1}"
    classes = list(dict.fromkeys(([explained] if explained else []) + [lab for lab, _ in r.top5]))
    return PanelScreen(
        panel.name,
        title(panel.name, r),
        body,
        stages=stages,
        stage=stage,
        heads=heads if len(heads) > 1 else [],
        head=head if head in heads else "mean",
        classes=classes,
        klass=explained,
        download=panel.overlay,
        ready=True,
    )


def _class_caption(r: ModelResult, display: Display, explained: str | None) -> list[str]:
    m = M.get(display.method)
    if explained is None:
        return []
    if m.needs_gradients or m.kind in ("gradient", "captum"):
        return [f"Explaining the class “{explained}”."]
    return []


def tracks(panels: Sequence[Panel | None]) -> list[Track]:
    """The timeline's tracks: every panel with a picture, in its slot's colour."""
    return [
        Track(p.name, color(i), p.times, p.weights, p.windows)
        for i, p in enumerate(panels)
        if p is not None and p.result is not None and p.error is None and p.times
    ]


def timeline(panels: Sequence[Panel | None], clip: ClipInfo) -> str:
    """The shared slider and importance curves of the panels shown so far."""
    return timeline_html(tracks(panels), fps=clip.fps, duration=clip.duration_s, clip=clip.name)


def truth(sha256: str, panels: Sequence[Panel | None], folder: Path) -> Sprite | None:
    """The ground-truth panel of a SynthMotion example: the actor at every frame any model saw (None for other
    clips)."""
    truth = ground_truth(sha256)
    times = sorted({t for p in panels if p is not None for t in p.times})
    if truth is None or not times:
        return None
    frames = truth.picture(times)  # (N, H, W, 3)
    path = folder / f"truth_{sha256[:16]}_{abs(hash(tuple(times))) % 10**12:012d}.jpg"
    if not path.exists():
        write_jpeg(tile(frames), path)
    return Sprite(
        "ground truth", path, sprite_grid(len(times)), tuple(times), TRUTH_COLOR, "the moving actor (mask)"
    )


def summary(analysis: Analysis, panels: Sequence[Panel | None]) -> dict:
    """A JSON-able account of what the panels show: clip, and per model its top-5, the display drawn, the
    frame times and weights, or its error."""
    models = []
    for entry, p in zip(analysis.entries, panels):
        item: dict = {"name": entry.name}
        if isinstance(entry, ModelError):
            item["error"] = entry.message
        else:
            item["top5"] = [[lab, round(float(v), 6)] for lab, v in entry.top5]
            item["target"] = int(entry.target)
            item["trained"] = bool(entry.trained)
            item["prediction"] = prediction_note(entry.coverage)
            item["windows"] = windows_record(entry)
            if p is not None and p.error is None and p.key is not None:
                item["shown"] = {"method": p.key.method, "stage": p.key.stage}
                item["times"] = [round(float(t), 4) for t in p.times]
                item["weights"] = [round(float(w), 6) for w in p.weights]
            elif p is not None:
                item["error"] = p.error
        models.append(item)
    return {"clip": analysis.clip.as_dict(), "methods": list(analysis.methods), "models": models}


def class_method(show: str) -> str:
    """The explanation a picked class is shown with: the current one when it depends on the class, else
    gradient-weighted rollout (attention and rollout are the same for every class)."""
    m = M.get(show)
    return m.name if (m.needs_gradients or m.kind in ("gradient", "captum")) else "grad_rollout"
