"""What each of the app's events does, as screens (:class:`~lens.ui.screens.Screen`).

:class:`Actions` holds the service and turns a person's input into service calls and their answers into
screens: Compare streams one screen per finished model, a display control redraws from the cache, a picked
class is explained by :meth:`lens.Service.explain_class`, the tabs get their figures, scores and zip. Every
failure becomes a screen's ``error`` (a user's mistake in their own words, anything else as a short sentence,
never a traceback), so ``app.py`` holds no logic and no ``try``.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from ..core.request import MAX_MODELS, USER_ERRORS
from ..core.storage import file_sha256
from ..explain import scoring
from ..explain.methods import choices_of
from ..render.overlays import stats_figure, token_grid_figures
from ..render.timeline import Url
from ..service.service import Service
from . import asking, defaults, present, uploads
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

    def _pad(self, items: Sequence) -> tuple:
        return tuple(items[i] if i < len(items) else None for i in range(self.slots))

    # -- choosing models and a clip ------------------------------------------------------------------------

    def load(self) -> Screen:
        """Page load: every model with its weights' status (the network asked on the service's threads), and
        the default set."""
        chosen = defaults.set_models(defaults.default_set())
        pool = self.service.threads.pool("probe", 8)
        return Screen(
            models=Choices(chosen, defaults.model_choices(probe=True, pool=pool)),
            model_set=defaults.set_of(chosen),
            notes="  \n".join(defaults.availability(chosen)),
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

    def upload(self, path: str | None, session: str | None) -> Screen:
        """A clip was uploaded: a playable preview when browsers cannot play it (GIF, HEVC, 10-bit…)."""
        if not path:
            return Screen(upload=None, banner=None)
        try:
            up = uploads.prepare(path, self.service.session_dir(session))
        except USER_ERRORS as e:  # say why, and empty the clip box for the next try
            return Screen(clip=None, upload=None, banner=str(e))
        except Exception as e:
            return Screen(error=failure("Upload", e))
        return Screen(
            clip=up.preview if up.preview else KEEP,
            upload={"sha": file_sha256(up.shown), "original": up.original},
            banner=None,
            info=up.note or None,
        )

    # -- the comparison ------------------------------------------------------------------------------------

    def cleared(self, message: str) -> Screen:
        """Every result view emptied, and why (a comparison that could not start)."""
        empty = self._pad(())
        return Screen(
            error=message, banner=message, state=None, timeline="", truth=None, clip_view=None,
            panels=empty, summary=None, timings=None,
        )  # fmt: skip

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
        session: str | None = None,
        progress: Progress | None = None,
    ) -> Iterator[Screen]:
        """Compare: run every chosen model on the clip; a screen as each panel is ready. What the panels do
        not show (full attention matrices: rollout, statistics, token grids) is computed in the background
        once every panel is out; :meth:`figures`, run after Compare, waits for it."""
        service, names = self.service, list(models or [])
        try:
            job = service.analyse_iter(
                uploads.original(clip, upload),
                names,
                [*(methods or []), controls.show],
                start_s=start_s,
                progress=progress,
                precision="int8" if int8 else "fp32",
            )
        except (
            Exception
        ) as e:  # a clip that cannot be read: clear the results, say why until the next Compare
            yield self.cleared(failure("Analysis", e))
            return
        folder = service.session_dir(session)
        display = controls.display()
        state = AppState(names=tuple(names), show=controls.show)
        panels: list = [None] * len(names)
        shown: list[PanelScreen] = [present.pending(n, i) for i, n in enumerate(names)]
        yield Screen(
            state=replace(state, ref=job.ref()), banner=None, timeline="", truth=None, clip_view=None,
            panels=self._pad(shown), summary=None, timings=None,
        )  # fmt: skip
        try:
            for i, entry in job:
                panels[i] = service.render(job.analysis_of(i), display, folder=folder, ready_only=True)[0]
                shown[i] = present.panel_screen(panels[i], i, self.url, service.labels(entry.name))
                line = present.timeline(panels, job.clip)
                yield Screen(state=replace(state, ref=job.ref()), timeline=line, panels=self._pad(shown))
            analysis = job.analysis
            # Every panel is on screen: the full matrices (rollout, strips, statistics, token grids) are
            # computed in the background, not waited for here, so Compare is free for the next click.
            if deferred := [r for r in analysis.results if not r.ready]:
                service.warm(deferred)
            truth = present.truth(analysis.clip.sha256, panels, folder)
            clip_view = asking.clip_view(service, analysis, None, folder, self.url)
        except Exception as e:
            yield Screen(error=failure("Analysis", e))
            return
        failed = " ".join(e.message for e in analysis.errors) if not analysis.results else None
        yield Screen(
            error=failed,
            banner=failed,
            state=replace(state, ref=analysis.ref),
            show=Choices(controls.show, choices_of(analysis.methods)),
            timeline=present.timeline(panels, analysis.clip),
            truth=truth,
            clip_view=clip_view,
            panels=self._pad(shown),
            summary=present.summary(analysis, panels),
            timings=[[r.name, k, round(float(v), 3)] for r in analysis.results for k, v in r.timings.items()],
        )

    def _drawn(
        self, state: AppState, controls: Controls, session: str | None, matrices: bool = True
    ) -> Screen:
        analysis = self.service.get(state.ref)
        displays, folder = controls.displays(state), self.service.session_dir(session)
        panels = self.service.render(analysis, displays, folder=folder)
        shown = [
            present.panel_screen(p, i, self.url, self.service.labels(p.name)) for i, p in enumerate(panels)
        ]
        if state.query is not None:
            query = asking.ask(self.service, analysis, state.query, displays)
            shown = asking.queried(self.service, analysis, query, panels, shown, displays, folder, self.url)
        return Screen(
            state=state, timeline=present.timeline(panels, analysis.clip), panels=self._pad(shown),
            clip_view=asking.clip_view(self.service, analysis, state.query, folder, self.url),
            matrices=self._pad(asking.matrices(self.service, analysis, displays, wait=False)) if matrices else KEEP,
        )  # fmt: skip

    def redraw(self, *, state: AppState | None, controls: Controls, session: str | None = None) -> Screen:
        """Any display control (Show, opacity, colours, a panel's stage or heads): drawn from the cache."""
        if state is None or state.ref is None:
            return Screen()
        try:
            return self._drawn(state.showing(controls.show), controls, session)
        except Exception as e:
            return Screen(error=failure("Rendering", e))

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
            return self._drawn(replace(state, query=point), controls, session, matrices=False)
        except Exception as e:
            return Screen(error=failure("Asking a point", e))

    def explain(
        self,
        *,
        index: int,
        state: AppState | None,
        klass: str,
        controls: Controls,
        session: str | None = None,
        progress: Progress | None = None,
    ) -> Screen:
        """A class picked (or typed) in panel ``index``: that model run again to explain it."""
        if state is None or state.ref is None or index >= len(state.names):
            return Screen()
        method = present.class_method(controls.show)
        try:
            analysis = self.service.explain_class(state.ref, index, klass, method, progress=progress)
            return self._drawn(state.explained(index, method, analysis.ref), controls, session)
        except Exception as e:
            return Screen(error=failure("Explaining", e))

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
                matrices=self._pad(
                    asking.matrices(self.service, analysis, controls.displays(state), wait=True)
                ),
            )
        except Exception as e:
            return Screen(error=failure("Figures", e))

    def export(self, *, state: AppState | None, controls: Controls, session: str | None = None) -> Screen:
        """A zip with overlay mp4s, volumes (.npz), report.json and report.html."""
        try:
            analysis = self.service.get(state.ref if state is not None else None)
            folder = self.service.session_dir(session)
            return Screen(export=self.service.export(analysis, display=controls.display(), folder=folder))
        except Exception as e:
            return Screen(error=failure("Export", e))

    def faithfulness(
        self,
        *,
        state: AppState | None,
        steps: int = 8,
        session: str | None = None,
        progress: Progress | None = None,
    ) -> Screen:
        """Deletion / insertion curves of every computed method (plus random and centre)."""
        try:
            analysis = self.service.get(state.ref if state is not None else None)
            scores = self.service.faithfulness(analysis, steps=int(steps), progress=progress)
        except Exception as e:
            return Screen(error=failure("Faithfulness", e))
        figs = [scoring.figure(name, s) for name, s in scores.items()]
        return Screen(faithfulness=self._pad(figs), faithfulness_table=scoring.table(scores))
