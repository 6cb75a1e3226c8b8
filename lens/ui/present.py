"""What the app shows for a comparison, as plain data: one :class:`~lens.ui.screens.PanelScreen` per model
panel, the timeline, the ground-truth panel, the banner and a JSON summary. Everything a panel says (title,
picture or error, the controls its model can give, the class it explains) is decided here and tested
without a browser; :mod:`lens.ui.actions` puts it into screens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import viz

from ..core.records import Analysis, ModelError, ModelResult, VolumeKey
from ..core.request import ClipInfo
from ..core.windows import prediction_note, seen_note
from ..explain import methods as M
from ..explain.evidence import FAITHFUL, FAITHFUL_LABEL
from ..files.export import windows_record
from ..render.display import Display
from ..render.overlays import NORM_WORDS, head_choices, stage_choices, write_jpeg
from ..render.panels import Panel
from ..render.timeline import (
    COLORS,
    TRUTH_COLOR,
    Colorbar,
    Sprite,
    Track,
    Url,
    markdown_text,
    panel_html,
    placeholder_html,
    sprite_grid,
    tile,
    timeline_html,
)
from .defaults import KINETICS
from .examples import ground_truth
from .screens import AppState, Notice, PanelScreen


def color(index: int) -> str:
    return COLORS[index % len(COLORS)]


VOCABULARIES = {
    "kinetics400": "Kinetics-400 · {n} actions",
    "kinetics600": "Kinetics-600 · {n} actions",
    "ssv2": "Something-Something v2 · {n} motions of hands and objects",
    "synthmotion": "SynthMotion · {n} synthetic motions",
    "imagenet1k": "ImageNet · {n} object classes, per frame",
}
"""How a panel names the classes a model knows and the data it learnt them from, by label set."""


def vocabulary(name: str) -> str:
    """What ``name`` knows: its class vocabulary and training data (``Kinetics-400 · 400 actions``), or, for
    untrained weights, that it knows nothing yet."""
    from mvt import get_spec

    try:
        spec = get_spec(name)
    except KeyError:
        return ""
    n = len(spec.labels)
    if spec.checkpoint is not None and spec.label_set not in VOCABULARIES:  # a user's model: its own classes
        named = not spec.labels[0].startswith("class ") if n else False
        shown = ", ".join(spec.labels[:3]) + (", …" if n > 3 else "")
        return f"its own {n} classes · {shown}" if named else f"{n} unnamed classes (class 0 … class {n - 1})"
    words = VOCABULARIES.get(spec.label_set, f"{spec.label_set} · {{n}} classes").format(n=n)
    if spec.label_set not in VOCABULARIES and n == 0:
        words = spec.label_set
    return words if spec.trained else f"untrained · {words.split(' · ')[0]}'s {n} labels, nothing learnt"


def title(name: str, result: ModelResult | None, description: str = "") -> str:
    """Markdown: the model's name, what it knows (its classes and training data) and what its weights are
    (untrained weights said plainly), plus clip notes."""
    knows = vocabulary(name)
    what = result.description if result is not None else description
    name_md, what_md = markdown_text(name), markdown_text(what)
    text = f"### {name_md}\n**{markdown_text(knows)}** — {what_md}" if knows else f"### {name_md}\n{what_md}"
    if result is not None and not result.trained:
        text += "  \n**untrained weights: the attention shown is not learned**"
    if result is not None and result.notes:
        text += "  \n" + markdown_text("; ".join(result.notes))
    return text


def pending(name: str, index: int, text: str = "waiting for its turn…") -> PanelScreen:
    from mvt import get_spec

    return PanelScreen(
        name, title(name, None, get_spec(name).description), placeholder_html(name, text, color(index))
    )


def target_label(result: ModelResult, labels: Sequence[str]) -> str:
    return labels[result.target] if 0 <= result.target < len(labels) else f"class {result.target}"


def colorbar(panel: Panel) -> Colorbar | None:
    """The colour bar of a panel's heat map: its colours as the overlay blends them, the values at its ends
    (:data:`lens.render.overlays.NORM`) and what they are."""
    if panel.scale is None or panel.display is None:
        return None
    d = panel.display
    m = M.get(d.method)
    lo, hi = panel.scale
    return Colorbar(tuple(viz.colorbar(d.colormap, 9)), lo, hi, f"{m.label} value", NORM_WORDS)


def show_choices(methods: Sequence[str]) -> list[tuple[str, str]]:
    """Show's choices after a comparison: each model's most faithful method, then every method computed."""
    return [(FAITHFUL_LABEL, FAITHFUL), *M.choices_of(methods)]


def ready_for(result: ModelResult, display: Display) -> bool:
    """Whether ``display``'s volumes are computed in every window of ``result`` (drawing it waits for nothing)."""
    method = M.get(display.method).name
    return all(w.volumes.ready(k) for w in result.seen for k in w.volumes if k.method == method)


def panel_screen(
    panel: Panel,
    index: int,
    url: Url,
    labels: Sequence[str] = (),
    note: str | None = None,
    follows: str = "",
) -> PanelScreen:
    """The panel of one model for its display (or its error, in place); ``note``: a problem with a request to
    this model, said in the panel; ``follows``: said first under the picture (e.g. that a slower view follows)."""
    r = panel.result
    if r is None and panel.pending:
        return replace(pending(panel.name, index), note=note)
    if r is None:
        return PanelScreen(panel.name, f"### {markdown_text(panel.name)}", panel_html(
            panel.name, frames=None, error=panel.error, top5=(), target_label=None, captions=(), url=url,
            color=color(index),
        ), ready=True, note=note)  # fmt: skip
    display = panel.display or Display()
    explained = target_label(r, labels) if labels else None
    method = M.get(display.method).label
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
        captions=[
            *([follows] if follows else []),
            *panel.captions,  # how the method shown scored comes first: the line not behind the disclosure
            *_class_caption(display, explained),
            *_sink_caption(panel),
            *seen,
        ],
        url=url,
        color=color(index),
        colorbar=colorbar(panel) if frames is not None else None,
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
        stage=stage if stages else None,
        heads=heads if len(heads) > 1 else [],
        head=head if head in heads else "mean",
        classes=classes,
        klass=explained,
        download=panel.overlay,
        ready=True,
        note=note,
    )


def _class_caption(display: Display, explained: str | None) -> list[str]:
    """The method drawn and, where it depends on the class, the class it explains."""
    m = M.get(display.method)
    if explained is not None and (m.needs_gradients or m.kind in ("gradient", "captum")):
        return [f"{m.label}, explaining the class “{explained}”."]
    return []


def _sink_caption(panel: Panel) -> list[str]:
    if not panel.sinks or panel.display is None:
        return []
    n = len(panel.sinks)
    keys = "a sink key" if n == 1 else f"{n} sink keys"
    if panel.display.sinks:
        return [
            f"Showing {keys} (it takes attention whatever the clip shows); untick “Show sink keys” to hide."
        ]
    return [
        f"{keys.capitalize()} hidden (drawn at the map's floor): tick “Show sink keys” to see it as measured."
    ]


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


def summary(
    analysis: Analysis, panels: Sequence[Panel | None], labels: Callable[[str], Sequence[str]] | None = None
) -> dict:
    """A JSON-able account of what the panels show: clip, and per model its top-5, what the panel explains
    (the class, by label and index, and the method drawn), the frame times and weights, or its error.
    ``labels(name)``: a model's class names (default: its spec's)."""
    models = []
    for entry, p in zip(analysis.entries, panels):
        item: dict = {"name": entry.name}
        if isinstance(entry, ModelError):
            item["error"] = entry.message
        else:
            item["top5"] = [[lab, round(float(v), 6)] for lab, v in entry.top5]
            item["target"] = int(entry.target)
            item["trained"] = bool(entry.trained)
            names = labels(entry.name) if labels is not None else ()
            item["prediction"] = prediction_note(entry.coverage)
            item["windows"] = windows_record(entry)
            if p is not None and p.error is None and p.key is not None:
                item["shown"] = {
                    "method": p.key.method,
                    "method_label": M.get(p.key.method).label,
                    "stage": p.key.stage,
                    "class": target_label(entry, names) if names else f"class {entry.target}",
                    "class_index": int(entry.target),
                    "class_dependent": M.get(p.key.method).kind in ("gradient", "captum"),
                }
                item["times"] = [round(float(t), 4) for t in p.times]
                item["weights"] = [round(float(w), 6) for w in p.weights]
            elif p is not None:
                item["error"] = p.error
        models.append(item)
    return {"clip": analysis.clip.as_dict(), "methods": list(analysis.methods), "models": models}


SYNTH_CLASSES = "move left, right, up or down, rotate clockwise or counter-clockwise, grow, shrink"


def synthetic_notice(analysis: Analysis, kinetics: str) -> Notice | None:
    """The note for SynthMotion-trained models run on a clip that is not a SynthMotion clip: they know only
    eight synthetic motions, so their labels say which of the eight the clip most resembles. A clip is known
    to be SynthMotion only when it is one of the shipped examples (by content hash, :func:`ground_truth`):
    any other clip gets the note. ``kinetics`` says how the Kinetics-400 set stands here (what it downloads,
    or why it cannot run): the note offers it when it can run."""
    from mvt import get_spec

    synth = [r.name for r in analysis.results if r.trained and get_spec(r.name).label_set == "synthmotion"]
    if not synth or ground_truth(analysis.clip.sha256) is not None:
        return None
    who = f"{synth[0]} knows" if len(synth) == 1 else f"{', '.join(synth)} know"
    text = (
        f"{who} only eight synthetic motions ({SYNTH_CLASSES}), learnt from generated SynthMotion "
        f"clips. This clip is not one of the SynthMotion clips shipped here, so their labels say which of "
        f"the eight it most resembles, not what happens in it."
    )
    if kinetics.startswith("unavailable"):
        return Notice(f"{text} The Kinetics-400 set (400 real actions) is {kinetics}.")
    return Notice(
        f"{text} The Kinetics-400 set knows 400 real actions ({kinetics}).",
        offer=f"Use the Kinetics-400 set ({kinetics})",
        offer_set=KINETICS,
    )


def faithfulness_rows(
    scores: Mapping[str, Mapping[VolumeKey, Mapping]],
    analysis: Analysis,
    state: AppState | None,
    labels: Callable[[str], Sequence[str]],
    digits: int = 4,
) -> list[list]:
    """Rows ``[model, class explained, explanation, deletion AUC, insertion AUC]`` of the faithfulness tab; the
    explanation its panel shows is marked ``(shown)``."""
    rows = []
    entries = {e.name: (i, e) for i, e in enumerate(analysis.entries)}
    for name, per in scores.items():
        i, entry = entries[name]
        klass = target_label(entry, labels(name)) if isinstance(entry, ModelResult) else ""
        showing = state.method_of(i) if state is not None else None
        for key, s in per.items():
            label = M.volume_label(key) + (" (shown)" if key.method == showing else "")
            c = s["curves"]
            rows.append([name, klass, label, round(c.deletion_auc, digits), round(c.insertion_auc, digits)])
    return rows


def done(analysis: Analysis, seconds: float) -> str:
    """The progress line after a comparison: how many models gave a result, on which clip, in how long."""
    n, ok = len(analysis.entries), len(analysis.results)
    failed = f" ({n - ok} failed: see {'its' if n - ok == 1 else 'their'} panel)" if ok < n else ""
    return f"{ok} of {n} models compared on {analysis.clip.name} in {seconds:.1f} s{failed}."


def class_method(show: str) -> str:
    """The explanation a picked class is shown with: the current one when it depends on the class, else
    gradient-weighted rollout (attention and rollout are the same for every class)."""
    m = M.get(show)
    return m.name if (m.needs_gradients or m.kind in ("gradient", "captum")) else "grad_rollout"
