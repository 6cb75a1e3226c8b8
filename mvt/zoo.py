"""The model registry: architectures by name, and a table of pretrained specs keyed ``arch.tag``.

Family modules (``mvt/models/*.py``) call :func:`register_arch` and :func:`register_pretrained` when
imported; ``mvt.models`` imports them all. Every architecture also gets an ``arch.untrained`` entry built
with no weights (its spec says ``trained=False``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from . import licences
from . import weights as _weights
from .weights import WeightsError, WeightsSource


@dataclass(frozen=True)
class ModelSpec:
    """Everything a caller needs to feed a model and describe its weights honestly.

    ``mean``/``std`` are applied to frames scaled to [0, 1]; ``mean = std = 0.5`` gives inputs in [-1, 1]
    (ViViT's scenic pipeline). ``resize_size`` is the short side before the centre crop of ``crop_size``.
    """

    name: str
    arch: str
    tag: str
    num_frames: int
    frame_stride: int
    crop_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    label_set: str
    weights: WeightsSource = field(default_factory=WeightsSource)
    trained: bool = False
    description: str = "untrained"
    per_frame: bool = False
    """True for image models run on each frame with logits averaged over time (HVT ``.in1k``)."""
    num_classes: int | None = None
    """Head size; defaults to the size of ``label_set``."""
    class_names: tuple[str, ...] | None = None
    """Class names read from the checkpoint itself (a hub repo's ``config.json`` ``id2label``); when set they
    replace ``label_set``'s list. :func:`create_model` fills it in."""

    @property
    def labels(self) -> tuple[str, ...]:
        if self.class_names is not None:
            return self.class_names
        from .labels import get_labels

        return get_labels(self.label_set)

    @property
    def family(self) -> str:
        return _ARCHS[self.arch].family if self.arch in _ARCHS else self.arch.split("_")[0]


@dataclass(frozen=True)
class ArchEntry:
    arch: str
    family: str
    builder: Callable[..., nn.Module]
    """``builder(num_classes=...)``: a model satisfying :class:`mvt.models.contract.VideoModel` (random weights,
    no ``spec`` yet: :func:`create_model` sets it)."""
    convert: Callable[[dict], dict] | None = None
    """Pure function mapping a foreign state dict onto this model's keys (fails loudly on unknown keys)."""


_ARCHS: dict[str, ArchEntry] = {}
_SPECS: dict[str, ModelSpec] = {}


def register_arch(entry: ArchEntry, default_spec: ModelSpec) -> None:
    """Register an architecture and its ``.untrained`` spec (``default_spec`` gives input settings)."""
    if entry.arch in _ARCHS:
        raise ValueError(f"architecture {entry.arch!r} is registered twice")
    _ARCHS[entry.arch] = entry
    register_pretrained(
        replace(
            default_spec,
            name=f"{entry.arch}.untrained",
            arch=entry.arch,
            tag="untrained",
            weights=WeightsSource(),
            trained=False,
            description="untrained (random initialisation)",
        )
    )


def unregister_arch(arch: str) -> list[str]:
    """Remove ``arch`` and every model name of it (for tests and plugins registered for a while); returns
    the names removed."""
    _ARCHS.pop(arch, None)
    names = [n for n, s in _SPECS.items() if s.arch == arch]
    for name in names:
        del _SPECS[name]
    return names


def register_pretrained(spec: ModelSpec) -> None:
    if spec.name in _SPECS:
        raise ValueError(f"model {spec.name!r} is registered twice")
    if spec.name != f"{spec.arch}.{spec.tag}":
        raise ValueError(f"model name {spec.name!r} must be '{spec.arch}.{spec.tag}'")
    _SPECS[spec.name] = spec


SYNTH_WEIGHTS_DIR = "assets/weights"
"""Where ``<arch>.synth.safetensors`` ship (relative to the ``mvt`` package: ``mvt/assets/weights``, package data,
so a wheel install has them; ``python -m mvt.train --out mvt/assets/weights`` writes there)."""
_synth_registered = False


def _ensure_registered() -> None:
    global _synth_registered
    # The families register themselves when ``mvt.models`` is imported, which ``mvt/__init__.py`` does (and
    # importing ``mvt.zoo`` always runs ``mvt/__init__.py`` first); the zoo never imports the families, so
    # there is no zoo <-> family import cycle.
    if not _synth_registered:
        _synth_registered = True
        register_synth_weights()


def register_synth_weights(directory: str = SYNTH_WEIGHTS_DIR) -> list[str]:
    """Register ``arch.synth`` for every architecture whose ``<directory>/<arch>.synth.safetensors`` exists.

    These are the SynthMotion demo weights trained by ``mvt.train``; the description quotes the top-1
    accuracy stored in the file's metadata. Input settings come from the arch's default spec, with
    ``frame_stride=1`` and no resize margin (the models were trained on consecutive frames at crop size).
    Returns the names registered.
    """
    import json
    import warnings

    names = []
    for arch in sorted(_ARCHS):
        rel = f"{directory}/{arch}.synth.safetensors"
        path = _weights.PACKAGE_DIR / rel
        name = f"{arch}.synth"
        if name in _SPECS or not path.is_file():
            continue
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
            classes = json.loads(meta["classes"])
            accuracy = float(meta["accuracy"])
        except Exception as e:  # a damaged file must not take the registry down
            warnings.warn(f"skipping {path}: unreadable SynthMotion checkpoint metadata ({e})", stacklevel=2)
            continue
        default = _SPECS[f"{arch}.untrained"]
        register_pretrained(
            replace(
                default,
                name=name,
                tag="synth",
                frame_stride=1,
                resize_size=default.crop_size,
                label_set="synthmotion",
                num_classes=len(classes),
                weights=WeightsSource(kind="file", path=rel, licence=licences.SYNTHMOTION),
                trained=True,
                description=f"SynthMotion demo (trained here, {accuracy:.0%} top-1 on fresh clips)",
            )
        )
        names.append(name)
    return names


def list_models(pattern: str | None = None, *, available_only: bool = False) -> list[str]:
    """Names ``arch.tag`` of every registered model, optionally filtered by a glob ``pattern``.

    With ``available_only`` only models whose weights load without network access are listed.
    """
    _ensure_registered()
    names = sorted(_SPECS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    if available_only:
        names = [n for n in names if _weights.is_available(_SPECS[n].weights)]
    return names


def list_archs() -> list[str]:
    _ensure_registered()
    return sorted(_ARCHS)


def get_spec(name: str) -> ModelSpec:
    _ensure_registered()
    if "." not in name:
        name = f"{name}.untrained"
    if name not in _SPECS:
        close = [n for n in _SPECS if n.split(".")[0] == name.split(".")[0]]
        hint = (
            f" Known tags for this architecture: {close}." if close else f" Known models: {sorted(_SPECS)}."
        )
        raise KeyError(f"unknown model {name!r}.{hint}")
    return _SPECS[name]


def get_arch(arch: str) -> ArchEntry:
    _ensure_registered()
    if arch not in _ARCHS:
        raise KeyError(f"unknown architecture {arch!r}; known: {sorted(_ARCHS)}")
    return _ARCHS[arch]


def create_model(
    name: str,
    *,
    device: str | torch.device = "cpu",
    checkpoint: str | None = None,
    download: bool = True,
    progress: _weights.ProgressFn | None = None,
    timeout: float | None = None,
) -> nn.Module:
    """Build ``name`` (``arch.tag``), load its weights and return it in eval mode with ``.spec`` set.

    ``checkpoint`` overrides the spec's source with a local safetensors / ``torch.load``-able file.
    Weights that are not cached are downloaded (unless ``download=False``), with
    ``progress(done_bytes, total_bytes)`` called as bytes arrive and ``timeout`` seconds without data allowed
    (default ``MVT_DOWNLOAD_TIMEOUT``); a file without a hash is checked against this architecture's keys
    before it enters the cache. A hub checkpoint with a ``config.json`` names the classes
    (``model.spec.labels``). Raises :class:`WeightsError` with an actionable message when weights cannot be
    found, downloaded or loaded.
    """
    spec = get_spec(name)
    entry = get_arch(spec.arch)
    num_classes = spec.num_classes or len(spec.labels)
    source = spec.weights if checkpoint is None else WeightsSource(kind="file_abs", path=checkpoint)
    path = None
    if source.kind not in (
        "none",
        "file_abs",
    ):  # weights first: a missing file fails before any model is built
        path = _weights.resolve(
            source, download=download, progress=progress, timeout=timeout, check=keys_check(name)
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # untrained models are the same every time (and do not touch the global RNG)
        model = entry.builder(num_classes=num_classes)
    if source.kind != "none":
        if path is None:
            state = _weights.load_file(checkpoint)  # type: ignore[arg-type]
        else:
            state = _weights.load_file(path, state_key=source.state_key, pickle_globals=source.pickle_globals)
            names = _weights.class_names(source, download=download)
            if names is not None:
                if len(names) != num_classes:
                    raise WeightsError(
                        f"{source.repo_id}/{source.config_file} names {len(names)} classes but {name} has "
                        f"{num_classes} outputs."
                    )
                spec = replace(spec, class_names=names)
        load_state_dict_strict(model, state, entry.convert, what=name)
    model.spec = spec
    return model.eval().to(device)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def keys_check(name: str) -> _weights.StateCheck:
    """A check that a state dict (converted as ``name``'s architecture converts it) has exactly its keys and
    shapes, raising :class:`mvt.weights.KeysMismatch`. Builds the architecture on the meta device (no
    memory), when first called."""
    spec = get_spec(name)
    entry = get_arch(spec.arch)
    own: dict[str, tuple[int, ...]] = {}

    def check(state: dict) -> None:
        if not own:  # built on first use only: most files carry a hash and are never checked this way
            with torch.device("meta"):
                own.update(_shapes(entry.builder(num_classes=spec.num_classes or len(spec.labels))))
        _compare(own, state, entry.convert, name)

    return check


def _compare(
    own: dict[str, tuple[int, ...]], state: dict, convert: Callable[[dict], dict] | None, what: str
) -> dict:
    if convert is not None:
        try:
            state = convert(state)
        except (KeyError, ValueError) as e:
            raise _weights.KeysMismatch(
                f"checkpoint for {what} does not match its architecture: {e}"
            ) from None
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(state[k].shape) != own[k])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)} vs model {own[k]})"
            )
        raise _weights.KeysMismatch(
            f"checkpoint for {what} does not match its architecture: " + "; ".join(parts)
        )
    return state


def load_state_dict_strict(
    model: nn.Module, state: dict, convert: Callable[[dict], dict] | None = None, *, what: str = "model"
) -> None:
    """Convert (if a converter is given) and load ``state`` strictly, as a :class:`WeightsError` on mismatch."""
    state = _compare(_shapes(model), state, convert, what)
    model.load_state_dict(state, strict=True)
