"""What each of the app's events does, as screens (:class:`~lens.ui.screens.Screen`).

:class:`Actions` holds the service and turns a person's input into service calls and their answers into
screens: Compare streams one screen per finished model, a display control redraws from the cache, a picked
class is explained by :meth:`lens.Service.explain_class`, the tabs get their figures, scores and zip. Every
failure is put where it belongs (a user's mistake in their own words, anything else as a short sentence,
never a traceback): the clip's or the request's in the banner, a model's in its panel, a tab's in that tab.
Nothing is raised into the UI library, so ``app.py`` holds no logic and no ``try``.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from ..core.records import Analysis, ModelResult
from ..core.request import MAX_MODELS, USER_ERRORS
from ..core.storage import file_sha256
from ..explain import methods as M
from ..explain import scoring
from ..render.overlays import stats_figure, token_grid_figures
from ..render.timeline import Url
from ..service.service import Service
from . import adding, asking, defaults, examples, present, uploads
from .screens import KEEP, AppState, Choices, Controls, PanelScreen, Screen

log = logging.getLogger("mvt-lens")

Progress = Callable[[float, str], None]


def failure(what: str, error: BaseException) -> str:
    """A failure as the person reads it: their own mistake as its sentence; anything else as a short message
    (logged with its traceback) — the app keeps serving."""
    if isinstance(error, USER_ERRORS):
        return str(error)
    log.error("%s failed: %s", what, "".join(traceback.format_exception(error)))
    return (
        f"{what} failed ({type(error).__name__}: {str(error)[:200]}). The app is still running: try another "
        "clip or fewer models."
    )


class Actions:
    """The app's events on ``service``: ``url`` turns a file the service wrote into what the browser loads;
    ``slots`` is how many model panels the page has."""

    def __init__(self, service: Service, url: Url, slots: int = MAX_MODELS) -> None:
        self.service, self.url, self.slots = service, url, slots
        self.added = adding.Added()
        self._asked: dict[str, tuple[float, float, float]] = {}
        """session → the clip point last asked of its comparison (so a view streaming in keeps it)."""

    def _pad(self, items: Sequence) -> tuple:
        return tuple(items[i] if i < len(items) else None for i in range(self.slots))

    # -- choosing models and a clip ------------------------------------------------------------------------

    def load(self) -> Screen:
        """Page load: every model with its weights' status (the network asked on the service's threads), the
        default set suggested (the page takes it unless the person chose models meanwhile: see
        :func:`lens.ui.defaults.take_suggested_js`), and the examples saying which need a download. The
        models chosen are left as they are: a slow network probe never undoes a choice."""
        pool = self.service.threads.pool("probe", 8)
        return Screen(
            models=Choices(KEEP, defaults.model_choices(probe=True, pool=pool)),
            suggested=defaults.default_set(),
            examples=examples.labels_here(),
        )

    def pick_set(self, name: str) -> Screen:
        """A model set chosen (or set by an example): its models."""
        if name == defaults.CUSTOM:
            return Screen()
        chosen = defaults.set_models(name)
        return Screen(models=Choices(chosen), notes="  \n".join(defaults.availability(chosen)))

    def pick_models(self, names: Sequence[str] | None) -> Screen:
        """Models picked by hand: which set that is, and a sentence for each that downloads or cannot run."""
        names = list(names or [])
        return Screen(model_set=defaults.set_of(names), notes="  \n".join(defaults.availability(names)))

    def _choices(self, session: str | None, probe: bool = False) -> list[tuple[str, str]]:
        """The picker's choices in ``session``: the registry's models and the session's own."""
        pool = self.service.threads.pool("probe", 8) if probe else None
        return defaults.model_choices(probe=probe, pool=pool, mine=self.added.names(session))

    def add(
        self,
        *,
        checkpoint: str | None = None,
        repo: str | None = None,
        class_names: str | None = None,
        models: Sequence[str] | None = None,
        session: str | None = None,
    ) -> Screen:
        """Add a model: an uploaded ``checkpoint`` (else the Hub ``repo`` typed), with ``class_names`` typed one a
        line for a file that names none, recognised and offered in this session's picker, chosen beside
        ``models``; what was recognised is said in the section — or what did not fit, and nothing is added."""
        try:
            spec, source = adding.add(
                self.service, self.service.session_dir(session), checkpoint=checkpoint, repo=repo, labels=class_names
            )  # fmt: skip
        except Exception as e:
            return Screen(added=adding.problem_html(failure("Adding the model", e)))
        self.added.add(session, spec.name, source)
        picked, fitted = adding.chosen(models, spec.name)
        return Screen(
            models=Choices(picked, self._choices(session)),
            model_set=defaults.set_of(picked),
            notes="  \n".join(defaults.availability(picked)),
            added=adding.recognised_html(spec, fitted),
        )

    def end(self, session: str | None) -> None:
        """A browser session ended: its files deleted, and the models it added that no other session holds
        dropped (built model, results, registration)."""
        self._asked.pop(session or "", None)
        for name, source in self.added.end(session).items():
            adding.drop(self.service, name, source)
        self.service.end_session(session)

    def upload(self, path: str | None, session: str | None) -> Screen:
        """A clip was uploaded: a playable preview when browsers cannot play it (GIF, HEVC, 10-bit…). A file
        that is not a usable video empties the clip box and says why in the banner, until the next good clip
        (Compare repeats the reason instead of asking for a clip)."""
        if not path:
            return Screen(upload=None, clip_note="")
        try:
            up = uploads.prepare(path, self.service.session_dir(session))
        except Exception as e:  # say why, and empty the clip box for the next try
            why = failure("Upload", e)
            return Screen(clip=None, upload={"failed": why}, banner=why, clip_note="")
        return Screen(
            clip=up.preview if up.preview else KEEP,
            upload={"sha": file_sha256(up.shown), "original": up.original},
            banner=None,
            clip_note=up.note,
        )

    # -- the comparison ------------------------------------------------------------------------------------

    def cleared(self, message: str | None) -> Screen:
        """Every result view emptied, tabs included (a comparison that could not start, or a new one), and
        why (``message`` in the banner; ``None``: no banner)."""
        empty = self._pad(())
        return Screen(
            status="", banner=message, notice=None, clip_view=None, state=None, timeline="", truth=None, panels=empty, summary=None,
            timings=None, strips=empty, grids=empty, stats=None, faithfulness=empty, faithfulness_table=[],
            export=None, matrices=empty, figures_note="", faithfulness_note="", export_note="",
        )  # fmt: skip

    def _refused(
        self, clip: str | None, upload: dict | None, names: list[str], session: str | None = None
    ) -> str | None:
        """Why a Compare must not start (``None``: it may): a model this page may not run (a spec string, or
        another session's checkpoint), the reason an upload failed (kept, not replaced by a request for a
        clip), or every chosen model unable to run here."""
        if stranger := adding.foreign(names, self.added.names(session)):
            return adding.foreign_message(stranger)
        if not clip and upload and upload.get("failed"):
            return upload["failed"]
        blocked = defaults.unavailable(names) if clip else {}
        if names and len(blocked) == len(names):
            why = "; ".join(f"{who}: {r}" for who, r in defaults.grouped(blocked))
            return (
                f"None of the chosen models can run here: their weights need a download ({why}). Pick the "
                "SynthMotion set (shipped with the app), or run `python -m mvt download` on a machine with "
                "internet and copy the cache over."
            )
        return None

    def compare(
        self,
        *,
        clip: str | None,
        models: Sequence[str] | None,
        controls: Controls,
        methods: Sequence[str] | None = (),
        upload: dict | None = None,
        start_s: str | float | None = None,
        int8: bool = False,
        every: bool = False,
        session: str | None = None,
        progress: Progress | None = None,
    ) -> Iterator[Screen]:
        """Compare: run every chosen model on the clip (evenly spaced windows over it; ``every``: every window);
        a screen as each panel is ready, showing its fast view (attention) when the method Show asks for is
        slower — each model's most faithful method for "most faithful" — which then streams in, panel by
        panel. What the panels do not show (full attention matrices: rollout, statistics, token grids) is
        computed in the background once every panel is out; :meth:`figures`, run after Compare, waits for it.
        The first screen empties every view of the previous clip (tabs too); a Compare that cannot start says
        why in the banner."""
        service, names = self.service, list(models or [])
        self._asked.pop(session or "", None)  # a new comparison: no point asked of it yet
        if refused := self._refused(clip, upload, names, session):
            yield self.cleared(refused)
            return
        downloads = [n for n in names if defaults.needs_weights(n)]
        try:
            job = service.analyse_iter(
                uploads.original(clip, upload),
                names,
                [*(methods or []), *controls.methods_for(names, gradients=not int8)],
                start_s=start_s,
                progress=progress,
                precision="int8" if int8 else "fp32",
                windows="all" if every else None,
                who=session,
            )
        except (
            Exception
        ) as e:  # a clip that cannot be read: clear the results, say why until the next Compare
            yield self.cleared(failure("Analysis", e))
            return
        yield from self._stream(job, controls, session, progress, downloads)

    def _stream(
        self, job, controls: Controls, session: str | None, progress: Progress | None, downloads: list[str]
    ) -> Iterator[Screen]:
        """Compare's screens: a pending panel per model, each panel's fast view as its model finishes, then each
        slower view in its place, then the timeline, ground truth, Show's choices and the tabs."""
        service, names = self.service, list(job.names)
        folder = service.session_dir(session)
        state = AppState(names=tuple(names), show=controls.show)
        panels: list = [None] * len(names)
        shown: list[PanelScreen] = [present.pending(n, i) for i, n in enumerate(names)]
        started = time.perf_counter()
        yield replace(self.cleared(None), state=replace(state, ref=job.ref()), panels=self._pad(shown))
        try:
            for i, _entry in job:
                panels[i], shown[i] = self._panel(job.analysis_of(i), i, controls, folder, fast=True)
                now, drawn = self._pointed(replace(state, ref=job.ref()), panels, shown, controls, session)
                yield Screen(state=now, timeline=present.timeline(panels, job.clip), panels=self._pad(drawn))
            analysis = job.analysis
            for i, entry in enumerate(analysis.entries):  # the slower views, streamed in after every fast one
                if isinstance(entry, ModelResult) and not present.ready_for(
                    entry, controls.display(entry.name)
                ):
                    service.complete(entry, controls.method_for(entry.name), progress, session)
                    one = Analysis(analysis.request.only(entry.name), [entry], [analysis.keys[i]])
                    panels[i], shown[i] = self._panel(one, i, controls, folder)
                    now, drawn = self._pointed(
                        replace(state, ref=job.ref()), panels, shown, controls, session
                    )
                    yield Screen(state=now, timeline=present.timeline(panels, analysis.clip), panels=self._pad(drawn))  # fmt: skip
            # Every panel is on screen: the full matrices (rollout, strips, statistics, token grids) are
            # computed in the background, not waited for here, so Compare is free for the next click.
            if deferred := [r for r in analysis.results if not r.ready]:
                service.warm(deferred)
            truth = present.truth(analysis.clip.sha256, panels, folder)
            final, shown = self._pointed(replace(state, ref=analysis.ref), panels, shown, controls, session)
            clip_view = asking.clip_view(service, analysis, final.query, folder, self.url)
        except Exception as e:
            yield Screen(banner=failure("Analysis", e))
            return
        failed = " ".join(e.message for e in analysis.errors) if not analysis.results else None
        yield Screen(
            status=present.done(analysis, time.perf_counter() - started),
            banner=failed,
            notice=present.synthetic_notice(analysis, defaults.set_status(defaults.KINETICS)),
            state=final,
            show=Choices(controls.show, present.show_choices(analysis.methods)),
            timeline=present.timeline(panels, analysis.clip),
            truth=truth,
            clip_view=clip_view,
            panels=self._pad(shown),
            summary=present.summary(analysis, panels, service.labels),
            timings=[[r.name, k, round(float(v), 3)] for r in analysis.results for k, v in r.timings.items()],
            **self._relabelled(names, downloads, session),
        )

    def _relabelled(self, names: list[str], downloaded: list[str], session: str | None = None) -> dict:
        """After a Compare that downloaded weights: every model's label as its weights stand now (``cached``
        instead of ``downloads 339 MB``), and the notes of the chosen ones."""
        if not downloaded:
            return {}
        return {
            "models": Choices(names, self._choices(session, probe=True)),
            "notes": "  \n".join(defaults.availability(names)),
        }

    def _pointed(
        self,
        state: AppState,
        panels: Sequence,
        shown: Sequence[PanelScreen],
        controls: Controls,
        session: str | None,
    ) -> tuple[AppState, list[PanelScreen]]:
        """``state`` and the panels' screens with the point asked while the comparison streams in (none asked:
        as they are), so a click during Compare is not undone by the next view; ``panels``: ``None`` for a
        model still running. A point that cannot be drawn yet leaves the panels as they are."""
        point = self._asked.get(session or "")
        if point is None:
            return state, list(shown)
        state = replace(state, query=point)
        try:
            analysis, displays = self.service.get(state.ref), controls.displays(state)
            query = asking.ask(self.service, analysis, point, displays)
            folder = self.service.session_dir(session)
            drawn = asking.queried(self.service, analysis, query, panels, shown, displays, folder, self.url)
        except Exception:  # drawn by the next view, or by the click's own answer
            log.warning("the point asked during Compare could not be drawn yet", exc_info=True)
            return state, list(shown)
        return state, drawn

    def _panel(self, analysis: Analysis, i: int, controls: Controls, folder, fast: bool = False):
        """(panel, its screen) of ``analysis``'s one model: Show's display, or (``fast``) the attention view
        while that display's volumes are still to be computed (its caption says what follows)."""
        entry = analysis.entries[0]
        display, note = controls.display(entry.name), ""
        if fast and isinstance(entry, ModelResult) and not present.ready_for(entry, display):
            label = M.get(display.method).label.split(" (")[0]
            note = f"{label}, the view this model leads with, follows: computing it…"
            display = replace(display, method="attention")
        panel = self.service.render(analysis, display, folder=folder, ready_only=True)[0]
        return panel, present.panel_screen(panel, i, self.url, self.service.labels(entry.name), follows=note)

    def _drawn(
        self,
        state: AppState,
        controls: Controls,
        session: str | None,
        notes: dict[int, str] | None = None,
        matrices: bool = True,
    ) -> Screen:
        analysis = self.service.get(state.ref)
        displays, folder = controls.displays(state), self.service.session_dir(session)
        panels = self.service.render(analysis, displays, folder=folder)
        notes = notes or {}
        labels = self.service.labels
        shown = [
            present.panel_screen(p, i, self.url, labels(p.name), notes.get(i)) for i, p in enumerate(panels)
        ]
        if state.query is not None:
            query = asking.ask(self.service, analysis, state.query, displays)
            shown = asking.queried(self.service, analysis, query, panels, shown, displays, folder, self.url)
        return Screen(
            state=state,
            timeline=present.timeline(panels, analysis.clip),
            panels=self._pad(shown),
            summary=present.summary(analysis, panels, labels),
            clip_view=asking.clip_view(self.service, analysis, state.query, folder, self.url),
            matrices=self._pad(asking.matrices(self.service, analysis, displays, wait=False)) if matrices else KEEP,
        )  # fmt: skip

    def redraw(self, *, state: AppState | None, controls: Controls, session: str | None = None) -> Screen:
        """Any display control (Show, opacity, colours, sink keys, a panel's stage or heads): drawn from the
        cache."""
        if state is None or state.ref is None:
            return Screen()
        try:
            return self._drawn(state.showing(controls.show), controls, session)
        except Exception as e:
            return Screen(banner=failure("Rendering", e))

    def ask(
        self, *, state: AppState | None, controls: Controls, query: str | None, session: str | None = None
    ) -> Screen:
        """A click on a picture (``query``: what ``timeline.js`` sent; empty or ``{"clear": 1}``: back to the CLS
        view): every panel shows where that clip point looks at its stage, from the cached maps."""
        if state is None or state.ref is None:
            return Screen()
        try:
            click = asking.parse(query)
            point = None if click is None else asking.clip_point(click, self.service.get(state.ref))
            if point is None:
                self._asked.pop(session or "", None)
            else:
                self._asked[session or ""] = point
            return self._drawn(replace(state, query=point), controls, session, matrices=False)
        except Exception as e:
            return Screen(banner=failure("Asking a point", e))

    def explain(
        self,
        *,
        index: int,
        state: AppState | None,
        klass: str | None,
        controls: Controls,
        session: str | None = None,
        progress: Progress | None = None,
    ) -> Screen:
        """A class picked (or typed) in panel ``index``: that model run again to explain it, with the shown
        method when it depends on the class, else gradient-weighted rollout — and Show then names that method.
        The class the panel already explains (a control opened and closed) changes nothing; a label that is
        not one of the model's classes is said in that panel, which keeps its picture."""
        if state is None or state.ref is None or index >= len(state.names) or not klass:
            return Screen()
        try:
            analysis = self.service.get(state.ref)
            entry = analysis.entries[index]
            if entry.error or klass == present.target_label(entry, self.service.labels(entry.name)):
                return Screen()
            method = present.class_method(controls.method_for(entry.name, state.method_of(index)))
            explained = self.service.explain_class(
                state.ref, index, klass, method, progress=progress, who=session
            )
        except USER_ERRORS as e:
            return self._noted(state, controls, session, index, str(e))
        except Exception as e:
            return self._noted(state, controls, session, index, failure("Explaining", e))
        new = state.explained(index, method, explained.ref, klass)
        drawn = self._drawn(new, replace(controls, show=method), session)
        return replace(drawn, show=Choices(method, present.show_choices([*explained.methods, method])))

    def _noted(
        self, state: AppState, controls: Controls, session: str | None, index: int, note: str
    ) -> Screen:
        """The panels as they were (what ``state`` shows), with ``note`` in panel ``index``."""
        try:
            return self._drawn(state, replace(controls, show=state.show), session, notes={index: note})
        except Exception as e:
            return Screen(banner=failure("Rendering", e))

    # -- the tabs ------------------------------------------------------------------------------------------

    def figures(self, *, state: AppState | None, controls: Controls, session: str | None = None) -> Screen:
        """After Compare: the all-stages strips, token-grid and attention-statistics figures."""
        if state is None or state.ref is None:
            return Screen(strips=self._pad(()), grids=self._pad(()), stats=None, matrices=self._pad(()))
        try:
            analysis = self.service.get(state.ref)
            panels = self.service.render(analysis, controls.display())
            strips = [p.strip for p in panels if p.result is not None and p.strip is not None]
            return Screen(
                strips=self._pad(strips),
                grids=self._pad(token_grid_figures(analysis.results)),
                stats=stats_figure(analysis.results),
                figures_note="",
                matrices=self._pad(
                    asking.matrices(self.service, analysis, controls.displays(state), wait=True)
                ),
            )
        except Exception as e:
            return Screen(figures_note=failure("Figures", e))

    def export(self, *, state: AppState | None, controls: Controls, session: str | None = None) -> Screen:
        """A zip with overlay mp4s, volumes (.npz), report.json and report.html; each panel's overlay and
        record as the panel shows it (its method and the class it explains)."""
        try:
            analysis = self.service.get(state.ref if state is not None else None)
            folder = self.service.session_dir(session)
            displays = controls.displays(state) if state is not None else controls.display()
            return Screen(
                export=self.service.export(
                    analysis, display=displays, folder=folder, point=state.query if state else None
                ),
                export_note="",
            )
        except Exception as e:
            return Screen(export=None, export_note=failure("Export", e))

    def faithfulness(
        self,
        *,
        state: AppState | None,
        steps: int = 8,
        session: str | None = None,
        progress: Progress | None = None,
    ) -> Screen:
        """Deletion / insertion curves of every computed method (plus random and centre), each row naming the
        class it explains and marking the method its panel shows."""
        try:
            analysis = self.service.get(state.ref if state is not None else None)
            scores = self.service.faithfulness(analysis, steps=int(steps), progress=progress, who=session)
        except Exception as e:
            return Screen(faithfulness_note=failure("Faithfulness", e))
        figs = [scoring.figure(name, s) for name, s in scores.items()]
        rows = present.faithfulness_rows(scores, analysis, state, self.service.labels)
        return Screen(faithfulness=self._pad(figs), faithfulness_table=rows, faithfulness_note="")
