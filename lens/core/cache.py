"""Models built once and shared; results kept in a bounded LRU.

:class:`ModelCache`: the cache's lock guards only the dictionary. Building a model (which may download
its weights) happens outside it, so one slow model never blocks another; callers asking for the same model
at once wait on one shared build (a per-name future) instead of building it twice. A failed build is not
cached: every waiter gets the error and the next request tries again. With ``max_bytes`` the built models'
parameters and buffers are held under that many bytes: the least recently used model goes first, and never a
model in use (:meth:`ModelCache.pinned`) nor the one just asked for (so one model bigger than the bound still
runs).

:class:`ResultCache` keeps at most ``max_items`` and, with ``max_bytes``, at most that many bytes of arrays and
tensors (:func:`nbytes`, measured again on every insertion: a result's deferred maps grow it after it was
kept), dropping the least recently used.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Generic, TypeVar

import numpy as np
import torch
from torch import nn

import mvt

Builder = Callable[[str, torch.device], nn.Module]


def build_model(name: str, device: torch.device) -> nn.Module:
    """The default builder: ``mvt.create_model`` (weights from the usual caches)."""
    return mvt.create_model(name, device=device)


def model_bytes(model: nn.Module) -> int:
    """Bytes of a model's parameters and buffers (a storage shared by two of them counted once)."""
    seen: dict[int, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        storage = t.untyped_storage()
        seen[storage.data_ptr() or id(storage)] = storage.nbytes()
    return sum(seen.values())


def nbytes(value: object, _seen: set[int] | None = None, _depth: int = 0) -> int:
    """Bytes of the numpy arrays and tensors reachable from ``value`` (through containers, dataclasses and
    object attributes; each buffer counted once; modules and 12 levels down not walked)."""
    seen = set() if _seen is None else _seen
    if id(value) in seen or _depth > 12 or value is None or isinstance(value, (str, bytes, int, float, bool)):
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        base = value
        while isinstance(base.base, np.ndarray):
            base = base.base
        key = id(base) if base is not value else id(value)
        if key != id(value) and key in seen:
            return 0
        seen.add(key)
        return int(base.nbytes)
    if isinstance(value, torch.Tensor):
        storage = value.untyped_storage()
        key = storage.data_ptr() or id(storage)
        if ("t", key) in seen:
            return 0
        seen.add(("t", key))  # type: ignore[arg-type]
        return int(storage.nbytes())
    if isinstance(value, nn.Module):
        return 0
    if isinstance(value, dict):
        items = list(value.values()) + list(value.keys())
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    elif dataclasses.is_dataclass(value) or hasattr(value, "__dict__") or hasattr(value, "__slots__"):
        items = list(getattr(value, "__dict__", {}).values())
        items += [getattr(value, n, None) for n in getattr(type(value), "__slots__", ())]
    else:
        return 0
    return sum(nbytes(v, seen, _depth + 1) for v in items)


class ModelCache:
    """Models by name, built once by ``builder(name, device)``; a lock per model for work that must not
    overlap on one model object (autograd, captum hooks); with ``max_bytes``, the built models held under
    that many bytes (least recently used evicted, never one in use)."""

    def __init__(
        self, device: str | torch.device = "cpu", builder: Builder = build_model, max_bytes: int | None = None
    ) -> None:
        self.device = torch.device(device)
        self.max_bytes = max_bytes
        self._builder = builder
        self._futures: OrderedDict[str, Future] = OrderedDict()
        """Built (or building) models, least recently used first."""
        self._sizes: dict[str, int] = {}
        self._users: Counter[str] = Counter()
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.evicted: list[str] = []
        """The models evicted so far, in order (what a test or a bench reads)."""

    def get(self, name: str, precision: str = "fp32") -> nn.Module:
        """The model ``name``, building it on first use (concurrent first uses share one build).
        ``precision="int8"``: a copy with int8 dynamically quantised linears (:mod:`mvt.quantize`), cached
        under ``name@int8`` with its own lock."""
        key = name if precision == "fp32" else f"{name}@{precision}"
        with self._lock:
            future = self._futures.get(key)
            owner = future is None
            if owner:
                future = self._futures[key] = Future()
                self._locks.setdefault(key, threading.Lock())
            self._futures.move_to_end(key)
        if owner:
            try:
                if precision == "fp32":
                    model = self._builder(name, self.device)
                elif precision == "int8":
                    from mvt.quantize import quantize_linears

                    model = quantize_linears(self.get(name))
                else:
                    raise ValueError(f"unknown precision {precision!r}")
            except BaseException as e:
                with self._lock:
                    self._futures.pop(key, None)  # not cached: the next request tries again
                future.set_exception(e)
                raise
            with self._lock:
                self._sizes[key] = model_bytes(model)
            future.set_result(model)
        model = future.result()
        self._evict(keep=key)
        return model

    @contextmanager
    def pinned(self, name: str, precision: str = "fp32") -> Iterator[None]:
        """Within the block the model ``name`` (built or not yet) is in use: never evicted."""
        key = name if precision == "fp32" else f"{name}@{precision}"
        with self._lock:
            self._users[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._users[key] -= 1
                if self._users[key] <= 0:
                    del self._users[key]
            self._evict()

    def bytes(self) -> int:
        """Bytes of the models built now (:func:`model_bytes`)."""
        with self._lock:
            return sum(self._sizes.get(k, 0) for k in self._futures)

    def _evict(self, keep: str | None = None) -> None:
        """Drop least recently used models, not in use and not ``keep``, until under :attr:`max_bytes`."""
        if self.max_bytes is None:
            return
        with self._lock:
            total = sum(self._sizes.get(k, 0) for k in self._futures)
            for key in list(self._futures):
                if total <= self.max_bytes:
                    return
                future = self._futures[key]
                if key == keep or self._users[key] > 0 or not future.done() or key not in self._sizes:
                    continue
                del self._futures[key]
                total -= self._sizes.pop(key)
                self.evicted.append(key)

    def lock(self, name: str) -> threading.Lock:
        """The lock of model ``name`` (hold it for autograd or hook-based work on the shared model)."""
        with self._lock:
            return self._locks.setdefault(name, threading.Lock())

    def peek(self, name: str) -> nn.Module | None:
        """The model ``name`` if it is built already (never builds or waits)."""
        with self._lock:
            future = self._futures.get(name)
        if future is None or not future.done() or future.exception() is not None:
            return None
        return future.result()

    def forget(self, name: str) -> None:
        """Drop the built model ``name`` (the next :meth:`get` builds it again)."""
        with self._lock:
            self._futures.pop(name, None)
            self._sizes.pop(name, None)

    def loaded(self) -> list[str]:
        """Names of the models built so far."""
        with self._lock:
            return [n for n, f in self._futures.items() if f.done() and f.exception() is None]


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ResultCache(Generic[K, V]):
    """A bounded, thread-safe LRU: at most ``max_items`` and (``max_bytes``) at most that many bytes by
    ``size`` (default :func:`nbytes`); the item just put is kept even when it alone is over. ``on_evict(key,
    value)`` is told of every item that leaves (evicted, dropped or cleared; called outside the lock), so that
    what was derived from it (another cache's entries) can leave with it."""

    def __init__(
        self,
        max_items: int = 16,
        max_bytes: int | None = None,
        size: Callable[[V], int] = nbytes,
        on_evict: Callable[[K, V], None] | None = None,
    ) -> None:
        self.max_items, self.max_bytes, self._size = max_items, max_bytes, size
        self.on_evict = on_evict
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: K, value: V) -> None:
        gone: list[tuple[K, V]] = []
        with self._lock:
            old = self._items.get(key)
            if old is not None and old is not value:
                gone.append((key, old))
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                gone.append(self._items.popitem(last=False))
            if self.max_bytes is not None:
                sizes = {k: self._size(v) for k, v in self._items.items()}
                total = sum(sizes.values())
                for k in list(self._items)[:-1]:
                    if total <= self.max_bytes:
                        break
                    gone.append((k, self._items.pop(k)))
                    total -= sizes[k]
        self._evicted(gone)

    def _evicted(self, gone: list[tuple[K, V]]) -> None:
        if self.on_evict is not None:
            for key, value in gone:
                self.on_evict(key, value)

    def bytes(self) -> int:
        """Bytes held now (by ``size``)."""
        with self._lock:
            return sum(self._size(v) for v in self._items.values())

    def clear(self) -> None:
        with self._lock:
            gone = list(self._items.items())
            self._items.clear()
        self._evicted(gone)

    def drop(self, which: Callable[[K], bool]) -> None:
        """Remove every item whose key ``which`` accepts."""
        with self._lock:
            gone = [(k, self._items.pop(k)) for k in [k for k in self._items if which(k)]]
        self._evicted(gone)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
