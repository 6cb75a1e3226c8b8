"""Where a user's checkpoint comes from: a model spec string, and the file (and side files) it resolves to.

Spec strings (accepted wherever a registry name is)::

    file:/path/ckpt.pyth            a local file (or a folder holding a Hugging Face repository's files)
    url:https://host/path/x.pth     a file on a server, into $TORCH_HOME/hub/checkpoints/mvt-user/<url hash>/
    hub:org/name[@revision]         a Hugging Face model repository (config.json + model.safetensors or
                                    pytorch_model.bin), pinned to the commit it resolves to
    …#labels=/path/classes.txt&arch=mvit_v2_s     options after '#': a class list, the architecture

Downloads go through :mod:`mvt.weights` (shared, watched, size- and hash-checked). A file is recognised
(``check``) before it enters the cache; when it is not recognised nothing stays behind: the download is
discarded, and a folder this attempt created in a cache is removed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .. import weights
from ..weights import (
    WHOLE,
    WeightsError,
    WeightsSource,
    WeightsUnavailable,
    hash_prefix,
    hf_cached,
    hf_download_config,
)

SCHEMES = ("file:", "url:", "hub:")
OPTIONS = ("labels", "arch")
PICKLE_GLOBALS = ("argparse.Namespace",)
"""What users' training files may need besides tensors: the ``args`` Namespace (torchvision references, HVT)."""
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
HUB_PROCESSORS = ("preprocessor_config.json", "video_preprocessor_config.json")
CHECKPOINT_SUFFIXES = (".pth", ".pyth", ".pt", ".bin", ".ckpt", ".safetensors", ".pkl")
"""A bare name with one of these suffixes is a file, never a hub repo id (a missing file says so)."""
_REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_source(text: object) -> bool:
    """True for a checkpoint spec string (``file:``, ``url:``, ``hub:``), not a registry name."""
    return isinstance(text, str) and text.startswith(SCHEMES)


@dataclass(frozen=True)
class CheckpointSource:
    """A parsed spec string."""

    kind: str
    """``file``, ``url`` or ``hub``."""
    location: str
    """An absolute path, a URL, or a hub repo id."""
    revision: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    @property
    def spec(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        opts = "&".join(f"{k}={v}" for k, v in self.options)
        return f"{self.kind}:{self.location}{rev}" + (f"#{opts}" if opts else "")

    def option(self, key: str) -> str | None:
        return dict(self.options).get(key)


def parse_source(text: str) -> CheckpointSource:
    """A spec string (or a bare existing path, an http(s) URL, or ``org/name[@rev]``) → :class:`CheckpointSource`."""
    text = str(text).strip()
    body, _, frag = text.partition("#")
    options = tuple(parse_qsl(frag, keep_blank_values=False)) if frag else ()
    bad = [k for k, _ in options if k not in OPTIONS]
    if bad:
        raise WeightsError(f"unknown option(s) {bad} in {text!r}; known: {list(OPTIONS)}")
    if body.startswith("file:"):
        return CheckpointSource("file", str(Path(body[5:]).expanduser().resolve()), options=options)
    if body.startswith("url:"):
        url = body[4:]
        if urlsplit(url).scheme not in ("http", "https"):
            raise WeightsError(f"{url!r} is not an http(s) URL")
        return CheckpointSource("url", url, options=options)
    if body.startswith("hub:"):
        repo, _, rev = body[4:].partition("@")
        if not _REPO.fullmatch(repo):
            raise WeightsError(f"{repo!r} is not a Hugging Face repo id (org/name)")
        return CheckpointSource("hub", repo, rev or None, options=options)
    if urlsplit(body).scheme in ("http", "https"):
        return CheckpointSource("url", body, options=options)
    if Path(body).expanduser().exists():
        return CheckpointSource("file", str(Path(body).expanduser().resolve()), options=options)
    if Path(body).suffix.lower() in CHECKPOINT_SUFFIXES or body.startswith(("/", ".", "~")):
        raise WeightsError(f"Checkpoint {body} does not exist.")
    repo, _, rev = body.partition("@")
    if _REPO.fullmatch(repo):
        return CheckpointSource("hub", repo, rev or None, options=options)
    raise WeightsError(
        f"{text!r} is neither a file, a URL nor a Hugging Face repo id; write file:PATH, url:URL or hub:ORG/NAME"
    )


@dataclass
class Fetched:
    """A resolved source: the weights file, side files read as JSON, and how to load the file again."""

    path: Path
    weights: WeightsSource
    spec: str
    """The spec string, pinned (a hub repo at its commit)."""
    side: dict[str, Any] = field(default_factory=dict)


Check = Callable[[Any, dict[str, Any]], None]
"""``check(whole checkpoint object, side files)``: raises a :class:`WeightsError` when the file is not usable."""


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _json(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path.name} is not readable JSON ({e})") from None


@contextmanager
def _removed_on_failure(folder: Path) -> Iterator[None]:
    """Remove ``folder`` again if it did not exist before and the block fails (nothing stays cached)."""
    existed = folder.exists()
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _check_size(size: int | None, what: str) -> None:
    cap = weights.max_checkpoint_bytes()
    if size is not None and size > cap:
        raise WeightsError(
            f"{what} is {size / weights.MB:.0f} MB, over the {cap / weights.MB:.0f} MB limit on checkpoints "
            "(MVT_CHECKPOINT_MAX_MB)."
        )


def local_file(src: CheckpointSource) -> Path:
    """The weights file of a ``file:`` source (a folder: the hub repository files in it)."""
    path = Path(src.location)
    if not path.exists():
        raise WeightsError(f"Checkpoint {path} does not exist.")
    if path.is_dir():  # a local copy of a hub repository
        found = [path / f for f in HUB_WEIGHTS if (path / f).is_file()]
        if not found:
            raise WeightsError(f"{path} holds neither {' nor '.join(HUB_WEIGHTS)}")
        path = found[0]
    return path


def _file(src: CheckpointSource) -> Fetched:
    path = local_file(src)
    side: dict[str, Any] = {}
    for name in ("config.json", *HUB_PROCESSORS):
        if (path.parent / name).is_file() and path.name in HUB_WEIGHTS:
            side[name] = _json(path.parent / name)
    _check_size(path.stat().st_size, path.name)
    source = WeightsSource(kind="file_abs", path=str(path), state_key=WHOLE, pickle_globals=PICKLE_GLOBALS)
    return Fetched(path, source, src.spec, side)


def user_url_source(url: str) -> WeightsSource:
    """A user's URL as a weights source: its own cache folder (so names never collide); the file name keeps a
    torch-hub hash prefix only when it is one (8+ hex digits), else its '-' become '_'."""
    name = os.path.basename(urlsplit(url).path) or "checkpoint.pth"
    prefix = hash_prefix(name)
    if prefix is not None and len(prefix) < 8:
        name = name.replace("-", "_")
    folder = hashlib.sha256(url.encode()).hexdigest()[:16]
    return WeightsSource(
        kind="url",
        url=url,
        cache_name=f"mvt-user/{folder}/{name}",
        state_key=WHOLE,
        pickle_globals=PICKLE_GLOBALS,
    )


def _url_side_file(url: str, dest: Path, timeout: float) -> Path | None:
    """A small file beside a URL (``config.json`` next to a hub ``…/resolve/<rev>/model.safetensors``), kept in
    the URL's cache folder; None when the server has none."""
    import urllib.error
    import urllib.request

    if dest.is_file():
        return dest
    try:
        with urllib.request.urlopen(weights.mirror_url(url), timeout=timeout) as resp:
            data = resp.read(1 << 20)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise WeightsError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (OSError, ValueError) as e:
        raise WeightsError(f"could not fetch {url} ({e})") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return dest


def _url(
    src: CheckpointSource, check: Check, *, download: bool = True, timeout: float | None = None, **kw
) -> Fetched:
    source = user_url_source(src.location)
    dest = weights.hub_cache_path(source)
    with _removed_on_failure(dest.parent):
        side: dict[str, Any] = {}
        if (
            os.path.basename(urlsplit(src.location).path) in HUB_WEIGHTS
        ):  # a hub resolve URL: its config beside
            base = src.location.rsplit("/", 1)[0]
            for name in ("config.json", *HUB_PROCESSORS):
                cached = dest.parent / name
                if cached.is_file() or download:
                    found = _url_side_file(f"{base}/{name}", cached, timeout or weights.download_timeout())
                    if found is not None:
                        side[name] = _json(found)
        if weights.cached_path(source) is None and download:
            _check_size(weights.download_size(source), os.path.basename(dest.name))
        hashed = hash_prefix(dest.name) is not None
        path = weights.resolve(
            source, check=lambda raw: check(raw, side), download=download, timeout=timeout, **kw
        )
        if hashed:  # a hash-named file skips the load check on download: recognise it here
            check(weights.load_file(path, state_key=WHOLE, pickle_globals=PICKLE_GLOBALS), side)
    return Fetched(path, source, src.spec, side)


def _hub_file(repo: str, revision: str | None, name: str, timeout: float, download: bool) -> Path | None:
    """A small file of a hub repo (config, processor): cached, else downloaded; None when the repo has none."""
    source = WeightsSource(kind="hf", repo_id=repo, filename=name, revision=revision, config_file=name)
    path = hf_cached(source, name)
    if path is None and download:
        why = weights.offline_reason(source)
        if why is not None:
            raise WeightsUnavailable(f"{repo}/{name} is not in the Hugging Face cache and {why}.")
        path = hf_download_config(source, timeout=timeout)
    return path


def _hub_weights_name(repo: str, revision: str, timeout: float, download: bool) -> tuple[str, int | None]:
    for name in HUB_WEIGHTS:
        source = WeightsSource(kind="hf", repo_id=repo, filename=name, revision=revision)
        if hf_cached(source) is not None:
            return name, None
    if not download:
        raise WeightsUnavailable(
            f"{repo}'s weights are not in the Hugging Face cache (downloads not allowed)"
        )
    from huggingface_hub import errors, get_hf_file_metadata, hf_hub_url

    for name in HUB_WEIGHTS:
        url = hf_hub_url(repo, name, revision=revision, endpoint=weights.hf_endpoint())
        try:
            meta = get_hf_file_metadata(url, timeout=timeout, endpoint=weights.hf_endpoint(), token=False)
        except (errors.EntryNotFoundError, errors.RemoteEntryNotFoundError):
            continue
        except Exception as e:
            raise WeightsError(f"could not ask {weights.hf_endpoint()} about {repo}/{name} ({e})") from None
        return name, meta.size
    raise WeightsError(
        f"{repo} at {revision[:12]} holds neither {' nor '.join(HUB_WEIGHTS)} (sharded checkpoints are not read)"
    )


def _hub(
    src: CheckpointSource, check: Check, *, download: bool = True, timeout: float | None = None, **kw
) -> Fetched:
    timeout = weights.download_timeout() if timeout is None else timeout
    repo = src.location
    folder = weights.hf_cache_dir() / f"models--{repo.replace('/', '--')}"
    with _removed_on_failure(folder):
        config_path = _hub_file(repo, src.revision, "config.json", timeout, download)
        if config_path is None:
            raise WeightsError(f"{repo} has no config.json: not a transformers model repository")
        commit = config_path.parent.name  # snapshots/<commit>/config.json: pin what "main" meant now
        side = {"config.json": _json(config_path)}
        for name in HUB_PROCESSORS:
            proc = _hub_file(repo, commit, name, timeout, download)
            if proc is not None:
                side[name] = _json(proc)
                break
        filename, size = _hub_weights_name(repo, commit, timeout, download)
        _check_size(size, f"{repo}/{filename}")
        source = WeightsSource(
            kind="hf",
            repo_id=repo,
            filename=filename,
            revision=commit,
            state_key=WHOLE,
            pickle_globals=PICKLE_GLOBALS,
        )
        path = weights.resolve(
            source, check=lambda raw: check(raw, side), download=download, timeout=timeout, **kw
        )
    pinned = CheckpointSource("hub", repo, commit, src.options)
    return Fetched(path, source, pinned.spec, side)


def fetch(src: CheckpointSource, check: Check, **kw) -> Fetched:
    """The local file of ``src`` (downloading it if needed and allowed), recognised by ``check`` before it is
    cached. ``kw``: ``download``, ``progress``, ``timeout`` (see :func:`mvt.weights.resolve`)."""
    if src.kind == "file":
        return _file(src)
    if src.kind == "url":
        return _url(src, check, **kw)
    return _hub(src, check, **kw)
