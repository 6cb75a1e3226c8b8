"""Where weights come from, how they are downloaded, and how they are loaded safely.

Sources (:class:`WeightsSource` ``.kind``):

* ``"url"``: a torchvision-style URL. The file lives in the torch hub cache,
  ``$TORCH_HOME/hub/checkpoints/<basename of url>``, exactly where ``torch.hub.load_state_dict_from_url``
  puts it, so a file torchvision already downloaded is reused. ``MVT_WEIGHTS_MIRROR`` replaces the URL's
  scheme and host.
* ``"hf"``: a file in a Hugging Face model repo, through ``huggingface_hub.hf_hub_download`` (HF cache,
  ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``), pinned to a revision.
* ``"file"``: a file shipped in this repository (``assets/weights``), path relative to the repo root.
* ``"file_abs"``: a file on this machine, by absolute path (a user's checkpoint, :mod:`mvt.checkpoints`).
* ``"none"``: untrained; the model keeps its initialisation.

Public API::

    status(source) -> Status                  # cached / downloadable(size) / unavailable(reason); fast
    download_size(source) -> int | None       # bytes, from metadata, the hub API or Content-Length
    resolve(source, progress=..., check=...)  # local Path, downloading first (shared, watched, checked)
    load(source, ...) -> {name: tensor}       # resolve + safe load
    class_names(source) -> tuple | None       # a hub repo's config.json id2label, in index order
    format_progress(done, total, rate), RateMeter   # "42.1 / 139.8 MB, 11.3 MB/s"

Errors are :class:`WeightsError` subclasses, each with a sentence saying what failed and what to do:
:class:`WeightsUnavailable` (not cached and offline / no route), :class:`DownloadError` (network, HTTP) and
:class:`DownloadStalled` (no data for ``MVT_DOWNLOAD_TIMEOUT`` s), :class:`HashMismatch`, :class:`SizeMismatch`,
:class:`KeysMismatch` (all :class:`IntegrityError`: the file was discarded), :class:`UnsafeCheckpoint`.

Environment (read when used, never at import): ``MVT_OFFLINE``, ``MVT_DOWNLOAD_TIMEOUT`` (seconds, default
30), ``MVT_WEIGHTS_MIRROR``, ``TORCH_HOME``, ``HF_ENDPOINT``, ``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``.
"""

from __future__ import annotations

import json
import logging
import os
from functools import cache
from pathlib import Path

import torch

from .checkpoint import ALLOWED_GLOBALS, WHOLE, load_file, max_checkpoint_bytes, read_checkpoint
from .fetch import (
    ProgressFn,
    RateMeter,
    StateCheck,
    download_hf_file,
    download_url_file,
    format_progress,
    hash_prefix,
    hf_cached,
    hf_download_config,
    hf_fix,
    hf_size,
    in_flight,
    shared_download,
    url_fix,
    url_size,
)
from .source import (
    DEFAULT_TIMEOUT_S,
    MB,
    REPO_ROOT,
    DownloadError,
    DownloadStalled,
    HashMismatch,
    IntegrityError,
    KeysMismatch,
    SizeMismatch,
    Status,
    UnsafeCheckpoint,
    WeightsError,
    WeightsSource,
    WeightsUnavailable,
    download_timeout,
    download_url,
    forget_probes,
    format_size,
    hf_cache_dir,
    hf_endpoint,
    hub_cache_path,
    mirror_url,
    offline_reason,
    remember_size,
    remembered_size,
    route_problem,
)

log = logging.getLogger("mvt.weights")

__all__ = [
    "ALLOWED_GLOBALS",
    "DEFAULT_TIMEOUT_S",
    "MB",
    "REPO_ROOT",
    "DownloadError",
    "DownloadStalled",
    "HashMismatch",
    "IntegrityError",
    "KeysMismatch",
    "ProgressFn",
    "RateMeter",
    "SizeMismatch",
    "StateCheck",
    "Status",
    "UnsafeCheckpoint",
    "WHOLE",
    "WeightsError",
    "WeightsSource",
    "WeightsUnavailable",
    "cached_path",
    "class_names",
    "download_size",
    "download_timeout",
    "download_url",
    "forget_probes",
    "format_progress",
    "format_size",
    "hash_prefix",
    "hf_cache_dir",
    "hf_endpoint",
    "hub_cache_path",
    "in_flight",
    "is_available",
    "load",
    "load_file",
    "max_checkpoint_bytes",
    "mirror_url",
    "offline_reason",
    "read_checkpoint",
    "resolve",
    "status",
]


def cached_path(source: WeightsSource) -> Path | None:
    """The local file of ``source`` when it is on disk (no network), else None."""
    if source.kind == "url":
        path = hub_cache_path(source)
        return path if path.is_file() else None
    if source.kind == "file":
        path = REPO_ROOT / (source.path or "")
        return path if path.is_file() else None
    if source.kind == "hf":
        try:
            return hf_cached(source)
        except ImportError:
            return None
    if source.kind == "file_abs":
        path = Path(source.path or "")
        return path if path.is_file() else None
    if source.kind == "none":
        return None
    raise WeightsError(f"unknown weights source kind {source.kind!r}")


def is_available(source: WeightsSource) -> bool:
    """True when the weights can be loaded without any network access."""
    return source.kind == "none" or cached_path(source) is not None


# -- sizes --------------------------------------------------------------------------------------------------


@cache
def _torchvision_sizes() -> dict[str, int]:
    """File name -> bytes, from torchvision's weights metadata (``meta["_file_size"]``, in MB of 2**20)."""
    from torchvision import models

    sizes: dict[str, int] = {}
    for name in models.list_models():
        try:
            enum = models.get_model_weights(name)
        except (ValueError, KeyError):
            continue
        for w in enum:
            mb = w.meta.get("_file_size")
            if mb is not None:
                sizes[os.path.basename(w.url)] = round(float(mb) * MB)
    return sizes


def download_size(source: WeightsSource, *, network: bool = True) -> int | None:
    """Bytes of ``source``'s file: on disk when cached; else from data (torchvision's ``_file_size``), the hub
    API (HF, online) or the server's Content-Length (release files, online). None when it cannot be known
    (offline, or ``network=False`` and no metadata)."""
    local = cached_path(source)
    if local is not None:
        return local.stat().st_size
    if source.kind not in ("url", "hf"):
        return None
    key = download_url(source)
    size = remembered_size(key)
    if size is not None:
        return size
    if source.kind == "url":
        size = _torchvision_sizes().get(os.path.basename(source.url or ""))
    if size is None and network and offline_reason(source) is None and route_problem(key) is None:
        timeout = min(download_timeout(), 10.0)
        size = url_size(key, timeout) if source.kind == "url" else hf_size(source, timeout)
    if size is not None:
        remember_size(key, size)
    return size


# -- status -------------------------------------------------------------------------------------------------


def status(source: WeightsSource, *, probe: bool = True) -> Status:
    """Whether ``source`` is on disk, downloadable (with its size), or unavailable (with the reason).

    Never waits long: offline settings are checked first, and a reachability probe (``probe=True``) is a TCP
    connect with a 3 s timeout whose answer is reused for a minute.
    """
    if source.kind == "none":
        return Status("cached", 0)
    local = cached_path(source)
    if local is not None:
        return Status("cached", local.stat().st_size)
    if source.kind == "file":
        return Status(
            "unavailable", reason=f"shipped file {source.path} is missing (reinstall from a full clone)"
        )
    if source.kind == "file_abs":
        return Status("unavailable", reason=f"{source.path} is gone")
    reason = offline_reason(source)
    if reason is None and probe:
        reason = route_problem(download_url(source))
    if reason is not None:
        return Status("unavailable", download_size(source, network=False), reason=f"not cached and {reason}")
    return Status("downloadable", download_size(source))


# -- resolve and load ---------------------------------------------------------------------------------------


def _unavailable(source: WeightsSource, why: str) -> WeightsUnavailable:
    if source.kind == "url":
        path = hub_cache_path(source)
        return WeightsUnavailable(
            f"Weights file {path.name} is not cached ({why}). Download {source.url} on a machine with internet "
            f"and place it at {path} (the torch hub cache, $TORCH_HOME/hub/checkpoints)."
        )
    return WeightsUnavailable(
        f"Weights {source.repo_id}/{source.filename} are not in the Hugging Face cache ({why}). "
        + hf_fix(source)
    )


def resolve(
    source: WeightsSource,
    *,
    download: bool = True,
    progress: ProgressFn | None = None,
    timeout: float | None = None,
    check: StateCheck | None = None,
) -> Path:
    """Return a local file for ``source``, downloading it first if allowed and needed.

    ``progress(done_bytes, total_bytes)`` is called from the download thread as bytes arrive. ``timeout``
    (default ``MVT_DOWNLOAD_TIMEOUT``) bounds the time without data. ``check`` validates the state dict of
    a freshly downloaded file that carries no hash, before it enters the cache (see :func:`mvt.zoo.keys_check`).
    Concurrent calls for the same file share one download. Raises a :class:`WeightsError` subclass.
    """
    if source.kind == "file":
        path = REPO_ROOT / (source.path or "")
        if not path.is_file():
            raise WeightsError(
                f"Shipped weights {path} are missing; reinstall from a full clone of the repo."
            )
        return path
    if source.kind == "file_abs":
        if not Path(source.path or "").is_file():
            raise WeightsError(f"Checkpoint {source.path} does not exist.")
        return Path(source.path or "")
    if source.kind not in ("url", "hf"):
        raise WeightsError(f"weights source of kind {source.kind!r} has no file")
    local = cached_path(source)
    if local is not None:
        return local
    if not download:
        return _raise(_unavailable(source, "downloads were not allowed for this call"))
    why = offline_reason(source) or route_problem(download_url(source))
    if why is not None:
        return _raise(_unavailable(source, why))
    timeout = download_timeout() if timeout is None else timeout
    if source.kind == "url":
        dest = hub_cache_path(source)
        return shared_download(
            str(dest),
            dest.name,
            lambda flight: download_url_file(flight, source, dest, timeout=timeout, check=check),
            progress=progress,
            timeout=timeout,
            fix=url_fix(source, dest),
        )
    key = f"{hf_cache_dir()}::{source.repo_id}@{source.revision or 'main'}/{source.filename}"
    return shared_download(
        key,
        f"{source.repo_id}/{source.filename}",
        lambda flight: download_hf_file(flight, source, timeout=timeout, check=check),
        progress=progress,
        timeout=timeout,
        fix=hf_fix(source),
    )


def _raise(error: WeightsError):
    raise error


def load(
    source: WeightsSource,
    *,
    download: bool = True,
    progress: ProgressFn | None = None,
    timeout: float | None = None,
    check: StateCheck | None = None,
) -> dict[str, torch.Tensor]:
    """Resolve and load the state dict of ``source`` (safely; see :func:`load_file`)."""
    path = resolve(source, download=download, progress=progress, timeout=timeout, check=check)
    return load_file(path, state_key=source.state_key, pickle_globals=source.pickle_globals)


def class_names(source: WeightsSource, *, download: bool = True) -> tuple[str, ...] | None:
    """Class names from a hub source's ``config_file`` (``id2label``, ordered by index), or None.

    None when the source has no config file, the repo has none, or it is neither cached nor downloadable now
    (the caller then falls back to its label set). A config whose ``id2label`` is malformed is an error.
    """
    if source.kind != "hf" or not source.config_file:
        return None
    path = hf_cached(source, source.config_file)
    if path is None and download and offline_reason(source) is None:
        try:
            path = hf_download_config(source, timeout=download_timeout())
        except WeightsError as e:
            log.warning("class names of %s: %s", source.repo_id, e)
            path = None
    if path is None:
        return None
    try:
        id2label = json.loads(path.read_text())["id2label"]
        pairs = sorted((int(k), str(v)) for k, v in id2label.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise WeightsError(f"{source.repo_id}/{source.config_file} has no usable id2label ({e}).") from None
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise WeightsError(
            f"{source.repo_id}/{source.config_file}: id2label keys are not 0..{len(pairs) - 1}."
        )
    return tuple(v for _, v in pairs)
