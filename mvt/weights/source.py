"""Weight sources, the errors downloads and loads raise, and the settings read from the environment.

Every setting is read when it is used (never at import), so a process, a test or a Space can change
``MVT_OFFLINE``, ``MVT_DOWNLOAD_TIMEOUT``, ``MVT_WEIGHTS_MIRROR``, ``HF_ENDPOINT``, ``HF_HOME`` /
``HF_HUB_CACHE`` or ``TORCH_HOME`` at any time. ``huggingface_hub`` reads several of these once, when it is
imported (``constants.ENDPOINT``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_HUB_ETAG_TIMEOUT``,
``HF_HUB_DOWNLOAD_TIMEOUT``); :mod:`mvt.weights` therefore passes ``endpoint``, ``cache_dir`` and
``etag_timeout`` to it explicitly on every call.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parents[2]

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_TIMEOUT_S = 30.0
"""Seconds without a byte from the server before a download fails (``MVT_DOWNLOAD_TIMEOUT`` overrides).
Also the connect timeout, and huggingface_hub's ``etag_timeout``. A stalled server therefore fails a
request within this time (plus a fraction of a second), well inside the 60 s a user may wait."""
PROBE_TIMEOUT_S = 3.0
"""Connect timeout of the "is there a route to the host" check behind :func:`status`."""
PROBE_TTL_S = 60.0
"""How long a reachability answer is reused before the host is probed again."""


# -- errors -------------------------------------------------------------------------------------------------


class WeightsError(RuntimeError):
    """Weights could not be found or loaded; the message says what to do."""


class WeightsUnavailable(WeightsError):
    """The file is not cached and cannot be downloaded now (offline, or no route to the host)."""


class DownloadError(WeightsError):
    """The download failed: network error, HTTP error, or a server that stopped sending."""


class DownloadStalled(DownloadError):
    """The server sent nothing for the configured timeout."""


class IntegrityError(WeightsError):
    """A downloaded file failed a check; it was discarded and never entered the cache."""


class HashMismatch(IntegrityError):
    def __init__(self, message: str, expected: str, actual: str):
        super().__init__(message)
        self.expected, self.actual = expected, actual


class SizeMismatch(IntegrityError):
    def __init__(self, message: str, expected: int, actual: int):
        super().__init__(message)
        self.expected, self.actual = expected, actual


class KeysMismatch(IntegrityError):
    """The checkpoint's keys (or shapes) do not match the architecture."""


class UnsafeCheckpoint(WeightsError):
    """The file is a pickle that would import or run code outside the allowed set."""


# -- sources ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsSource:
    """Where one checkpoint comes from.

    Kinds: ``"url"`` (torch hub cache, ``$TORCH_HOME/hub/checkpoints/<basename>``), ``"hf"`` (a file of a
    Hugging Face model repo, through ``huggingface_hub``), ``"file"`` (shipped in this repository, path relative
    to its root) and ``"none"`` (untrained).
    """

    kind: str = "none"
    url: str | None = None
    repo_id: str | None = None
    filename: str | None = None
    revision: str | None = None
    """HF: a 40-hex commit pins the file (and lets a cached file resolve without any request)."""
    path: str | None = None
    state_key: str | None = None
    """Sub-dict that holds the state dict (e.g. ``"model"`` for HVT's release files)."""
    config_file: str | None = None
    """HF: a JSON file beside the weights whose ``id2label`` names the classes (downloaded with them)."""
    pickle_globals: tuple[str, ...] = field(default=())
    """Non-tensor globals the checkpoint's pickle needs, by name, from :data:`mvt.weights.checkpoint.ALLOWED_GLOBALS`
    (e.g. ``("argparse.Namespace",)`` for HVT's training-script files). Allowed for this file's load only."""
    cache_name: str | None = None
    """URL: the file's path under ``$TORCH_HOME/hub/checkpoints`` (default: the URL's basename, as torch hub has
    it). Users' URLs get a folder of their own (:mod:`mvt.checkpoints`), so two ``model.pth`` never collide."""

    def describe_location(self) -> str:
        if self.kind == "url":
            return str(hub_cache_path(self))
        if self.kind == "hf":
            return f"{self.repo_id}/{self.filename} in the Hugging Face cache ({hf_cache_dir()})"
        if self.kind == "file":
            return str(REPO_ROOT / (self.path or ""))
        return "(no weights)"

    @property
    def display_name(self) -> str:
        if self.kind == "url":
            return os.path.basename(self.cache_name or self.url or "")
        if self.kind == "hf":
            return f"{self.repo_id}/{self.filename}"
        return self.path or "(no weights)"


def hub_cache_path(source: WeightsSource) -> Path:
    """The torch hub cache file for a ``"url"`` source (``$TORCH_HOME/hub/checkpoints/<basename>``)."""
    if not source.url:
        raise WeightsError("a 'url' weights source needs a url")
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / (source.cache_name or os.path.basename(source.url))


# -- settings -----------------------------------------------------------------------------------------------


def _truthy(value: str | None) -> bool:
    """The values huggingface_hub treats as true (``1``, ``ON``, ``YES``, ``TRUE``, any case)."""
    return value is not None and value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def download_timeout() -> float:
    """Seconds without data before a download fails: ``MVT_DOWNLOAD_TIMEOUT`` or :data:`DEFAULT_TIMEOUT_S`."""
    raw = os.environ.get("MVT_DOWNLOAD_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise WeightsError(f"MVT_DOWNLOAD_TIMEOUT must be a number of seconds > 0, not {raw!r}.")
    return value


def mirror_url(url: str) -> str:
    """``url`` with scheme and host replaced by ``MVT_WEIGHTS_MIRROR`` (its path is kept), or ``url`` unchanged.

    ``MVT_WEIGHTS_MIRROR=http://127.0.0.1:8000`` turns ``https://download.pytorch.org/models/x.pth`` into
    ``http://127.0.0.1:8000/models/x.pth``; a mirror with a path (``http://host/cache``) prefixes it.
    """
    base = os.environ.get("MVT_WEIGHTS_MIRROR", "").strip()
    if not base:
        return url
    m = urlsplit(base)
    if m.scheme not in ("http", "https") or not m.netloc:
        raise WeightsError(
            f"MVT_WEIGHTS_MIRROR must be an http(s) base URL such as http://host:port, not {base!r}."
        )
    u = urlsplit(url)
    return urlunsplit((m.scheme, m.netloc, m.path.rstrip("/") + u.path, u.query, ""))


def hf_endpoint() -> str:
    """The Hugging Face Hub endpoint: ``HF_ENDPOINT`` (read now, not at import) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT", "").strip() or HF_DEFAULT_ENDPOINT).rstrip("/")


def hf_cache_dir() -> Path:
    """The hub cache directory, with huggingface_hub's precedence, read now: ``HF_HUB_CACHE``,
    ``HUGGINGFACE_HUB_CACHE``, ``$HF_HOME/hub``, ``$XDG_CACHE_HOME/huggingface/hub``, ``~/.cache/huggingface/hub``."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hub"


def offline_reason(source: WeightsSource | None = None) -> str | None:
    """Why downloads are switched off (a sentence), or None. Checks the environment now; for hub sources also
    huggingface_hub's own flag (it reads ``HF_HUB_OFFLINE`` once, at import, and then refuses every request)."""
    if _truthy(os.environ.get("MVT_OFFLINE")):
        return "MVT_OFFLINE is set"
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _truthy(os.environ.get(var)):
            return f"{var} is set"
    if source is not None and source.kind == "hf" and "huggingface_hub" in sys.modules:
        from huggingface_hub import constants

        if constants.is_offline_mode():
            return "HF_HUB_OFFLINE was set when huggingface_hub was imported"
    return None


def download_url(source: WeightsSource) -> str:
    """The URL a download of ``source`` starts from (after ``MVT_WEIGHTS_MIRROR`` / ``HF_ENDPOINT``)."""
    if source.kind == "url":
        return mirror_url(source.url or "")
    if source.kind == "hf":
        return f"{hf_endpoint()}/{source.repo_id}/resolve/{source.revision or 'main'}/{source.filename}"
    raise WeightsError(f"weights source of kind {source.kind!r} is not downloaded")


# -- is there a route to the host? --------------------------------------------------------------------------

_probe_lock = threading.Lock()
_probes: dict[tuple[str, int], tuple[float, str | None]] = {}


def route_problem(url: str) -> str | None:
    """None when a TCP connection to ``url``'s host opens within :data:`PROBE_TIMEOUT_S`, else why not.

    Answers are cached for :data:`PROBE_TTL_S` seconds per host and port, so listing models never waits on
    the network more than once a minute.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    now = time.monotonic()
    with _probe_lock:
        hit = _probes.get((host, port))
    if hit is not None and now - hit[0] < PROBE_TTL_S:
        return hit[1]
    problem: str | None = None
    try:
        with socket.create_connection((host, port), timeout=min(PROBE_TIMEOUT_S, download_timeout())):
            pass
    except OSError as e:
        problem = f"no route to {host}:{port} ({e.strerror or type(e).__name__})"
    with _probe_lock:
        _probes[(host, port)] = (time.monotonic(), problem)
    return problem


def forget_probes() -> None:
    """Drop cached reachability answers and remote sizes (the next :func:`status` asks again)."""
    with _probe_lock:
        _probes.clear()
        remote_sizes.clear()


remote_sizes: dict[str, int] = {}
"""Sizes learnt from the network, by download URL (guarded by the probe lock; cleared by :func:`forget_probes`)."""


def remember_size(url: str, size: int) -> None:
    with _probe_lock:
        remote_sizes[url] = size


def remembered_size(url: str) -> int | None:
    with _probe_lock:
        return remote_sizes.get(url)


# -- status -------------------------------------------------------------------------------------------------

MB = 1 << 20
"""Sizes are shown in MB of 2**20 bytes, the unit of torchvision's ``_file_size`` metadata."""


def format_size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    return f"{n / MB:.0f} MB" if n >= 10 * MB else f"{n / MB:.1f} MB"


@dataclass(frozen=True)
class Status:
    """Whether a model's weights are on disk, can be downloaded, or neither — and why."""

    state: Literal["cached", "downloadable", "unavailable"]
    size: int | None = None
    """Bytes of the file (downloadable: what the first use downloads); None when unknown."""
    reason: str = ""
    """For ``unavailable``: a sentence a person can act on."""

    @property
    def available(self) -> bool:
        return self.state != "unavailable"

    def describe(self) -> str:
        """``"cached"``, ``"downloads 140 MB on first use"`` or ``"unavailable: <reason>"``."""
        if self.state == "cached":
            return "cached"
        if self.state == "downloadable":
            if self.size is None:
                return "downloads on first use (size unknown)"
            return f"downloads {format_size(self.size)} on first use"
        return f"unavailable: {self.reason}"
