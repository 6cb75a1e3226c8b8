"""Models built once and shared; results kept in a bounded LRU.

:class:`ModelCache`: the cache's lock guards only the dictionary. Building a model (which may download
its weights) happens outside it, so one slow model never blocks another; callers asking for the same model
at once wait on one shared build (a per-name future) instead of building it twice. A failed build is not
cached: every waiter gets the error and the next request tries again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

import torch
from torch import nn

import mvt

Builder = Callable[[str, torch.device], nn.Module]


def build_model(name: str, device: torch.device) -> nn.Module:
    """The default builder: ``mvt.create_model`` (weights from the usual caches)."""
    return mvt.create_model(name, device=device)


class ModelCache:
    """Models by name, built once by ``builder(name, device)``; a lock per model for work that must not
    overlap on one model object (autograd, captum hooks)."""

    def __init__(self, device: str | torch.device = "cpu", builder: Builder = build_model) -> None:
        self.device = torch.device(device)
        self._builder = builder
        self._futures: dict[str, Future] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

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
            future.set_result(model)
        return future.result()

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

    def loaded(self) -> list[str]:
        """Names of the models built so far."""
        with self._lock:
            return [n for n, f in self._futures.items() if f.done() and f.exception() is None]


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ResultCache(Generic[K, V]):
    """A bounded, thread-safe LRU."""

    def __init__(self, max_items: int = 16) -> None:
        self.max_items = max_items
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def drop(self, which: Callable[[K], bool]) -> None:
        """Remove every item whose key ``which`` accepts."""
        with self._lock:
            for key in [k for k in self._items if which(k)]:
                del self._items[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
