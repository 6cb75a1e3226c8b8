"""Ask a point of a result: where one spot of the clip looks in a model, and which times attend to which.

:func:`ask` takes a clip position (seconds, and x, y in the clip's pixels) through the model's own sampling
(:class:`viz.query.Sampling`: the window under that time, its frame times, the resize and the centre crop) to
the query token of a stage (:class:`viz.query.Geometry`), and returns a :class:`ModelQuery`: that token's
attention row as a :class:`~lens.core.records.Volume` on the key grid (painted with the keys' footprints), the
sentence naming the token, where to mark the point on the model's frames — or why the model did not see that
point (cropped away, outside its window). Nothing runs a model: the rows come from the captured maps (a
deferred map is computed once, on first use). :func:`frame_matrix` sums a stage's token matrix into time ×
time for the frame × frame figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import viz.query as Q
from mvt import get_spec

from ..core.records import ModelError, ModelResult, Volume
from ..core.request import ClipInfo, LensError

GeometryOf = Callable[[ModelResult], Q.Geometry]
"""How a caller gets (and keeps) the geometry of a result's output (a cache: it is walked once)."""


@dataclass(frozen=True)
class ClipPoint:
    """A position on a clip: ``t`` seconds from its first frame, ``x`` and ``y`` in its pixels (from the
    top-left corner; continuous: pixel ``i`` spans ``[i, i + 1)``)."""

    t: float
    x: float
    y: float

    @classmethod
    def parse(cls, text: str) -> ClipPoint:
        """``"T,X,Y"`` as typed on a command line."""
        try:
            t, x, y = (float(v) for v in str(text).split(","))
        except ValueError:
            raise LensError(f"a point is T,X,Y (seconds, pixels, pixels), not {text!r}") from None
        return cls(t, x, y)

    def check(self, clip: ClipInfo) -> ClipPoint:
        """This point, or a :class:`LensError` if it is not on the clip."""
        if not (0 <= self.x <= clip.width and 0 <= self.y <= clip.height):
            raise LensError(
                f"the point ({self.x:g}, {self.y:g}) is not on the {clip.width}×{clip.height} clip"
            )
        if self.t < 0 or (clip.duration_s and self.t > clip.duration_s + 1.0):
            raise LensError(f"{self.t:g} s is not in the clip ({clip.duration_s:.2f} s long)")
        return self


@dataclass(frozen=True)
class ModelQuery:
    """One model's answer to a point at one stage (0-based). ``seen``: the model saw the point; then
    ``volume`` is the query token's attention row on its key grid (``parts``: a spatial and a temporal row
    for factorised ViViT, else one), ``caption`` names the token, ``mark`` is where the point sits on the
    model's frames (x, y as fractions of the crop), ``box`` the token's footprint there (x0, y0, x1, y1;
    ``None`` for 1-D pooled tokens) and ``frames`` the model frames the token covers. Otherwise ``caption``
    says why (``reason``: ``"cropped"``, ``"window"`` or ``"pooled"``). ``window`` indexes
    ``result.windows`` (0 with one window)."""

    name: str
    point: ClipPoint
    stage: int
    seen: bool
    caption: str
    reason: str | None = None
    volume: Volume | None = None
    parts: dict[str, Volume] = field(default_factory=dict)
    tokens: tuple[Q.Token, ...] = ()
    prefix: dict[str, float] = field(default_factory=dict)
    mark: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    frames: tuple[int, ...] = ()
    window: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Query:
    """A point asked of an analysis: one :class:`ModelQuery` per entry (a model that failed stays its
    :class:`~lens.core.records.ModelError`)."""

    point: ClipPoint
    answers: tuple[ModelQuery | ModelError, ...]


def windows(result: ModelResult) -> list[ModelResult]:
    """The windows a result saw (one, unless the model read several)."""
    return list(getattr(result, "seen", None) or [result])


def sampling(result: ModelResult, clip: ClipInfo) -> Q.Sampling:
    """How ``result``'s model read ``clip``: its frame times, resize and centre crop."""
    spec = get_spec(result.name)
    crop = int(result.frames.shape[1])
    return Q.Sampling.of(result.times, (clip.height, clip.width), int(spec.resize_size or crop), crop)


def stage_of(geometry: Q.Geometry, stage: int | None) -> int:
    """A stage as asked (0-based; ``None``: the last; beyond the last: the last)."""
    stages = geometry.stages
    if not stages:
        raise LensError("this model captured no attention maps")
    return stages[-1] if stage is None else stages[min(max(int(stage), 0), len(stages) - 1)]


def _window_for(result: ModelResult, clip: ClipInfo, t: float) -> tuple[int, ModelResult, Q.Sampling]:
    seen = windows(result)
    samplings = [sampling(w, clip) for w in seen]
    inside = [i for i, s in enumerate(samplings) if s.frame_at(t) is not None]
    i = inside[0] if inside else min(range(len(seen)), key=lambda j: abs(samplings[j].times[0] - t))
    return i, seen[i], samplings[i]


def _grid(grid) -> str:
    return "×".join(str(int(g)) for g in grid)


def _where(tok: Q.Token) -> str:
    t, h, w = (int(p) + 1 for p in tok.position)
    if tok.span is not None:
        return f"pooled token {w} of {int(tok.grid[2])}, from patches {tok.span[0] + 1}–{tok.span[1]} (1-D)"
    if tok.grid[1] == 1 and tok.grid[2] == 1:
        return f"frame token (t {t}) of {int(tok.grid[0])}"
    pooled = tok.patches or (1, 1, 1)
    if pooled[1:] != (1, 1):
        what = f"pooled from {pooled[1]}×{pooled[2]} patches"
    else:
        what = f"one {_grid(tok.footprint.kernel)} patch" if tok.footprint else "one patch"
    return f"query (t {t}, y {h}, x {w}) of {_grid(tok.grid)}, {what}"


def token_caption(stage: int, tokens: tuple[Q.Token, ...], prefix: dict[str, float]) -> str:
    """ "stage 2 query (t 3, y 5, x 9) of 8×28×28, pooled from 4×4 patches" (1-based), what its rows are
    and the share its attention gives CLS."""
    text = f"Stage {stage + 1} {_where(tokens[0])}"
    kinds = [t.kind for t in tokens]
    if kinds == ["spatial", "temporal"]:
        text += ": its spatial row (its frame) plus its temporal row (its place over time)"
    elif kinds != ["joint"]:
        text += f": its {kinds[0]} row"
    text += f", block {tokens[-1].block + 1}."
    cls = max(prefix.values()) if prefix else 0.0
    return text + (f" CLS takes {100 * cls:.0f} % of its attention." if cls >= 0.005 else "")


def _outside(name: str, reason: str, s: Q.Sampling, stage: int) -> str:
    if reason == "cropped":
        return f"{name} did not see this point: its centre {s.crop}×{s.crop} crop cut it away."
    if reason == "window":
        a, b = s.span
        return f"{name} did not see this moment: it saw {a:.2f}–{b:.2f} s."
    return f"At stage {stage + 1} no token of {name} covers this point: its pooling windows drop that patch."


def ask(
    result: ModelResult,
    clip: ClipInfo,
    point: ClipPoint,
    geometry_of: GeometryOf,
    stage: int | None = None,
    head: str | int = "mean",
) -> ModelQuery:
    """Where ``point`` of ``clip`` looks in ``result`` at ``stage`` (see the module docstring)."""
    index, window, s = _window_for(result, clip, point.t)
    if window.output is None:
        raise LensError(f"{result.name} ran without attention capture: compare with attention to ask a point")
    geometry = geometry_of(window)
    st = stage_of(geometry, stage)
    on_input, reason = s.to_input(point.t, point.x, point.y)
    if on_input is None:
        return ModelQuery(
            result.name, point, st, False, _outside(result.name, reason, s, st), reason, window=index
        )
    answer = geometry.query(on_input, st)
    if answer.missing is not None:
        caption = _outside(result.name, "pooled", s, st)
        return ModelQuery(result.name, point, st, False, caption, "pooled", window=index)
    return _answered(result.name, point, st, answer, s, index, head)


def _answered(name, point, stage, answer, s, index, head) -> ModelQuery:
    f, y, x = answer.point
    tok = answer.tokens[0]
    box = None
    if tok.window is not None:
        (y0, y1), (x0, x1) = tok.window[1], tok.window[2]
        box = (x0 / s.crop, y0 / s.crop, x1 / s.crop, y1 / s.crop)
    notes = ()
    if head != "mean":
        notes = ("Per-head rows are kept for the CLS query only: this is the mean over heads.",)
    frames = len(s.times)
    return ModelQuery(
        name, point, stage, True, token_caption(stage, answer.tokens, answer.prefix),
        volume=Volume(answer.volume, answer.footprint),
        parts={k: Volume(*v) for k, v in answer.parts.items()},
        tokens=answer.tokens, prefix=dict(answer.prefix), mark=(x / s.crop, y / s.crop), box=box,
        frames=tuple(sorted(set(range(*tok.frames)) | {min(int(f), frames - 1)})),
        window=index, notes=notes,
    )  # fmt: skip


def frame_matrix(result: ModelResult, geometry_of: GeometryOf, stage: int | None = None) -> Q.FrameMatrix:
    """``result``'s frame × frame matrix at ``stage`` (its primary window; ``None``: the last stage)."""
    if result.output is None:
        raise LensError(f"{result.name} ran without attention capture")
    geometry = geometry_of(result)
    return geometry.frame_matrix(stage_of(geometry, stage))
