"""Weights by model name: availability for labels, background prefetch for a Space, and the CLI's download.

::

    weights_status("mvit_v2_s.k400")            # Status: cached / downloadable(size) / unavailable(reason)
    weights_status("mvit_v2_s.k400").describe() # "downloads 132 MB on first use"
    prefetch(["mvit_v2_s.k400", "vivit_b_16x2.k400"], progress)   # {name: None | WeightsError}; never raises
    download(["*.k400"])                        # the CLI: tqdm bars on stderr, returns an exit code

A file shared by several models (``mmvit_s.k400init`` reads MViT v2-S's file) is downloaded once; a model
already being downloaded for someone else is waited for, not downloaded twice (see :mod:`mvt.weights.fetch`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable

from . import weights
from .weights import Status, WeightsError, WeightsSource
from .zoo import get_spec, keys_check, list_models

log = logging.getLogger("mvt.prefetch")

NamedProgress = Callable[[str, int, "int | None"], None]
"""``progress(model_name, done_bytes, total_bytes)``."""


def weights_status(name: str, *, probe: bool = True) -> Status:
    """Where ``name``'s weights stand: see :func:`mvt.weights.status`."""
    return weights.status(get_spec(name).weights, probe=probe)


def expand(patterns: Iterable[str]) -> list[str]:
    """Model names from names, globs (``"*.k400"``) or checkpoint spec strings (``file:…``, ``url:…``,
    ``hub:…``, kept as given, so another process — a Ray worker — resolves them the same way), in order,
    without repeats; unknown names raise KeyError, unusable checkpoints :class:`WeightsError`."""
    names: list[str] = []
    for p in patterns:
        if p.startswith(("file:", "url:", "hub:")):
            get_spec(p)  # recognised (and downloaded) now: a bad file fails before any clip is read
            hits = [p]
        else:
            hits = list_models(p) if any(c in p for c in "*?[") else [get_spec(p).name]
        if not hits:
            raise KeyError(f"no model matches {p!r}")
        names += [n for n in hits if n not in names]
    return names


def _fetch(name: str, progress: weights.ProgressFn | None, timeout: float | None) -> None:
    spec = get_spec(name)
    source: WeightsSource = spec.weights
    if source.kind == "none":
        return
    if source.kind == "file":
        weights.resolve(source)  # shipped: only says clearly when it is missing
        return
    weights.resolve(source, progress=progress, timeout=timeout, check=keys_check(name))
    if source.kind == "hf" and source.config_file:
        weights.class_names(source)  # the config beside the weights (normally fetched with them)


def prefetch(
    names: Iterable[str],
    progress: NamedProgress | None = None,
    *,
    timeout: float | None = None,
) -> dict[str, WeightsError | None]:
    """Make sure each model's weights are on disk, one model after another; for a background thread.

    Returns ``{name: None}`` for each model whose weights are ready and ``{name: error}`` for each that failed
    (offline, network, integrity); never raises. Without ``progress`` it logs every ~10 % at INFO.
    """
    outcome: dict[str, WeightsError | None] = {}
    for name in names:
        cb = (lambda d, t, n=name: progress(n, d, t)) if progress is not None else _logger(name)
        try:
            _fetch(name, cb, timeout)
            outcome[name] = None
        except WeightsError as e:
            log.warning("prefetch %s: %s", name, e)
            outcome[name] = e
        except KeyError as e:
            outcome[name] = WeightsError(str(e))
    return outcome


def _logger(name: str) -> weights.ProgressFn:
    meter = weights.RateMeter()
    last = [-1]

    def cb(done: int, total: int | None) -> None:
        step = int(10 * done / total) if total else done // (50 * weights.MB)
        text = meter(done, total)
        if step != last[0]:
            last[0] = step
            log.info("prefetch %s: %s", name, text)

    return cb


def download(patterns: Iterable[str], *, file=None, timeout: float | None = None) -> int:
    """The CLI's ``download`` command: fetch each model's weights with a tqdm bar; 0 if all are ready."""
    from tqdm import tqdm

    file = file or sys.stderr
    try:
        names = expand(patterns)
    except KeyError as e:
        print(f"error: {e}", file=file)
        return 2
    failed = 0
    for name in names:
        st = weights_status(name)
        if st.state == "cached":
            print(f"{name}: cached", file=file)
            continue
        bar = tqdm(
            desc=name, unit="B", unit_scale=True, unit_divisor=1024, file=file, total=st.size, leave=True
        )
        try:
            t0 = time.monotonic()

            def cb(done: int, total: int | None, bar=bar) -> None:
                if total is not None and bar.total != total:
                    bar.total = total
                bar.update(done - bar.n)

            _fetch(name, cb, timeout)
            bar.close()
            print(f"{name}: ready ({time.monotonic() - t0:.1f} s)", file=file)
        except WeightsError as e:
            bar.close()
            print(f"{name}: {e}", file=file)
            failed += 1
    return 1 if failed else 0
