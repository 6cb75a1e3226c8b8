"""The app's protocol, typed: what a browser session holds (:class:`AppState`), what its controls say
(:class:`Controls`), and what one step of an event puts on the page (:class:`Screen`).

A :class:`Screen` names each part of the page it changes; a field left at :data:`KEEP` leaves that part as it
is. :func:`parts` spells a screen out part by part (``banner``, ``title_2``, ``strip_0``…) as the keyword
arguments of a UI library's update, and :func:`asked` reads an event's inputs by the same names, so ``app.py``
only pairs each name with its component (never a position): a new part of the page is a field here and a
component there. Errors are fields too, each shown where it belongs and never raised into the UI library
(no error pill, no toast): :attr:`Screen.banner` says what is wrong with the clip or the request, over the
results; a model's problem is in its own panel (:attr:`PanelScreen.note`, or the panel's error); a tab's in
that tab (``export_note``, ``faithfulness_note``, ``figures_note``). Each stays until the next good action.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..core.records import AnalysisRef
from ..core.request import LensError
from ..explain import methods as M
from ..explain.evidence import FAITHFUL, lead_method
from ..render.display import Display
from ..render.timeline import Sprite


class _Keep:
    """The value of a :class:`Screen` field that leaves its part of the page as it is."""

    _instance: _Keep | None = None

    def __new__(cls) -> _Keep:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"

    def __bool__(self) -> bool:
        return False


KEEP: Any = _Keep()


@dataclass(frozen=True)
class AppState:
    """One browser session's comparison: its models, a handle on their results (the results stay in the
    service's cache), the method shown, and the panels whose class was picked (they show their own method)."""

    names: tuple[str, ...] = ()
    ref: AnalysisRef | None = None
    show: str = FAITHFUL
    override: tuple[tuple[int, str], ...] = ()
    """Panels that show another method than :attr:`show` (``(index, method)``)."""
    classes: tuple[tuple[int, str], ...] = ()
    """Panels whose class was picked (``(index, label)``): the class each explains instead of its top-1."""
    query: tuple[float, float, float] | None = None
    """The point asked (clip seconds, x, y in the clip's pixels): every panel shows where it looks."""

    def showing(self, show: str) -> AppState:
        """Another method shown: every panel shows it (a picked class's own method is forgotten)."""
        return self if show == self.show else replace(self, show=show, override=())

    def method_of(self, index: int) -> str:
        """The method panel ``index`` shows."""
        return dict(self.override).get(index, self.show)

    def class_of(self, index: int) -> str | None:
        """The class picked in panel ``index`` (``None``: its top-1)."""
        return dict(self.classes).get(index)

    def explained(self, index: int, method: str, ref: AnalysisRef, klass: str | None = None) -> AppState:
        """Panel ``index`` explains a picked class ``klass`` with ``method``, which Show now names; panels that
        showed another method keep it (as their own); ``ref`` holds the new result."""
        override = {i: self.method_of(i) for i in range(len(self.names)) if self.method_of(i) != method}
        override.pop(index, None)
        classes = dict(self.classes)
        if klass is not None:
            classes[index] = klass
        return replace(
            self, ref=ref, show=method, override=tuple(sorted(override.items())),
            classes=tuple(sorted(classes.items())),
        )  # fmt: skip


@dataclass(frozen=True)
class Controls:
    """The display controls of the page: Show, opacity and colours for all panels, and each panel's stage (as
    shown, from 1) and heads label."""

    show: str = FAITHFUL
    opacity: float = 0.8
    colormap: str = "inferno"
    stages: tuple[int | None, ...] = ()
    heads: tuple[str | None, ...] = ()
    sinks: bool = False
    """Show sink keys in attention views (default: hidden)."""

    def method_for(self, name: str | None, show: str | None = None) -> str:
        """The method a panel of model ``name`` shows for ``show`` (default: Show's): for "most faithful"
        (:data:`~lens.explain.evidence.FAITHFUL`) the model's lead method (attention without a name)."""
        show = show or self.show
        if show != FAITHFUL:
            return show
        return lead_method(name) if name else "attention"

    def methods_for(self, names: Sequence[str], gradients: bool = True) -> list[str]:
        """What a comparison of ``names`` computes for Show: its method, or each model's lead (attention
        instead of a lead that needs gradients when they are not available, e.g. int8)."""
        wanted = [self.method_for(n) for n in names] or [self.method_for(None)]
        return list(
            dict.fromkeys(m if gradients or not M.get(m).needs_gradients else "attention" for m in wanted)
        )

    def display(self, name: str | None = None) -> Display:
        """The display of model ``name``'s panel without per-panel choices (:meth:`method_for`)."""
        return Display(
            self.method_for(name), colormap=self.colormap, opacity=float(self.opacity), sinks=self.sinks
        )

    def displays(self, state: AppState) -> list[Display]:
        """The display of each of ``state``'s panels: the shown method (or the panel's own, after a class was
        picked in it; a model's lead for "most faithful"), its stage and heads, and the colours. A stage or
        heads value the panel's method does not take (left over from another method) is not used."""
        over, out = dict(state.override), []
        for i, name in enumerate(state.names):
            method = self.method_for(name, over.get(i, self.show))
            stage = self.stages[i] if i < len(self.stages) else None
            head = (self.heads[i] if i < len(self.heads) else None) or "mean"
            look = {"colormap": self.colormap, "opacity": float(self.opacity), "sinks": self.sinks}
            try:
                out.append(Display.from_controls(method, stage, head, **look))
            except (LensError, ValueError, TypeError):  # a stage or heads value left over from another method
                out.append(Display(method, **look))
        return out


@dataclass(frozen=True)
class PanelScreen:
    """Everything one model panel shows. ``stages``/``heads`` are the choices its model can give for the
    display (empty: the control is hidden); ``classes`` are the classes a person may pick to explain."""

    name: str
    title: str
    html: str
    stages: list[tuple[str, int]] = field(default_factory=list)
    stage: int | None = None
    heads: list[str] = field(default_factory=list)
    head: str = "mean"
    classes: list[str] = field(default_factory=list)
    klass: str | None = None
    download: Path | None = None
    ready: bool = False
    """True once the model has run (its controls may be used)."""
    note: str | None = None
    """A problem with this model's request (e.g. a typed label that is not one of its classes), in words:
    shown in the panel, over its unchanged picture."""


@dataclass(frozen=True)
class Choices:
    """A choice control's options (``None``: as they are) and value (:data:`KEEP`: as it is, e.g. what the
    person chose while the page was loading)."""

    value: Any
    choices: list | None = None


@dataclass(frozen=True)
class Notice:
    """A note over the results that is not an error (e.g. that SynthMotion models know only eight synthetic
    motions), and what it offers: a model set to switch to (``offer``: the button's words, ``None``: none)."""

    text: str
    offer: str | None = None
    offer_set: str | None = None


@dataclass(frozen=True)
class Screen:
    """What one step of an event puts on the page, part by part (:data:`KEEP`: as it is)."""

    banner: str | None = KEEP
    """What is wrong with the clip or the request, over the results (``None``: no banner)."""
    notice: Notice | None = KEEP
    """A standing note over the results (``None``: none)."""
    clip_note: str = KEEP
    """A note under the clip box (e.g. that it shows a preview of the upload)."""
    status: str = KEEP
    """The progress line's words between runs (what the last comparison did); while an event runs, its
    progress is drawn there."""
    # the request
    models: Choices = KEEP
    model_set: str = KEEP
    suggested: str = KEEP
    """The page load's model set (Kinetics-400 when its weights are here or can be downloaded): the page takes
    it only if the person has not chosen models by the time it arrives."""
    notes: str = KEEP
    clip: str | None = KEEP
    """What the clip box shows (``None``: empty)."""
    upload: dict | None = KEEP
    """The upload the clip box shows a preview of: ``{"sha", "original"}``."""
    # the comparison
    state: AppState | None = KEEP
    show: Choices = KEEP
    timeline: str = KEEP
    truth: Sprite | None = KEEP
    """The ground-truth panel (``None``: hidden)."""
    clip_view: str | None = KEEP
    """The clip's own frames with every model's crop, where a person clicks a point (``None``: hidden)."""
    panels: tuple[PanelScreen | None, ...] = KEEP
    """Every panel slot, in order (``None``: hidden)."""
    summary: dict | None = KEEP
    timings: list[list] | None = KEEP
    # the tabs
    strips: tuple[Path | None, ...] = KEEP
    grids: tuple[Any, ...] = KEEP
    stats: Any = KEEP
    matrices: tuple[Any, ...] = KEEP
    """A frame × frame figure per panel (an entry left at :data:`KEEP` keeps that panel's)."""
    faithfulness: tuple[Any, ...] = KEEP
    faithfulness_table: list[list] = KEEP
    export: Path | None = KEEP
    figures_note: str = KEEP
    faithfulness_note: str = KEEP
    export_note: str = KEEP
    examples: list[str] = KEEP
    """The examples' labels (e.g. once the network was asked which need a download)."""
    added: str = KEEP
    """Add a model's answer (HTML): what was recognised in the checkpoint, or what did not fit."""

    def changes(self) -> dict[str, Any]:
        """The fields this step sets, by name (:func:`parts` says which parts of the page each sets)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not KEEP}

    @property
    def problem(self) -> str | None:
        """The first problem this step tells the person (banner, a panel's note, a tab's note), if any."""
        panel_notes = [p.note for p in (self.panels or ()) if p is not None and p.note]
        tabs = (self.figures_note, self.faithfulness_note, self.export_note)
        found = [self.banner or None, *panel_notes, *(t or None for t in tabs)]
        return next((f for f in found if f), None)


# -- the page's parts, by name ---------------------------------------------------------------------------------

PANEL_PARTS = ("column", "title", "picture", "stage", "heads", "klass", "download")
"""The parts of model panel ``i``, named ``<part>_<i>`` on the page."""
PER_PANEL = {"strips": "strip", "grids": "grid", "faithfulness": "faithfulness", "matrices": "matrix"}
"""Screen fields with one part per panel (named ``<part>_<i>``)."""
DISPLAY = ("show", "opacity", "colormap", "sinks")


def part_names(field_name: str, slots: int) -> list[str]:
    """The page parts a :class:`Screen` field sets (``panels``: every part of every panel; ``truth``: the
    ground-truth panel and its column)."""
    if field_name == "panels":
        return [f"{p}_{i}" for i in range(slots) for p in PANEL_PARTS]
    if field_name in PER_PANEL:
        return [f"{PER_PANEL[field_name]}_{i}" for i in range(slots)]
    if field_name == "notice":
        return ["notice", "offer"]
    if field_name in ("truth", "clip_view"):
        return [field_name, f"{field_name}_column"]
    return [field_name]


def _panel_parts(i: int, s: PanelScreen | None) -> dict[str, dict]:
    if s is None:
        hide = {"visible": False}
        parts = {"column": hide, "title": {"value": ""}, "picture": {"value": ""}}
        parts |= {"stage": hide, "heads": hide, "klass": hide, "download": hide}
    else:
        parts = {
            "column": {"visible": True},
            "title": {"value": s.title},
            "picture": {"value": note_html(s.note) + s.html},
            # value and choices in one update, the value always one of the choices (or none)
            "stage": {"choices": s.stages, "value": s.stage if s.stages else None, "visible": bool(s.stages)},
            "heads": {"choices": s.heads, "value": s.head if s.heads else None, "visible": bool(s.heads)},
            "klass": {"choices": s.classes, "value": s.klass, "visible": bool(s.classes)},
            "download": _shown(s.download),
        }
    return {f"{k}_{i}": v for k, v in parts.items()}


def banner_html(message: str | None) -> str:
    """The banner over the results: why a comparison cannot be made (empty: no banner)."""
    if not message:
        return ""
    return f"<div class='mvt-banner' role='alert'><b>Cannot compare:</b> {html.escape(message)}</div>"


def note_html(message: str | None) -> str:
    """A model panel's note: what went wrong with a request to that model (empty: none)."""
    if not message:
        return ""
    return f"<div class='mvt-note-panel' role='alert'>{html.escape(message)}</div>"


def notice_html(notice: Notice | None) -> str:
    """The standing note over the results (empty: none)."""
    if notice is None:
        return ""
    return f"<div class='mvt-notice' role='status'>{html.escape(notice.text)}</div>"


def _shown(value: Any) -> dict:
    return {"value": str(value) if isinstance(value, Path) else value, "visible": value is not None}


def parts(screen: Screen, frames_html: Any) -> dict[str, dict]:
    """``screen``'s changes part by part: ``{part name: {"value", "visible", "choices"...}}`` (what a UI
    library's update takes). ``frames_html(sprite)`` is the ground-truth panel's markup."""
    out: dict[str, dict] = {}
    for name, value in screen.changes().items():
        if name == "panels":
            for i, s in enumerate(value):
                out.update(_panel_parts(i, s))
        elif name in PER_PANEL:
            out.update({f"{PER_PANEL[name]}_{i}": _shown(v) for i, v in enumerate(value) if v is not KEEP})
        elif name == "truth":
            out["truth_column"] = {"visible": value is not None}
            out["truth"] = {"value": "" if value is None else frames_html(value)}
        elif name == "clip_view":
            out["clip_view_column"] = {"visible": value is not None}
            out["clip_view"] = {"value": value or ""}
        elif name == "banner":
            out["banner"] = {"value": banner_html(value), "visible": bool(value)}
        elif name == "notice":
            out["notice"] = {"value": notice_html(value), "visible": value is not None}
            offer = value.offer if value is not None else None
            out["offer"] = {"value": offer or "", "visible": bool(offer)}
        elif name == "status":
            out[name] = {"value": f"<div class='mvt-status'>{html.escape(value)}</div>" if value else ""}
        elif name in ("figures_note", "faithfulness_note", "export_note", "clip_note"):
            out[name] = {"value": value or "", "visible": bool(value)}
        elif name == "examples":
            out[name] = {"sample_labels": list(value)}
        elif isinstance(value, Choices):
            out[name] = {
                **({} if value.value is KEEP else {"value": value.value}),
                **({} if value.choices is None else {"choices": value.choices}),
            }
        else:
            out[name] = {"value": str(value) if isinstance(value, Path) else value}
    return out


def asked(named: dict[str, Any]) -> dict[str, Any]:
    """An event's inputs (by part name) as an action takes them: the display controls (Show, opacity, colours,
    each panel's stage and heads) folded into ``controls``, a panel's class as ``klass``."""
    out = {k: v for k, v in named.items() if k not in DISPLAY and not k.startswith(("stage_", "heads_"))}
    for k in [k for k in out if k.startswith("klass_")]:
        out["klass"] = out.pop(k)
    if "show" in named:
        slots = sum(1 for k in named if k.startswith("stage_"))
        out["controls"] = Controls(
            named["show"],
            float(named["opacity"]),
            named["colormap"],
            tuple(named.get(f"stage_{i}") for i in range(slots)),
            tuple(named.get(f"heads_{i}") for i in range(slots)),
            bool(named.get("sinks", False)),
        )
    return out
