"""The records a request's answer is made of: explanation volumes, per-model results and errors, analyses.

Plain dataclasses (no behaviour beyond small derived properties) so the app, the CLI, the report and
tests can read them without knowing how they were computed. The request itself is :mod:`lens.core.request`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, replace

import numpy as np

import viz
from mvt.outputs import Footprint, ModelOutput

from .request import ClipInfo, Request, ResultKey
from .windows import Coverage


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

    def painted(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The volume on the input's ``(T, H, W)`` pixels: float32 (its footprint paints the grid)."""
        if self.values.shape == tuple(shape):
            return self.values.astype(np.float32, copy=False)
        return viz.to_frames(self.values, shape, footprint=self.footprint)


class _Pending:
    """One deferred computation of a :class:`Volumes`: it makes the volumes of ``keys`` (once)."""

    def __init__(
        self, label: str, keys: tuple[VolumeKey, ...], make: Callable[[], Mapping[VolumeKey, Volume]]
    ):
        self.label, self.keys, self.make = label, keys, make
        self.lock = threading.Lock()
        self.done = False


class Volumes(MutableMapping[VolumeKey, Volume]):
    """A result's explanation volumes by key; some may be *pending*: named now, computed on first read.

    Reading a pending volume (``volumes[key]``, ``.values()``, ``.items()``) computes it (thread-safe: one
    computation however many readers; the others wait) and keeps it. Iteration yields every key, computed or
    pending, in the order they were added, so a picture lists the same rows whether or not they are ready;
    :meth:`ready` / :meth:`pending` tell them apart without computing anything. ``on_done(label, seconds)``
    is told how long each deferred computation took.
    """

    def __init__(
        self,
        items: Mapping[VolumeKey, Volume] | None = None,
        on_done: Callable[[str, float], None] | None = None,
    ) -> None:
        self._items: dict[VolumeKey, Volume | _Pending] = dict(items or {})
        self.on_done = on_done

    def defer(
        self, label: str, keys: tuple[VolumeKey, ...], make: Callable[[], Mapping[VolumeKey, Volume]]
    ) -> None:
        """Name ``keys`` now; ``make()`` computes their volumes when one of them is first read."""
        job = _Pending(label, tuple(keys), make)
        for k in job.keys:
            self._items[k] = job

    def _run(self, job: _Pending) -> None:
        with job.lock:
            if job.done:
                return
            t = time.perf_counter()
            made = job.make()
            missing = set(job.keys) - set(made)
            if missing:
                raise RuntimeError(f"{job.label} did not make {sorted(k.slug for k in missing)}")
            for k in job.keys:
                self._items[k] = made[k]
            job.done = True
            if self.on_done is not None:
                self.on_done(job.label, time.perf_counter() - t)

    def __getitem__(self, key: VolumeKey) -> Volume:
        value = self._items[key]
        if isinstance(value, _Pending):
            self._run(value)
            value = self._items[key]
        return value  # type: ignore[return-value]

    def __setitem__(self, key: VolumeKey, value: Volume) -> None:
        self._items[key] = value

    def __delitem__(self, key: VolumeKey) -> None:
        del self._items[key]

    def __iter__(self) -> Iterator[VolumeKey]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def ready(self, key: VolumeKey) -> bool:
        """Whether ``key``'s volume is computed (reading it costs nothing)."""
        return not isinstance(self._items[key], _Pending)

    def pending(self) -> list[VolumeKey]:
        """The keys whose volumes are not computed yet, in order."""
        return [k for k, v in self._items.items() if isinstance(v, _Pending)]

    def compute_all(self) -> Volumes:
        """Compute every pending volume now; returns self."""
        for k in self.pending():
            _ = self[k]
        return self

    def __repr__(self) -> str:
        state = ", ".join(f"{k.slug}{'' if self.ready(k) else ' (pending)'}" for k in self._items)
        return f"Volumes({state})"


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
    """``forward_with_attention``'s record; ``None`` when no explanation was asked for (fast path). Its maps
    may hold deferred head means (``Capture.LAZY``): they are computed on first read, or all at once by
    :meth:`full_output` / :meth:`materialise`."""
    volumes: Volumes = field(default_factory=Volumes)
    """The explanation volumes; pending ones (rollout) are computed on first read (see :class:`Volumes`)."""
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    precision: str = "fp32"
    """``"fp32"`` (the model as trained) or ``"int8"`` (linear layers int8-quantised: approximate)."""
    windows: list[ModelResult] = field(default_factory=list)
    """Every window the model saw, in time order, each a result of its own (its frames, times, output,
    volumes and its own top-5; explaining this result's ``target``). Empty: one window, this result. With
    several, this result's own frames, output and volumes are those of its :attr:`primary` window (what
    faithfulness, token grids and statistics read) and its ``top5`` the windows' mean prediction."""
    coverage: Coverage | None = None
    """Which part of the clip the windows cover (``None``: not known, e.g. a dataset row)."""

    def __post_init__(self) -> None:
        if not isinstance(self.volumes, Volumes):
            self.volumes = Volumes(self.volumes)
        self.volumes.on_done = self._add_timing
        self._timing_lock = threading.Lock()

    def __getstate__(self) -> dict:
        """Picklable once nothing is pending (a result may come back from a worker process)."""
        state = dict(self.__dict__)
        state.pop("_timing_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._timing_lock = threading.Lock()

    def _add_timing(self, label: str, seconds: float) -> None:
        """Record a deferred step's time. Copy-on-write: a reader iterating ``timings`` (the app's table, an
        export) while a background task finishes never sees the dict change under it."""
        with self._timing_lock:
            self.timings = {**self.timings, label: float(seconds)}

    @property
    def error(self) -> None:
        return None

    @property
    def seen(self) -> list[ModelResult]:
        """The windows the model saw (this result alone when it has one window)."""
        return self.windows or [self]

    @property
    def primary(self) -> int:
        """Index in :attr:`seen` of the window this result's own frames and volumes are (nearest the middle)."""
        return next((i for i, w in enumerate(self.seen) if w is self or w.frames is self.frames), 0)

    @property
    def ready(self) -> bool:
        """Whether everything is computed: every map's head mean and every volume (nothing left to wait for)."""
        maps_ready = all(w.output is None or w.output.probs_ready for w in self.seen)
        return maps_ready and not any(w.volumes.pending() for w in self.seen)

    def full_output(self) -> ModelOutput | None:
        """The output with every map's head-mean matrix computed (blocks until done; thread-safe, computed
        once whoever asks first: a reader, or the service's background task)."""
        if self.output is not None and not self.output.probs_ready:
            t = time.perf_counter()
            self.output.materialise()
            if "attention matrices (deferred)" not in self.timings:
                self._add_timing("attention matrices (deferred)", time.perf_counter() - t)
        return self.output

    def materialise(self) -> ModelResult:
        """Compute everything still deferred (the maps' head means, then pending volumes) in every window;
        returns self."""
        for w in self.seen:
            w.full_output()
            w.volumes.compute_all()
        return self


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

    request: Request
    keys: tuple[ResultKey | None, ...]
    errors: tuple[ModelError | None, ...]


@dataclass
class Analysis:
    """Several models on one clip, as ``request`` asked: one entry per model, in its order, a result or an
    error; ``keys`` the cache key of each result (``None`` for errors; default: the request's)."""

    request: Request
    entries: list[ModelResult | ModelError]
    keys: list[ResultKey | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = [
                self.request.key(e.name) if isinstance(e, ModelResult) else None for e in self.entries
            ]

    @property
    def clip(self) -> ClipInfo:
        return self.request.clip

    @property
    def start_s(self) -> float | None:
        return self.request.start_s

    @property
    def methods(self) -> tuple[str, ...]:
        return self.request.methods

    @property
    def target(self) -> int | None:
        return self.request.target

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
        return Analysis(replace(self.request, methods=methods), entries, keys)

    @property
    def ref(self) -> AnalysisRef:
        return AnalysisRef(
            request=self.request,
            keys=tuple(self.keys),
            errors=tuple(e if isinstance(e, ModelError) else None for e in self.entries),
        )
