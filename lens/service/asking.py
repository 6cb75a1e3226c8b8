"""Asking a point of an analysis (:class:`PointQueries`, part of :class:`lens.service.Service`): where a clip point
looks in every model, stage by stage, and each model's frame × frame matrices — from the cached maps, never a
model re-run (:mod:`lens.explain.query`, :mod:`viz.query`)."""

from __future__ import annotations

from collections.abc import Sequence

from viz.query import FrameMatrix, Geometry

from ..core.cache import ResultCache
from ..core.records import Analysis, ModelError, ModelResult
from ..explain import query as Q
from ..files.queries import Asked


class PointQueries:
    """The point-asking operations of the service; ``geometries`` caches each output's walked geometry."""

    geometries: ResultCache[int, Geometry]

    def geometry(self, result: ModelResult) -> Geometry:
        """The :class:`viz.query.Geometry` of ``result``'s output: walked once, kept while it is used."""
        geo = self.geometries.get(id(result.output))
        if geo is None or geo.output is not result.output:
            geo = Geometry(result.output)
            self.geometries.put(id(result.output), geo)
        return geo

    def query(
        self,
        analysis: Analysis,
        t: float,
        x: float,
        y: float,
        *,
        stage: int | None | Sequence[int | None] = None,
        head: str | int = "mean",
    ) -> Q.Query:
        """Where the clip point (``t`` s; ``x``, ``y`` in the clip's pixels) looks in every model of
        ``analysis`` at ``stage`` (0-based, one for all or one per entry; ``None``: the last): a
        :class:`lens.explain.query.Query` of each model's attention row volumes, from the cached maps (never
        a model re-run; a deferred map is computed once). ``head``: rows exist for the mean over heads."""
        point = Q.ClipPoint(float(t), float(x), float(y)).check(analysis.clip)
        stages = [stage] * len(analysis.entries) if stage is None or isinstance(stage, int) else list(stage)
        answers = [
            e if isinstance(e, ModelError) else Q.ask(e, analysis.clip, point, self.geometry, s, head)
            for e, s in zip(analysis.entries, stages)
        ]
        return Q.Query(point, tuple(answers))

    def frame_matrices(
        self, analysis: Analysis, stage: int | None | Sequence[int | None] = None
    ) -> list[FrameMatrix | None]:
        """Each model's frame × frame matrix (:class:`viz.query.FrameMatrix`) at ``stage`` (as
        :meth:`query` takes it); ``None`` for a model that failed."""
        stages = [stage] * len(analysis.entries) if stage is None or isinstance(stage, int) else list(stage)
        return [
            None if isinstance(e, ModelError) else Q.frame_matrix(e, self.geometry, s)
            for e, s in zip(analysis.entries, stages)
        ]

    def ask_all(self, analysis: Analysis, t: float, x: float, y: float) -> Asked:
        """The point asked at every stage of every model, with every model's frame × frame matrices (what an
        export holds: :mod:`lens.files.queries`)."""
        depth = max(
            (len(self.geometry(r).stages) for r in analysis.results if r.output is not None), default=1
        )
        by_stage = tuple(self.query(analysis, t, x, y, stage=k) for k in range(depth))
        matrices = {
            r.name: [Q.frame_matrix(r, self.geometry, k) for k in range(len(self.geometry(r).stages))]
            for r in analysis.results
            if r.output is not None
        }
        return Asked(by_stage[0].point, by_stage, matrices)
