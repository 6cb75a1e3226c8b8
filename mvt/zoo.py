"""The model registry: architectures by name, and a table of pretrained specs keyed ``arch.tag``.

Family modules (``mvt/models/*.py``) call :func:`register_arch` and :func:`register_pretrained` when
imported; ``mvt.models`` imports them all. Every architecture also gets an ``arch.untrained`` entry built
with no weights (its spec says ``trained=False``).

:data:`PUBLIC_CHECKPOINTS` lists the seed papers' other public releases (PySlowFast and MMAction2 files);
:mod:`mvt.checkpoints` registers them (their files need its converters). A *model spec string* — ``file:…``,
``url:…``, ``hub:org/repo[@rev]`` — is accepted wherever a name is: :func:`get_spec` hands it to the resolver
:mod:`mvt.checkpoints` registers (:func:`register_resolver`), which recognises the file and registers it for
this process under a stable name.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

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
    convert: Callable[[Any], dict] | None = None
    """The converter of this spec's file when it is not the architecture's own format (a PySlowFast ``.pyth``
    for a torchvision-named MViT): whole checkpoint object in, state dict out; overrides ``ArchEntry.convert``."""
    checkpoint: Any = None
    """For a model loaded from a user's checkpoint: what :mod:`mvt.checkpoints` recognised (a
    ``mvt.checkpoints.Recognised``: format, variant, labels and where they came from, preprocessing, notes)."""

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


def register_arch(entry: ArchEntry, default_spec: ModelSpec, *, untrained: bool = True) -> None:
    """Register an architecture and its ``.untrained`` spec (``default_spec`` gives input settings; with
    ``untrained=False`` no ``.untrained`` entry is listed, for one-off architectures of users' files)."""
    if entry.arch in _ARCHS:
        raise ValueError(f"architecture {entry.arch!r} is registered twice")
    _ARCHS[entry.arch] = entry
    if not untrained:
        return
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
"""Where ``mvt.train`` ships ``<arch>.synth.safetensors`` (relative to the repository root)."""
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
        path = _weights.REPO_ROOT / rel
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
                weights=WeightsSource(kind="file", path=rel),
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


Resolver = Callable[[str], ModelSpec]
_RESOLVERS: dict[str, Resolver] = {}


def register_resolver(prefix: str, resolve: Resolver) -> None:
    """Let :func:`get_spec` accept names starting with ``prefix`` (``"file:"``): ``resolve(name)`` registers
    the model the name describes (if it is not yet) and returns its spec."""
    _RESOLVERS[prefix] = resolve


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model ``arch.tag`` (``arch`` alone: ``arch.untrained``), or of a model spec
    string (``file:…``, ``url:…``, ``hub:…``), which is recognised and registered first."""
    _ensure_registered()
    for prefix, resolve in _RESOLVERS.items():
        if name.startswith(prefix):
            return resolve(name)
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
    if source.kind != "none":  # weights first: a missing file fails before any model is built
        path = _weights.resolve(
            source, download=download, progress=progress, timeout=timeout, check=keys_check(spec.name)
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # untrained models are the same every time (and do not touch the global RNG)
        model = entry.builder(num_classes=num_classes)
    if path is not None:
        state = _weights.load_file(path, state_key=source.state_key, pickle_globals=source.pickle_globals)
        if checkpoint is None:
            names = _weights.class_names(source, download=download)
            if names is not None:
                if len(names) != num_classes:
                    raise WeightsError(
                        f"{source.repo_id}/{source.config_file} names {len(names)} classes but {name} has "
                        f"{num_classes} outputs."
                    )
                spec = replace(spec, class_names=names)
        load_state_dict_strict(model, state, spec.convert or entry.convert, what=name)
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
        _compare(own, state, spec.convert or entry.convert, name)

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


def check_state(model: nn.Module, state: dict, what: str = "model") -> None:
    """Raise :class:`mvt.weights.KeysMismatch` unless ``state`` has exactly ``model``'s keys and shapes (the
    message counts and names the missing, unexpected and mis-shaped keys). ``model`` may live on the meta
    device."""
    _compare(_shapes(model), state, None, what)


def load_state_dict_strict(
    model: nn.Module, state: dict, convert: Callable[[dict], dict] | None = None, *, what: str = "model"
) -> None:
    """Convert (if a converter is given) and load ``state`` strictly, as a :class:`WeightsError` on mismatch."""
    state = _compare(_shapes(model), state, convert, what)
    model.load_state_dict(state, strict=True)


# -- the papers' public checkpoints -------------------------------------------------------------------------

PYSF = "https://dl.fbaipublicfiles.com/pyslowfast/model_zoo"
MMA = "https://download.openmmlab.com/mmaction/v1.0/recognition/mvit/converted"
K400_NORM = ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))
IN1K_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class PublicCheckpoint:
    """A released checkpoint of the seed papers that the registry reaches by name (see README, Weights).

    The architecture (``name``'s ``arch``) is the PySlowFast config the file was trained with
    (``mvt.checkpoints.public.VARIANTS``). Input settings are the release's test pipeline (one centre crop where it
    tested several). ``top1`` and ``params_m`` are as the release reports them. ``sha256`` is a hash prefix the
    release publishes (MMAction2 names carry one); ``size`` bytes where published (neither release publishes
    sizes: the app asks the server). ``also`` lists the same weights at other releases.
    """

    name: str
    url: str
    format: str
    release: str
    label_set: str
    num_frames: int
    frame_stride: int | None
    resize_size: int
    crop_size: int
    norm: tuple[tuple[float, float, float], tuple[float, float, float]]
    top1: float
    params_m: float | None
    licence: str = "Apache-2.0 (PySlowFast)"
    sha256: str | None = None
    size: int | None = None
    also: tuple[str, ...] = ()


PUBLIC_CHECKPOINTS: tuple[PublicCheckpoint, ...] = (
    PublicCheckpoint(
        "mvit_v1_b_32x3.k400", f"{PYSF}/mvit/k400.pyth", "pyslowfast",
        "PySlowFast MODEL_ZOO.md (Kinetics/MVIT_B_32x3_CONV)", "kinetics400", 32, 3, 256, 224, K400_NORM,
        80.4, None,
    ),
    PublicCheckpoint(
        "mvit_v1_b_32x3.k600", f"{PYSF}/mvit/k600.pyth", "pyslowfast",
        "PySlowFast MODEL_ZOO.md (Kinetics/MVIT_B_32x3_CONV_K600)", "kinetics600", 32, 3, 256, 224, K400_NORM,
        83.9, None,
    ),
    PublicCheckpoint(
        "mvit_v2_s.ssv2", f"{PYSF}/mvitv2/pysf_video_models/MViTv2_S_16x4_ssv2_f308341823.pyth",
        "pyslowfast", "PySlowFast projects/mvitv2 (SSv2/MVITv2_S_16x4)", "ssv2", 16, None, 224, 224, K400_NORM,
        68.2, 34.4, also=(f"{MMA}/mvit-small-p244_u16_sthv2-rgb_20221021-65ecae7d.pth",),
    ),
    PublicCheckpoint(
        "mvit_v2_b_32x3.k400", f"{PYSF}/mvitv2/pysf_video_models/MViTv2_B_32x3_k400_f304025456.pyth",
        "pyslowfast", "PySlowFast projects/mvitv2 (Kinetics/MVITv2_B_32x3)", "kinetics400", 32, 3, 256, 224,
        K400_NORM, 82.9, 51.2, also=(f"{MMA}/mvit-base-p244_32x3x1_kinetics400-rgb_20221021-f392cd2d.pth",),
    ),
    PublicCheckpoint(
        "mvit_v2_b_32x3.ssv2", f"{PYSF}/mvitv2/pysf_video_models/MViTv2_B_32x3_ssv2_f305803282.pyth",
        "pyslowfast", "PySlowFast projects/mvitv2 (SSv2/MVITv2_B_32x3)", "ssv2", 32, None, 224, 224, K400_NORM,
        70.5, 51.1, also=(f"{MMA}/mvit-base-p244_u32_sthv2-rgb_20221021-d5de5da6.pth",),
    ),
    PublicCheckpoint(
        "mvit_v2_l_40x3.k400", f"{PYSF}/mvitv2/pysf_video_models/MViTv2_L_40x3_k400_f306903192.pyth",
        "pyslowfast", "PySlowFast projects/mvitv2 (Kinetics/MVITv2_L_40x3_test)", "kinetics400", 40, 3, 312, 312,
        IN1K_NORM, 86.1, 217.6, also=(f"{MMA}/mvit-large-p244_40x3x1_kinetics400-rgb_20221021-11fe1f97.pth",),
    ),
    PublicCheckpoint(
        "mvit_v2_l_40x3.ssv2", f"{PYSF}/mvitv2/pysf_video_models/MViTv2_L_40x3_ssv2_f309603968.pyth",
        "pyslowfast", "PySlowFast projects/mvitv2 (SSv2/MVITv2_L_40x3)", "ssv2", 40, None, 312, 312, IN1K_NORM,
        73.3, 213.1, also=(f"{MMA}/mvit-large-p244_u40_sthv2-rgb_20221021-61696e07.pth",),
    ),
)  # fmt: skip
"""The seed papers' released video checkpoints beyond torchvision's K400 ports, by name. PySlowFast's files are
the authors' own; MMAction2's ``converted/`` copies (``also``) are the same weights re-keyed."""

NOT_PUBLISHED: tuple[tuple[str, str], ...] = (
    (
        "MViT-B 16×4 Kinetics-600",
        "neither PySlowFast nor MMAction2 publishes it (PySlowFast's K600 file is 32×3)",
    ),
    ("MViT-B 16×4 Something-Something v2", "neither release has an MViT v1 SSv2 checkpoint"),
    ("MViT-B 32×3 Something-Something v2", "neither release has an MViT v1 SSv2 checkpoint"),
    (
        "MViT-B 16×4 Kinetics-400 (PySlowFast)",
        "a Google Drive link only; torchvision's port is mvit_v1_b.k400",
    ),
    ("any MViT video model in facebookresearch/mvit", "that repository releases ImageNet image models only"),
)
"""What the issue asked for that no release publishes, and why (README, Weights)."""
