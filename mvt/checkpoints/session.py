"""Users' checkpoints in the registry for this process: one stable name per (file, options).

:func:`recognise` fetches and recognises a spec string; :func:`register` also puts the model into
:mod:`mvt.zoo` under ``<file stem>_<hash>.<format>`` (the hash covers the file's SHA-256 and the options, where the
file comes from and the options, so the same source gets the same name in every session and process, and a
changed file a new one), with a spec that
carries what was recognised (``spec.checkpoint``). :func:`resolve` is the zoo's resolver: it makes
``mvt.get_spec("file:…")`` / ``mvt.create_model("hub:…")`` work.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import zoo
from ..weights import WHOLE, ProgressFn, WeightsError, load_file
from ..zoo import ArchEntry, ModelSpec
from . import detect, sources
from .ours import safetensors_metadata
from .records import Recognised

TAGS = {
    "pyslowfast": "pysf",
    "mmaction2": "mmaction",
    "torchvision": "tv",
    "torchvision-references": "tvref",
    "hf-vivit": "hf",
    "hvt": "hvt",
    "mvt": "mvt",
}
"""Format → the tag of a registered user model (``name = arch.tag``)."""

_lock = threading.Lock()
_resolved: dict[str, tuple[str, tuple]] = {}
"""Spec string → (registered name, the file's identity when registered)."""

Labels = str | Path | Sequence[str] | None


def _options(src: sources.CheckpointSource, arch: str | None, labels: Labels) -> tuple[str | None, Labels]:
    return arch or src.option("arch"), labels if labels is not None else src.option("labels")


def _family_and_arch(arch: str | None) -> tuple[str | None, str | None]:
    if arch is None:
        return None, None
    if arch in detect.FAMILIES:
        return arch, None
    if arch not in zoo.list_archs():
        raise WeightsError(
            f"arch {arch!r} is neither a family {detect.FAMILIES} nor a registered architecture"
        )
    return zoo.get_arch(arch).family, arch


def _read(raw: Any, path_name: str, side: dict, metadata: dict, arch: str | None):
    family, registered = _family_and_arch(arch)
    reading = detect.read_object(raw, name=path_name, metadata=metadata, side=side, arch=registered)
    if registered is not None:
        reading.arch = registered
    return reading, family


def recognise(
    source: str,
    *,
    arch: str | None = None,
    labels: Labels = None,
    download: bool = True,
    progress: ProgressFn | None = None,
    timeout: float | None = None,
) -> tuple[Recognised, sources.Fetched]:
    """Fetch ``source`` (recognised before it is cached) and recognise it: see :func:`mvt.inspect_checkpoint`."""
    src = sources.parse_source(source)
    arch, labels = _options(src, arch, labels)
    name = Path(src.location).name or src.location

    def check(raw: Any, side: dict) -> None:  # runs on a fresh download, before it enters the cache
        reading, family = _read(raw, name, side, {}, arch)
        detect.complete(reading, source=src.spec, location=name, sha256="", family=family)

    fetched = sources.fetch(src, check, download=download, progress=progress, timeout=timeout)
    path = fetched.path
    metadata = safetensors_metadata(path)
    raw = load_file(path, state_key=WHOLE, pickle_globals=sources.PICKLE_GLOBALS)
    reading, family = _read(raw, path.name, fetched.side, metadata, arch)
    rec = detect.complete(
        reading,
        source=fetched.spec,
        location=str(path),
        sha256=sources.file_sha256(path),
        labels=labels,
        family=family,
    )
    return rec, fetched


def _slug(text: str) -> str:
    stem = Path(text.rstrip("/")).name.split(".")[0] or "checkpoint"
    slug = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")[:28] or "checkpoint"
    return slug if slug[0].isalpha() else f"m_{slug}"


def _identity(fetched: sources.Fetched) -> tuple:
    st = fetched.path.stat()
    return (str(fetched.path), st.st_size, st.st_mtime_ns)


def spec_for(rec: Recognised, fetched: sources.Fetched, arch_name: str) -> ModelSpec:
    pre = rec.preprocessing
    where = Path(rec.location).name if fetched.weights.kind != "hf" else f"{fetched.weights.repo_id}"
    return ModelSpec(
        name=f"{arch_name}.{TAGS[rec.format]}",
        arch=arch_name,
        tag=TAGS[rec.format],
        num_frames=pre.num_frames,
        frame_stride=pre.frame_stride,  # type: ignore[arg-type]
        crop_size=pre.crop_size,
        resize_size=pre.resize_size,
        mean=pre.mean,
        std=pre.std,
        label_set=rec.label_set or "",
        weights=fetched.weights,
        trained=True,
        description=f"your checkpoint {where} ({detect.FORMAT_NAMES[rec.format].split(' (')[0]}, "
        f"{rec.num_classes} classes)",
        per_frame=rec.family == "hvt" and getattr(rec.config, "per_frame", False),
        num_classes=rec.num_classes,
        class_names=rec.labels,
        convert=detect.CONVERTERS[rec.format],
        checkpoint=rec,
    )


def register(source: str, *, arch: str | None = None, labels: Labels = None, **kw) -> ModelSpec:
    """Recognise ``source`` and register it for this process (once per file and options); returns its spec."""
    rec, fetched = recognise(source, arch=arch, labels=labels, **kw)
    key = f"{rec.sha256}|{sources.parse_source(fetched.spec).location}|{arch}|{labels!r}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    arch_name = rec.arch or f"{_slug(sources.parse_source(fetched.spec).location)}_{digest}"
    spec = spec_for(rec, fetched, arch_name)
    if rec.arch is not None:  # a registered architecture: the tag alone tells this file from the registry's
        spec = replace(spec, name=f"{rec.arch}.{spec.tag}_{digest}", tag=f"{spec.tag}_{digest}")
    with _lock:
        if rec.arch is None and arch_name not in zoo.list_archs():
            entry = ArchEntry(
                arch=arch_name, family=rec.family, builder=detect.builder_of(rec.family, rec.config)
            )
            zoo.register_arch(entry, spec, untrained=False)
        if not zoo.list_models(spec.name):  # the same file and options, seen before: the same model
            zoo.register_pretrained(spec)
        _resolved[source] = (spec.name, _identity(fetched))
    return zoo.get_spec(spec.name)


def resolve(source: str) -> ModelSpec:
    """The zoo's resolver for spec strings: the registered spec (registering it first when the spec string is
    new here, or its local file changed since)."""
    with _lock:
        hit = _resolved.get(source)
    if hit is not None:
        name, ident = hit
        src = sources.parse_source(source)
        if src.kind != "file" or _file_identity(src) == ident:
            return zoo.get_spec(name)
    return register(source)


def _file_identity(src: sources.CheckpointSource) -> tuple | None:
    try:
        path = sources.local_file(src)
    except WeightsError:
        return None
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def forget(source: str) -> None:
    """Drop ``source``'s resolution (its registered model stays listed)."""
    with _lock:
        _resolved.pop(source, None)
