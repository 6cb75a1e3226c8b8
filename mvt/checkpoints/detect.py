"""Recognise a checkpoint: which format, which architecture, which classes and labels, which input.

:func:`read_object` picks the format from the file's own keys and embedded configuration and hands it to that
format's reader; :func:`complete` builds the architecture (on the meta device), checks every key and shape of
the converted weights against it, and settles labels and preprocessing:

* labels: the file's own (``id2label``, ``meta.dataset_meta.classes``, our metadata), else the ``labels`` the
  user gives, else the data set the file names (its cfg, args or meta) when the head has that many classes,
  else ``class 0 … class N-1`` — said in ``labels_source`` every time;
* preprocessing: what the file states, the family's defaults for the rest, and which is which.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .. import zoo
from ..labels import LABEL_SETS, get_labels
from ..models.contract import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD
from ..weights import KeysMismatch, WeightsError
from . import hub_vivit, hvt_files, mmaction, ours, pyslowfast, torchvision_fmt
from .mvit_shapes import describe_mvit
from .records import FORMAT_NAMES, Preprocessing, Reading, Recognised

FAMILIES = ("mvit", "vivit", "hvt", "mmvit")

CONVERTERS = {
    "pyslowfast": pyslowfast.convert_file,
    "mmaction2": mmaction.convert_file,
    "torchvision": torchvision_fmt.convert_file,
    "torchvision-references": torchvision_fmt.convert_file,
    "hf-vivit": hub_vivit.convert_file,
    "hvt": hvt_files.convert_file,
    "mvt": dict,
}
"""Format → the pure converter from the whole checkpoint object to mvt's state dict (what the zoo runs on load)."""


def _known_torchvision_hashes() -> dict[str, str]:
    """SHA-256 prefix → label set of torchvision's published MViT weights (their file names carry it)."""
    from torchvision.models.video import MViT_V1_B_Weights, MViT_V2_S_Weights

    from ..weights import hash_prefix

    out = {}
    for enum in (MViT_V1_B_Weights, MViT_V2_S_Weights):
        for w in enum:
            prefix = hash_prefix(w.url)
            if prefix:
                out[prefix] = "kinetics400"
    return out


def _describe_found(raw: Any) -> str:
    if not isinstance(raw, dict):
        return f"a {type(raw).__name__}"
    top = sorted(str(k) for k in raw)[:6]
    nested = next((v for v in raw.values() if isinstance(v, dict) and v), None)
    if all(isinstance(v, torch.Tensor) for v in raw.values()):
        return f"a state dict of {len(raw)} tensors (e.g. {top[:4]})"
    sample = (
        f"; its {next(k for k, v in raw.items() if v is nested)!r} holds e.g. {sorted(nested)[:3]}"
        if nested
        else ""
    )
    return f"a dict with keys {top}{sample}"


def read_object(
    raw: Any, *, name: str, metadata: dict[str, str] | None = None, side: dict[str, Any] | None = None,
    arch: str | None = None,
) -> Reading:  # fmt: skip
    """The :class:`Reading` of a whole checkpoint object. Raises :class:`WeightsError` naming what was found
    when no format fits, and :class:`~mvt.weights.KeysMismatch` naming the keys when the format's converter
    does not know them."""
    try:
        return _read_object(raw, name=name, metadata=metadata, side=side, arch=arch)
    except (KeyError, ValueError) as e:
        reason = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise KeysMismatch(f"{name} looks like {_looks_like(raw)}, but {reason}") from None


def _looks_like(raw: Any) -> str:
    if isinstance(raw, dict) and "model_state" in raw:
        return "a PySlowFast checkpoint"
    if isinstance(raw, dict) and "state_dict" in raw:
        return "an MMAction2 checkpoint"
    return "a checkpoint mvt reads"


def _read_object(
    raw: Any, *, name: str, metadata: dict[str, str] | None = None, side: dict[str, Any] | None = None,
    arch: str | None = None,
) -> Reading:  # fmt: skip
    metadata, side = metadata or {}, side or {}
    registered = arch if arch in zoo.list_archs() else None
    if metadata.get("arch"):
        return ours.read(raw, name=name, metadata=metadata, arch=registered)
    if not isinstance(raw, dict):
        raise WeightsError(f"{name} holds {_describe_found(raw)}, not a checkpoint dict")
    if "model_state" in raw:
        return pyslowfast.read(raw, name=name)
    if isinstance(raw.get("state_dict"), dict) and mmaction.is_mmaction_state(raw["state_dict"]):
        return mmaction.read(raw, name=name)
    model = raw.get("model")
    if isinstance(model, dict):
        if torchvision_fmt.is_torchvision_mvit_state(model):
            return torchvision_fmt.read(raw, name=name)
        if hvt_files.is_hvt_state(model):
            return hvt_files.read(raw, name=name)
    if raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        if hub_vivit.is_hf_vivit_state(raw):
            return hub_vivit.read(
                raw, name=name, config=side.get("config.json"),
                processor=next((side[k] for k in side if "preprocessor" in k), None),
            )  # fmt: skip
        if pyslowfast.is_pyslowfast_state(raw):
            return pyslowfast.read(raw, name=name)
        if mmaction.is_mmaction_state(raw):
            return mmaction.read(raw, name=name)
        if torchvision_fmt.is_torchvision_mvit_state(raw):
            return torchvision_fmt.read(raw, name=name)
        if hvt_files.is_hvt_state(raw):
            return hvt_files.read(raw, name=name)
        if registered or ours.match_registered(raw) is not None:
            return ours.read(raw, name=name, metadata=metadata, arch=registered)
    formats = ", ".join(FORMAT_NAMES.values())
    raise WeightsError(
        f"{name} is not a checkpoint mvt recognises: it holds {_describe_found(raw)}. Recognised: {formats}."
    )


# -- labels and preprocessing ------------------------------------------------------------------------------


def user_labels(labels: str | Path | Sequence[str]) -> tuple[tuple[str, ...], str]:
    """Class names from a list, or a file: one name a line, a JSON list, or a JSON ``{index: name}``."""
    if isinstance(labels, (list, tuple)):
        return tuple(str(x) for x in labels), "the labels given"
    path = Path(labels)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise WeightsError(f"labels file {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, list):
        names = tuple(str(x) for x in data)
    elif isinstance(data, dict):
        try:
            pairs = sorted((int(k), str(v)) for k, v in data.items())
        except ValueError:
            raise WeightsError(f"labels file {path}: a JSON object must map class indices to names") from None
        if [i for i, _ in pairs] != list(range(len(pairs))):
            raise WeightsError(f"labels file {path}: indices are not 0..{len(pairs) - 1}")
        names = tuple(v for _, v in pairs)
    else:
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
    return names, f"labels file {path.name}"


def settle_labels(
    reading: Reading, labels: str | Path | Sequence[str] | None, sha256: str
) -> tuple[tuple[str, ...], str, str | None]:
    """(names, where they came from, label set or None), in the order the module docstring gives."""
    n, hint = reading.num_classes, reading.labels
    if hint.names:
        return hint.names, hint.source, None
    if labels is not None:
        names, where = user_labels(labels)
        if len(names) != n:
            raise WeightsError(
                f"{where} names {len(names)} classes, but the checkpoint's head has {n} outputs"
            )
        return names, where, None
    label_set, source = hint.label_set, hint.source
    if label_set is None and reading.family == "mvit" and n == 400:
        known = _known_torchvision_hashes()
        prefix = next((p for p in known if sha256.startswith(p)), None)
        if prefix is not None:
            label_set, source = (
                known[prefix],
                f"the file is torchvision's published weights (SHA-256 {prefix}…)",
            )
    if label_set is not None:
        names = get_labels(label_set)
        if len(names) == n:
            return names, f"{LABEL_SETS[label_set]} ({source})", label_set
        reading.notes.append(f"{source} suggests {LABEL_SETS[label_set]}, but the head has {n} outputs")
    names = tuple(f"class {i}" for i in range(n))
    return names, f"none in the checkpoint: class 0…{n - 1} (give labels= a file or list to name them)", None


def family_defaults(reading: Reading) -> dict[str, Any]:
    """The family's input settings for this architecture (frames and size from its config)."""
    cfg = reading.config
    if reading.arch is not None:
        spec = zoo.get_spec(f"{reading.arch}.untrained")
        keep = ("num_frames", "frame_stride", "resize_size", "crop_size", "mean", "std")
        return {k: getattr(spec, k) for k in keep} | {"source": f"{reading.arch}'s defaults"}
    if reading.family == "mvit":
        frames, size = cfg.num_frames, cfg.image_size
        stride = 4 if frames <= 16 else 3
        return {
            "num_frames": frames, "frame_stride": stride, "crop_size": size, "resize_size": round(size * 256 / 224),
            "mean": KINETICS_MEAN, "std": KINETICS_STD,
            "source": f"MViT's defaults (PySlowFast's Kinetics pipeline: {frames}×{stride}, resize {size * 256 // 224})",
        }  # fmt: skip
    if reading.family == "vivit":
        size = cfg.image_size
        return {
            "num_frames": cfg.num_frames, "frame_stride": 2, "crop_size": size, "resize_size": round(size * 256 / 224),
            "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
            "source": "ViViT's defaults (scenic's Kinetics pipeline: stride 2, inputs in [-1, 1])",
        }  # fmt: skip
    size = cfg.img_size
    return {
        "num_frames": 16, "frame_stride": 4, "crop_size": size, "resize_size": round(size / 0.875),
        "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "source": "HVT's defaults (16 frames 4 apart, run per frame)",
    }  # fmt: skip


def settle_preprocessing(reading: Reading) -> Preprocessing:
    settings = family_defaults(reading)
    stated = {k: v for k, v in reading.preprocessing.items() if k not in ("source", "notes")}
    default_source = settings["source"]
    settings.update(stated)
    keys = ("num_frames", "frame_stride", "resize_size", "crop_size", "mean", "std")
    missing = [k for k in keys if k not in stated]
    if not stated:
        source = default_source
    elif missing:
        source = (
            f"{reading.preprocessing.get('source', 'the checkpoint')}; {', '.join(missing)}: {default_source}"
        )
    else:
        source = reading.preprocessing.get("source", "the checkpoint")
    notes = tuple(reading.preprocessing.get("notes", ()))
    return Preprocessing(
        num_frames=int(settings["num_frames"]),
        frame_stride=None if settings["frame_stride"] is None else int(settings["frame_stride"]),
        resize_size=int(settings["resize_size"]),
        crop_size=int(settings["crop_size"]),
        mean=tuple(float(v) for v in settings["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in settings["std"]),  # type: ignore[arg-type]
        source=source,
        notes=notes,
    )


# -- the model ---------------------------------------------------------------------------------------------


def builder_of(family: str, config: Any):
    """``builder(num_classes=…)`` of ``family``'s model with ``config`` (picklable: a partial of the class)."""
    from functools import partial

    from ..models.hvt import HVT
    from ..models.mvit import MViT
    from ..models.vivit import ViViT

    classes = {"mvit": MViT, "vivit": ViViT, "hvt": HVT}
    if family not in classes:
        raise WeightsError(f"no builder for family {family!r} from a config")
    return partial(classes[family], config)


def builder(reading: Reading):
    """``builder(num_classes=…)`` of the model the reading describes."""
    if reading.arch is not None:
        return zoo.get_arch(reading.arch).builder
    return builder_of(reading.family, reading.config)


def describe(reading: Reading) -> str:
    cfg = reading.config
    if reading.arch is not None:
        return f"{reading.arch} (a registered mvt architecture)"
    if reading.family == "mvit":
        return describe_mvit(cfg)
    if reading.family == "vivit":
        return (
            f"ViViT model {cfg.variant} ({cfg.variant_name}), {cfg.depth} blocks of {cfg.dim} ({cfg.heads} heads), "
            f"tubelet {'×'.join(map(str, cfg.tubelet))}, {cfg.num_frames}×{cfg.image_size}² input"
        )
    return (
        f"HVT, {cfg.depth} blocks of {cfg.embed_dim} ({cfg.num_heads} heads), pooling every {cfg.pool_block_width} "
        f"blocks, {cfg.patch_size}² patches of {cfg.img_size}² frames, run per frame"
    )


def complete(
    reading: Reading,
    *,
    source: str,
    location: str,
    sha256: str,
    labels: Any = None,
    family: str | None = None,
) -> Recognised:
    """Check the weights against the architecture they describe and settle labels and preprocessing."""
    if family is not None and family != reading.family:
        raise WeightsError(f"asked for a {family} model, but {location} is a {reading.family} checkpoint")
    variant = describe(reading)
    with torch.device("meta"):
        model = builder(reading)(num_classes=reading.num_classes)
    zoo.check_state(model, reading.state, what=f"{Path(location).name} (recognised as {variant})")
    names, labels_source, label_set = settle_labels(reading, labels, sha256)
    pre = settle_preprocessing(reading)
    if getattr(reading.config, "abs_pos", False) or reading.family in ("vivit", "hvt"):
        fixed = getattr(reading.config, "image_size", None) or getattr(reading.config, "img_size", None)
        if fixed and pre.crop_size != fixed:  # position tables fix the input size
            pre = replace(
                pre, crop_size=fixed, notes=(*pre.notes, f"crop {pre.crop_size} → {fixed} (position tables)")
            )
    return Recognised(
        source=source,
        location=location,
        format=reading.format,
        family=reading.family,
        variant=variant,
        config=reading.config,
        num_classes=reading.num_classes,
        labels=names,
        labels_source=labels_source,
        label_set=label_set,
        preprocessing=pre,
        parameters=sum(p.numel() for p in model.parameters()),
        sha256=sha256,
        notes=tuple(reading.notes),
        arch=reading.arch,
    )
