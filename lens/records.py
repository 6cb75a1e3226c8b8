"""The records the service passes around: clips, volumes, per-model results, analyses, views.

Plain dataclasses (no behaviour beyond small derived properties) so the app, the CLI, the report and
tests can read them without knowing how they were computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mvt.outputs import Footprint, ModelOutput


class LensError(ValueError):
    """A request the service cannot serve; the message says what to do (shown to the user as is)."""


@dataclass(frozen=True)
class VolumeKey:
    """Names one explanation volume of a result: a method and, for per-stage methods, a stage (0-based)."""

    method: str
    stage: int | None = None

    @property
    def slug(self) -> str:
        """File-name and array-name safe form (``attention_2``, ``rollout``); written, never parsed."""
        return self.method if self.stage is None else f"{self.method}_{self.stage}"


@dataclass(frozen=True)
class Volume:
    """An explanation on its grid: ``values`` float32 (t, h, w); ``footprint`` paints the grid onto the
    model input (``None``: the values are already at the input's resolution)."""

    values: np.ndarray
    footprint: Footprint | None = None


@dataclass(frozen=True)
class ClipInfo:
    """Which clip was analysed: its file name, content hash and what the container says."""

    name: str
    sha256: str
    duration_s: float
    fps: float
    width: int
    height: int
    path: str = field(default="", compare=False)
    """Where the file was read from (for re-running a model on it later; not part of ``report.json``)."""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "duration_s": round(float(self.duration_s), 6),
            "fps": round(float(self.fps), 6),
            "width": int(self.width),
            "height": int(self.height),
        }


@dataclass(frozen=True)
class ResultKey:
    """What a cached :class:`ModelResult` depends on: clip content, model, start, methods, target, options."""

    clip_sha256: str
    model: str
    start_s: float | None
    methods: tuple[str, ...]
    target: int | None
    options: tuple = ()


@dataclass
class ModelResult:
    """One model's analysis of one clip: predictions, the frames it saw, and a volume per explanation."""

    name: str
    description: str
    trained: bool
    frames: np.ndarray
    """uint8 (T, S, S, 3): exactly the crop the model saw (before normalisation)."""
    times: np.ndarray
    """float64 (T,): the clip time (seconds) of each frame the model saw."""
    fps: float
    """Frame rate of the frames the model saw (the clip's rate divided by the model's frame stride)."""
    top5: list[tuple[str, float]]
    target: int
    """The class the gradient methods explain (the prediction unless a target was asked for)."""
    output: ModelOutput | None
    """``forward_with_attention``'s record; ``None`` when no explanation was asked for (fast path)."""
    volumes: dict[VolumeKey, Volume] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def error(self) -> None:
        return None


@dataclass(frozen=True)
class ModelError:
    """A model that could not be run on the clip: its panel shows ``message`` instead of results."""

    name: str
    message: str
    pending: bool = False
    """Not a failure: the model has not finished yet (a handle taken while a comparison streams)."""

    @property
    def error(self) -> str:
        return self.message


@dataclass(frozen=True)
class AnalysisRef:
    """A small handle on an :class:`Analysis` (what a UI session keeps): the results stay in the service's
    cache, so a session does not pin hundreds of MB of attention maps."""

    clip: ClipInfo
    start_s: float | None
    methods: tuple[str, ...]
    target: int | None
    keys: tuple[ResultKey | None, ...]
    errors: tuple[ModelError | None, ...]


@dataclass
class Analysis:
    """Several models on one clip: one entry per model, in the order asked, a result or an error."""

    clip: ClipInfo
    start_s: float | None
    methods: tuple[str, ...]
    target: int | None
    entries: list[ModelResult | ModelError]
    keys: list[ResultKey | None] = field(default_factory=list)
    """The cache key of each result (``None`` for errors); filled from the other fields when not given."""

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = [
                ResultKey(self.clip.sha256, e.name, self.start_s, self.methods, self.target)
                if isinstance(e, ModelResult)
                else None
                for e in self.entries
            ]

    @property
    def results(self) -> list[ModelResult]:
        return [e for e in self.entries if isinstance(e, ModelResult)]

    @property
    def errors(self) -> list[ModelError]:
        return [e for e in self.entries if isinstance(e, ModelError)]

    def with_entry(self, index: int, entry: ModelResult | ModelError, key: ResultKey | None) -> Analysis:
        """This analysis with entry ``index`` replaced (e.g. one model re-run for another class); its
        methods join the analysis's."""
        entries, keys = list(self.entries), list(self.keys)
        entries[index], keys[index] = entry, key if isinstance(entry, ModelResult) else None
        methods = tuple(dict.fromkeys(self.methods + (key.methods if key is not None else ())))
        return Analysis(self.clip, self.start_s, methods, self.target, entries, keys)

    @property
    def ref(self) -> AnalysisRef:
        return AnalysisRef(
            clip=self.clip,
            start_s=self.start_s,
            methods=self.methods,
            target=self.target,
            keys=tuple(self.keys),
            errors=tuple(e if isinstance(e, ModelError) else None for e in self.entries),
        )


HEADS = ("mean", "max")


@dataclass(frozen=True)
class View:
    """How to draw a result: which explanation (``method``; ``stage`` 0-based for per-stage methods,
    ``None`` = the last stage), which heads (``"mean"``, ``"max"`` or a 0-based head index), and the colours
    (a ``viz.COLORMAPS`` name and the opacity of the heat over the frames)."""

    method: str = "attention"
    stage: int | None = None
    head: str | int = "mean"
    colormap: str = "inferno"
    opacity: float = 0.8

    @classmethod
    def from_controls(cls, method: str, stage: float | None, head: str, **kw) -> View:
        """The app's controls: ``stage`` as shown (1-based), ``head`` as a label (``"mean"``, ``"max"``,
        ``"head 3"``)."""
        s = None if stage in (None, "") else max(int(stage) - 1, 0)
        if head in HEADS:
            h: str | int = head
        else:
            try:
                h = int(str(head).split()[-1]) - 1
            except ValueError:
                raise LensError(f"unknown heads choice {head!r}: use mean, max or 'head N'") from None
        return cls(method=method, stage=s, head=h, **kw)


DEFAULT_VIEW = View()
"""The head-mean attention of the last stage, inferno, hot pixels at 80 % opacity."""


def head_labels(max_heads: int = 8) -> list[str]:
    """The head choices as the app shows them: mean, max, head 1 … head ``max_heads``."""
    return [*HEADS, *(f"head {i}" for i in range(1, max_heads + 1))]
