"""Downloads: URL files into torch hub's cache, hub files through ``huggingface_hub``; shared, watched, checked.

* **Shared, never blocking.** Each destination file has at most one download in flight; callers asking for the
  same file at once wait on that one download (each with its own progress callback). The registry lock is
  held only to look up or add an entry, never while bytes move, so a slow file never delays another.
* **Watched.** A download runs in a daemon thread; every waiting caller fails with :class:`DownloadStalled`
  once no byte has arrived for the timeout (``MVT_DOWNLOAD_TIMEOUT``), whatever the client library's own
  retry policy. When every caller has given up, the worker stops at its next chunk.
* **Checked before it enters the cache.** URL files stream into a temporary file in the cache directory
  and are renamed into place only after the checks: SHA-256 against the hash prefix in the file name
  (torch hub's ``HASH_REGEX`` rule, as torchvision's files carry), else the size the server announced plus
  a loadable state dict (and the caller's key check). Hub files: ``huggingface_hub`` writes them atomically;
  an LFS file's ETag is its SHA-256, which is verified here, and a file that fails is removed again.
* **Nothing partial stays.** A failed download removes its temporary file. A process killed mid-download
  cannot, so each download first removes the partial files of its destination that no live download holds
  (ours are ``flock``-ed while in use, ``huggingface_hub``'s ``.incomplete`` blobs by its per-blob lock).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from .checkpoint import load_file
from .source import (
    MB,
    DownloadError,
    DownloadStalled,
    HashMismatch,
    IntegrityError,
    KeysMismatch,
    SizeMismatch,
    UnsafeCheckpoint,
    WeightsError,
    WeightsSource,
    hf_cache_dir,
    hf_endpoint,
    mirror_url,
)

log = logging.getLogger("mvt.weights")

ProgressFn = Callable[[int, "int | None"], None]
"""``progress(done_bytes, total_bytes)``; ``total_bytes`` is None when the server did not say."""
StateCheck = Callable[[dict[str, torch.Tensor]], None]
"""Raises (a :class:`WeightsError`) when a state dict does not fit the model it is meant for."""

HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")
"""torch.hub's rule: ``name-<sha256 prefix>.ext`` (``torch.hub.HASH_REGEX``)."""
CHUNK = 1 << 20


def hash_prefix(url_or_name: str) -> str | None:
    """The SHA-256 prefix a file name carries (``mvit_v2_s-ae3be167.pth`` -> ``ae3be167``), else None."""
    m = HASH_REGEX.search(os.path.basename(url_or_name))
    return m.group(1) if m and m.group(1) else None


# -- progress -----------------------------------------------------------------------------------------------


def format_progress(done: int, total: int | None, rate: float | None = None) -> str:
    """``"42.1 / 139.8 MB, 11.3 MB/s"`` (MB = 2**20 bytes; parts are left out when unknown)."""
    text = f"{done / MB:.1f} / {total / MB:.1f} MB" if total else f"{done / MB:.1f} MB"
    if rate is not None:
        text += f", {rate / MB:.1f} MB/s"
    return text


class RateMeter:
    """Turns ``(done, total)`` calls into ``"42.1 / 139.8 MB, 11.3 MB/s"`` (rate averaged since the first call)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._t0: float | None = None
        self._done0 = 0

    def rate(self, done: int) -> float | None:
        now = self._clock()
        if self._t0 is None:
            self._t0, self._done0 = now, done
            return None
        dt = now - self._t0
        return (done - self._done0) / dt if dt > 0 else None

    def __call__(self, done: int, total: int | None) -> str:
        return format_progress(done, total, self.rate(done))


# -- one download per destination ---------------------------------------------------------------------------


class _Abandoned(Exception):
    """Raised inside a worker whose callers have all gone (stalled, or given up)."""


class _Flight:
    """One download in flight: its progress, its waiters, its outcome."""

    def __init__(self, key: str, what: str, timeout: float):
        self.key, self.what, self.timeout = key, what, timeout
        self.done = threading.Event()
        self.result: Path | None = None
        self.error: BaseException | None = None
        self.listeners: list[ProgressFn] = []
        self.bytes_done = 0
        self.total: int | None = None
        self.last_activity = time.monotonic()
        self.waiters = 0
        self.abandoned = False
        self._lock = threading.Lock()

    def report(self, done: int, total: int | None) -> None:
        """Called by the worker for every chunk: records activity and tells every listener."""
        if self.abandoned:
            raise _Abandoned()
        with self._lock:
            self.bytes_done, self.total = done, total
            self.last_activity = time.monotonic()
            listeners = list(self.listeners)
        for cb in listeners:
            try:
                cb(done, total)
            except Exception:  # a broken progress display must not break the download
                log.exception("progress callback failed")

    def add_listener(self, cb: ProgressFn) -> None:
        with self._lock:
            self.listeners.append(cb)
            started, done, total = self.total is not None or self.bytes_done > 0, self.bytes_done, self.total
        if started:
            cb(done, total)

    def remove_listener(self, cb: ProgressFn) -> None:
        with self._lock:
            if cb in self.listeners:
                self.listeners.remove(cb)


_flights_lock = threading.Lock()
_flights: dict[str, _Flight] = {}


def in_flight() -> list[str]:
    """Keys (destination paths) of the downloads running now."""
    with _flights_lock:
        return sorted(_flights)


def _run(flight: _Flight, work: Callable[[_Flight], Path]) -> None:
    try:
        flight.result = work(flight)
    except _Abandoned:
        flight.error = DownloadStalled(f"The download of {flight.what} was abandoned: every caller gave up.")
    except WeightsError as e:
        flight.error = e
    except BaseException as e:  # anything else is still a failed download, said plainly
        flight.error = DownloadError(f"Downloading {flight.what} failed: {type(e).__name__}: {e}")
    finally:
        with _flights_lock:
            if _flights.get(flight.key) is flight:
                del _flights[flight.key]
        flight.done.set()


def shared_download(
    key: str,
    what: str,
    work: Callable[[_Flight], Path],
    *,
    progress: ProgressFn | None,
    timeout: float,
    fix: str = "",
) -> Path:
    """Run ``work`` once per ``key`` however many callers ask at once; wait for it, watching for stalls.

    ``fix`` ends the stall message (what a person can do instead).
    """
    with _flights_lock:
        flight = _flights.get(key)
        if flight is None:
            flight = _Flight(key, what, timeout)
            _flights[key] = flight
            threading.Thread(
                target=_run, args=(flight, work), name=f"mvt-download {what}", daemon=True
            ).start()
        flight.waiters += 1
    if progress is not None:
        flight.add_listener(progress)
    try:
        while not flight.done.wait(0.1):
            idle = time.monotonic() - flight.last_activity
            if idle > timeout:
                raise DownloadStalled(
                    f"Downloading {what} stopped: the server sent nothing for {timeout:g} s "
                    f"(MVT_DOWNLOAD_TIMEOUT). Check the connection and try again later. {fix}".rstrip()
                )
        if flight.error is not None:
            raise flight.error
        assert flight.result is not None
        return flight.result
    finally:
        if progress is not None:
            flight.remove_listener(progress)
        with _flights_lock:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.done.is_set():
                flight.abandoned = True  # the worker stops at its next chunk
                if _flights.get(key) is flight:
                    del _flights[key]  # the next caller starts afresh


def _unusable(e: WeightsError, what: str, discarded: str) -> WeightsError:
    """The error for a downloaded file that fails to load or to fit its model, keeping its kind."""
    if isinstance(e, KeysMismatch):
        return KeysMismatch(f"Downloaded {what} does not fit its model: {e} {discarded}")
    if isinstance(e, UnsafeCheckpoint):
        return UnsafeCheckpoint(f"{e} {discarded}")
    return IntegrityError(f"Downloaded {what} is not a usable checkpoint: {e} {discarded}")


# -- partial files ------------------------------------------------------------------------------------------

_PARTIAL_MIN_AGE_S = 2.0
"""A partial file younger than this is never removed (its creator may not have locked it yet)."""


@contextlib.contextmanager
def _free(lock: Path) -> Iterator[bool]:
    """Whether no process holds an ``flock`` on ``lock`` (then held by this block until it ends). False
    where locks are unavailable (not POSIX), so nothing is ever removed on a guess."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False  # held: a live download
            return
        yield True
    finally:
        os.close(fd)


def _remove_if_free(partial: Path, lock: Path) -> None:
    """Remove ``partial`` unless it is new or a live download holds ``lock`` (a missing lock file: nobody)."""
    try:
        if time.time() - partial.stat().st_mtime < _PARTIAL_MIN_AGE_S:
            return
    except OSError:
        return  # gone already
    if not lock.exists():
        partial.unlink(missing_ok=True)
        return
    with _free(lock) as free:
        if free:
            partial.unlink(missing_ok=True)
            log.info("removed %s, left by a download that did not finish", partial)


def remove_dead_partials(dest: Path) -> None:
    """Remove the temporary files of URL downloads of ``dest`` whose process died mid-download."""
    for partial in dest.parent.glob(f".{glob.escape(dest.name)}.*.partial"):
        _remove_if_free(partial, partial)


@contextlib.contextmanager
def _partial(dest: Path) -> Iterator[Path]:
    """A new temporary file beside ``dest`` for one download, locked while this process works on it (so
    :func:`remove_dead_partials` leaves it alone) and removed afterwards, whatever happened."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(dest)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.partial"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with contextlib.suppress(ImportError, OSError):
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)  # before the lock goes: never present and unlocked
        os.close(fd)


# -- URL files ----------------------------------------------------------------------------------------------


class _KeepMethodRedirect(urllib.request.HTTPRedirectHandler):
    """urllib turns a redirected HEAD into a GET; keep HEAD (GitHub release assets redirect to a CDN)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and req.get_method() == "HEAD":
            new.method = "HEAD"
        return new


_opener = urllib.request.build_opener(_KeepMethodRedirect)
_USER_AGENT = "mvt-lens (+https://huggingface.co/spaces)"


def _content_length(headers) -> int | None:
    try:
        value = int(headers.get("Content-Length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def url_size(url: str, timeout: float) -> int | None:
    """The Content-Length a HEAD request announces for ``url`` (after redirects), or None."""
    req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": _USER_AGENT})
    try:
        with _opener.open(req, timeout=timeout) as resp:
            return _content_length(resp.headers)
    except (OSError, http.client.HTTPException, ValueError):
        return None


def url_fix(source: WeightsSource, dest: Path) -> str:
    return (
        f"On a machine with internet, download {source.url} and place it at {dest} (the torch hub cache, "
        "$TORCH_HOME/hub/checkpoints), or set MVT_WEIGHTS_MIRROR to a server that has it."
    )


def download_url_file(
    flight: _Flight,
    source: WeightsSource,
    dest: Path,
    *,
    timeout: float,
    check: StateCheck | None,
) -> Path:
    """Stream ``source``'s URL into a temporary file beside ``dest``, check it, then rename it into place."""
    url = mirror_url(source.url or "")
    name = dest.name
    prefix = hash_prefix(name)
    sha = hashlib.sha256()
    done, total = 0, None
    with _partial(dest) as tmp:
        req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        try:
            with _opener.open(req, timeout=timeout) as resp, open(tmp, "wb") as f:
                total = _content_length(resp.headers)
                flight.report(0, total)
                while True:
                    try:
                        chunk = resp.read(CHUNK)
                    except http.client.IncompleteRead as e:
                        chunk = e.partial
                        f.write(chunk)
                        sha.update(chunk)
                        done += len(chunk)
                        break
                    if not chunk:
                        break
                    f.write(chunk)
                    sha.update(chunk)
                    done += len(chunk)
                    flight.report(done, total)
        except urllib.error.HTTPError as e:
            raise DownloadError(
                f"Downloading {name} from {url} failed: HTTP {e.code} {e.reason}. " + url_fix(source, dest)
            ) from None
        except TimeoutError:
            raise DownloadStalled(
                f"Downloading {name} from {url} timed out: no data for {timeout:g} s (MVT_DOWNLOAD_TIMEOUT). "
                + url_fix(source, dest)
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e
            if isinstance(reason, TimeoutError):
                raise DownloadStalled(
                    f"Connecting to {url} for {name} timed out after {timeout:g} s (MVT_DOWNLOAD_TIMEOUT). "
                    + url_fix(source, dest)
                ) from None
            raise DownloadError(
                f"Downloading {name} from {url} failed (network error: {reason}). " + url_fix(source, dest)
            ) from None
        discarded = f"The download was discarded; nothing was written to {dest.parent}."
        if total is not None and done != total:
            raise SizeMismatch(
                f"{name} from {url} is incomplete: the server announced {total} bytes but sent {done}. "
                f"{discarded} Retry; if it keeps failing the server (or mirror) is broken.",
                expected=total,
                actual=done,
            )
        if prefix is not None:
            actual = sha.hexdigest()
            if not actual.startswith(prefix):
                raise HashMismatch(
                    f"{name} from {url} failed its integrity check: its SHA-256 is {actual}, but the file "
                    f"name requires one starting with {prefix}. {discarded} The server (or mirror) sent a "
                    "different file than the one torchvision published; retry, or fetch it from the original URL.",
                    expected=prefix,
                    actual=actual,
                )
        else:
            # No hash to compare: the file must at least be the checkpoint it claims to be.
            try:
                state = load_file(
                    tmp, state_key=source.state_key, pickle_globals=source.pickle_globals, name=name
                )
                if check is not None:
                    check(state)
            except WeightsError as e:
                raise _unusable(e, f"{name} from {url}", discarded) from None
        os.replace(tmp, dest)
        log.info("downloaded %s (%s) to %s", name, format_progress(done, total), dest)
        return dest


# -- Hugging Face hub files ---------------------------------------------------------------------------------


def hf_fix(source: WeightsSource) -> str:
    files = " ".join(f for f in (source.filename, source.config_file) if f)
    rev = f" --revision {source.revision}" if source.revision else ""
    return (
        f"On a machine with internet run: hf download {source.repo_id} {files}{rev} "
        f"and copy the cache ({hf_cache_dir()}) here, or set HF_ENDPOINT to a mirror that has it."
    )


def hf_cached(source: WeightsSource, filename: str | None = None) -> Path | None:
    """The cached file of a hub source (or another file of its repo at its revision), without any request."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        source.repo_id,
        filename or source.filename,
        cache_dir=str(hf_cache_dir()),
        revision=source.revision,
    )
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


def hf_size(source: WeightsSource, timeout: float) -> int | None:
    """The file size the hub announces (one HEAD request), or None when it cannot be asked."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    endpoint = hf_endpoint()
    url = hf_hub_url(source.repo_id, source.filename, revision=source.revision, endpoint=endpoint)
    try:
        return get_hf_file_metadata(url, timeout=timeout, endpoint=endpoint, token=False).size
    except Exception:  # offline, unreachable, 404: the size is simply unknown
        return None


def _bar_class(flight: _Flight | None):
    """A stand-in for huggingface_hub's tqdm bar that forwards byte counts to ``flight`` (and draws nothing)."""

    class _Bar:
        def __init__(self, *args, total: int | None = None, initial: int = 0, **kwargs):
            self.n, self.total = initial, total
            if flight is not None:
                flight.report(self.n, total)

        def update(self, n: int = 1) -> None:
            self.n += n
            if flight is not None:
                flight.report(self.n, self.total)

        def close(self) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> bool:
            return False

    return _Bar


def _sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _evict(pointer: Path) -> None:
    """Remove a hub cache entry (the snapshot link and the blob it points to)."""
    blob = pointer.resolve()
    pointer.unlink(missing_ok=True)
    if blob != pointer:
        blob.unlink(missing_ok=True)


def _hf_error(source: WeightsSource, e: Exception, timeout: float) -> WeightsError:
    from huggingface_hub import errors

    what = f"{source.repo_id}/{source.filename}" + (
        f" at revision {source.revision}" if source.revision else ""
    )
    where = hf_endpoint()
    if isinstance(e, errors.RevisionNotFoundError):
        return DownloadError(
            f"{where} has no revision {source.revision} of {source.repo_id}. " + hf_fix(source)
        )
    if isinstance(e, errors.RemoteEntryNotFoundError):
        return DownloadError(f"{where} has no file {what}. " + hf_fix(source))
    if isinstance(e, errors.RepositoryNotFoundError):
        return DownloadError(
            f"{where} has no repository {source.repo_id} (or it is private). " + hf_fix(source)
        )
    if isinstance(e, errors.LocalEntryNotFoundError):
        return DownloadError(
            f"Could not reach {where} to download {what} (no answer within {timeout:g} s, or a network error). "
            + hf_fix(source)
        )
    text = str(e)
    if "Consistency check failed" in text:
        m = re.search(r"size (\d+) but has size (\d+)", text)
        expected, actual = (int(m.group(1)), int(m.group(2))) if m else (-1, -1)
        return SizeMismatch(
            f"{what} from {where} is incomplete: the hub announced {expected} bytes but sent {actual}. "
            "The download was discarded. Retry; if it keeps failing the endpoint is broken.",
            expected=expected,
            actual=actual,
        )
    return DownloadError(
        f"Downloading {what} from {where} failed ({type(e).__name__}: {text[:300]}). " + hf_fix(source)
    )


def hf_download_config(source: WeightsSource, *, timeout: float) -> Path | None:
    """Download the source's ``config_file`` (small) into the hub cache; None when the repo has none."""
    from huggingface_hub import errors, hf_hub_download

    try:
        return Path(
            hf_hub_download(
                source.repo_id,
                source.config_file,
                revision=source.revision,
                cache_dir=str(hf_cache_dir()),
                endpoint=hf_endpoint(),
                etag_timeout=timeout,
                token=False,
                tqdm_class=_bar_class(None),
            )
        )
    except errors.RemoteEntryNotFoundError:
        return None
    except Exception as e:
        raise _hf_error(source, e, timeout) from None


def remove_dead_incomplete(source: WeightsSource) -> None:
    """Remove ``huggingface_hub``'s partial blobs (``<etag>.<id>.incomplete``) of ``source``'s repo whose
    download died with its process: nobody holds the blob's lock (``.locks/<repo>/<etag>.lock``)."""
    from huggingface_hub.file_download import repo_folder_name

    folder = repo_folder_name(repo_id=source.repo_id or "", repo_type="model")
    locks = hf_cache_dir() / ".locks" / folder
    for partial in (hf_cache_dir() / folder / "blobs").glob("*.incomplete"):
        _remove_if_free(partial, locks / f"{partial.name.split('.', 1)[0]}.lock")


def download_hf_file(
    flight: _Flight, source: WeightsSource, *, timeout: float, check: StateCheck | None
) -> Path:
    """``hf_hub_download`` with progress into ``flight``, then the SHA-256 (LFS ETag) and key checks."""
    from huggingface_hub import hf_hub_download

    remove_dead_incomplete(source)
    if source.config_file:
        hf_download_config(source, timeout=timeout)
    try:
        path = Path(
            hf_hub_download(
                source.repo_id,
                source.filename,
                revision=source.revision,
                cache_dir=str(hf_cache_dir()),
                endpoint=hf_endpoint(),
                etag_timeout=timeout,
                token=False,
                tqdm_class=_bar_class(flight),
            )
        )
    except _Abandoned:
        raise
    except Exception as e:
        raise _hf_error(source, e, timeout) from None
    what = f"{source.repo_id}/{source.filename}"
    etag = path.resolve().name  # the blob's name is the file's ETag: its SHA-256 for LFS files
    if re.fullmatch(r"[0-9a-f]{64}", etag):
        actual = _sha256_file(path)
        if actual != etag:
            _evict(path)
            raise HashMismatch(
                f"{what} from {hf_endpoint()} failed its integrity check: its SHA-256 is {actual}, but the hub "
                f"announced {etag}. The file was removed from the cache. Retry; if it keeps failing the endpoint "
                "serves a different file.",
                expected=etag,
                actual=actual,
            )
    if check is not None:
        try:
            check(
                load_file(path, state_key=source.state_key, pickle_globals=source.pickle_globals, name=what)
            )
        except WeightsError as e:
            _evict(path)
            raise _unusable(e, what, "It was removed from the cache.") from None
    return path
