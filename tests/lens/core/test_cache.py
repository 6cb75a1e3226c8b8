"""lens.core.cache: one shared build per model name, a failed build not cached, a bounded LRU."""

from __future__ import annotations

import sys
import threading
import time

import torch

import mvt
from lens.core.cache import ModelCache, ResultCache


class SlowBuilder:
    """Builds a tiny module after waiting for ``release`` (per name); counts builds."""

    def __init__(self) -> None:
        self.builds: dict[str, int] = {}
        self.started: dict[str, threading.Event] = {}
        self.release: dict[str, threading.Event] = {}
        self.fail: set[str] = set()
        self._lock = threading.Lock()

    def events(self, name: str) -> tuple[threading.Event, threading.Event]:
        with self._lock:
            return self.started.setdefault(name, threading.Event()), self.release.setdefault(
                name, threading.Event()
            )

    def __call__(self, name: str, device: torch.device) -> torch.nn.Module:
        started, release = self.events(name)
        with self._lock:
            self.builds[name] = self.builds.get(name, 0) + 1
        started.set()
        assert release.wait(10), "test builder was never released"
        if name in self.fail:
            raise mvt.WeightsError(f"{name}: the download failed (test)")
        return torch.nn.Linear(1, 1)


def _start(fn, *args) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 (the test inspects it)
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def _wait_until_waiting_on_a_future(*threads: threading.Thread, timeout: float = 10.0) -> None:
    """Poll the threads' stacks until one is inside ``Future.result`` (a condition, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frames = sys._current_frames()
        for thread in threads:
            frame = frames.get(thread.ident)
            while frame is not None:
                if frame.f_code.co_name == "result" and "futures" in frame.f_code.co_filename:
                    return
                frame = frame.f_back
        time.sleep(0.01)
    raise AssertionError("the second caller never waited on the shared build")


def test_two_callers_share_one_build_and_another_model_is_not_blocked():
    builder = SlowBuilder()
    cache = ModelCache("cpu", builder)
    a1, r1 = _start(cache.get, "a")
    a2, r2 = _start(cache.get, "a")
    started_a, release_a = builder.events("a")
    assert started_a.wait(5)
    _wait_until_waiting_on_a_future(a1, a2)  # one builds, the other waits on its future
    # while "a" is still building (its builder is blocked), "b" builds and returns
    b, rb = _start(cache.get, "b")
    builder.events("b")[1].set()
    b.join(5)
    assert not b.is_alive() and isinstance(rb["value"], torch.nn.Module), "b waited for a's build"
    assert a1.is_alive() and a2.is_alive()
    release_a.set()
    a1.join(5), a2.join(5)
    assert r1["value"] is r2["value"], "both callers get the one model"
    assert builder.builds == {"a": 1, "b": 1}
    assert cache.get("a") is r1["value"] and builder.builds["a"] == 1
    assert sorted(cache.loaded()) == ["a", "b"]


def test_a_failed_build_reaches_every_waiter_and_is_not_cached():
    builder = SlowBuilder()
    builder.fail.add("bad")
    cache = ModelCache("cpu", builder)
    t1, r1 = _start(cache.get, "bad")
    t2, r2 = _start(cache.get, "bad")
    assert builder.events("bad")[0].wait(5)
    _wait_until_waiting_on_a_future(t1, t2)  # the second caller waits on the shared build, not a new one
    builder.events("bad")[1].set()
    t1.join(5), t2.join(5)
    assert isinstance(r1["error"], mvt.WeightsError) and isinstance(r2["error"], mvt.WeightsError)
    assert builder.builds["bad"] == 1
    builder.fail.clear()
    assert isinstance(cache.get("bad"), torch.nn.Module) and builder.builds["bad"] == 2  # tried again


def test_result_cache_is_a_bounded_lru():
    c: ResultCache[str, int] = ResultCache(max_items=2)
    c.put("a", 1), c.put("b", 2)
    assert c.get("a") == 1
    c.put("c", 3)  # evicts b, the least recently used
    assert c.get("b") is None and c.get("a") == 1 and len(c) == 2


def test_every_item_that_leaves_is_told_once():
    gone: list[tuple[str, int]] = []
    c: ResultCache[str, int] = ResultCache(max_items=2, on_evict=lambda k, v: gone.append((k, v)))
    c.put("a", 1), c.put("b", 2), c.put("c", 3)  # a evicted
    c.put("b", 20)  # b replaced
    c.drop(lambda k: k == "c")
    assert gone == [("a", 1), ("b", 2), ("c", 3)]
    c.clear()
    assert gone[-1] == ("b", 20) and len(c) == 0


# -- bounded by bytes --------------------------------------------------------------------------------------------


class SizedBuilder:
    """``name`` → a bias-free Linear of ``sizes[name]`` float32 weights (4 bytes each); counts builds."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes, self.builds = sizes, []

    def __call__(self, name: str, device: torch.device) -> torch.nn.Module:
        self.builds.append(name)
        return torch.nn.Linear(self.sizes[name], 1, bias=False)


def test_models_held_under_a_byte_bound_least_recently_used_first():
    from lens.core.cache import model_bytes

    b = SizedBuilder({"a": 100, "b": 100, "c": 100, "big": 1000})
    cache = ModelCache(builder=b, max_bytes=850)  # room for two of a, b, c (400 bytes each)
    assert model_bytes(cache.get("a")) == 400
    cache.get("b")
    cache.get("a")  # a used last: b is now the least recently used
    cache.get("c")
    assert cache.evicted == ["b"] and sorted(cache.loaded()) == ["a", "c"] and cache.bytes() == 800
    cache.get("b")  # built again: a is the least recently used now
    assert cache.evicted == ["b", "a"] and b.builds == ["a", "b", "c", "b"]
    big = cache.get("big")  # bigger than the bound alone: still served, the others make room
    assert isinstance(big, torch.nn.Linear) and cache.loaded() == ["big"]


def test_a_model_in_use_is_never_evicted():
    cache = ModelCache(builder=SizedBuilder({"a": 100, "b": 100, "c": 100}), max_bytes=500)
    with cache.pinned("a"):
        cache.get("a")
        cache.get("b")
        cache.get("c")  # over the bound: a is older but running, so b goes
        assert cache.evicted == ["b"] and sorted(cache.loaded()) == ["a", "c"]
    assert cache.evicted == ["b", "a"], "out of use and over the bound: a goes as its run ends"
    with cache.pinned("c"):
        cache.get("b")
        assert cache.loaded() == ["c", "b"], "c running, b just asked for: both kept while over"
    assert cache.evicted == ["b", "a", "c"] and cache.loaded() == ["b"]
    unbounded = ModelCache(builder=SizedBuilder({"a": 100, "b": 100}))
    unbounded.get("a"), unbounded.get("b")
    assert unbounded.evicted == [] and unbounded.bytes() == 800


def test_nbytes_counts_each_buffer_once_through_containers_and_attributes():
    import numpy as np

    from lens.core.cache import nbytes

    a = np.zeros(1000, np.uint8)
    t = torch.zeros(250)  # 1000 bytes
    holder = type("Holder", (), {})()
    holder.view, holder.tensor_view = a[10:20], t[:5]
    value = {"a": a, "again": [a, a[::2]], "t": (t, t.view(5, 50)), "obj": holder, "text": "x" * 10**6}
    assert nbytes(value) == 2000
    assert nbytes(torch.nn.Linear(1000, 1000)) == 0, "models are the model cache's to count"


def test_results_held_under_a_byte_bound_measured_again_on_every_put():
    import numpy as np

    cache: ResultCache[str, dict] = ResultCache(max_items=10, max_bytes=2500)
    for k in "abc":
        cache.put(k, {"v": np.zeros(1000, np.uint8)})
    assert cache.get("a") is None and cache.get("b") is not None and cache.bytes() == 2000
    grown = cache.get("b")
    grown["deferred"] = np.zeros(1000, np.uint8)  # a deferred map computed after it was kept
    cache.put("d", {"v": np.zeros(100, np.uint8)})
    assert cache.get("c") is None, "c was least recently used once b grew"
    assert cache.get("b") is not None and cache.get("d") is not None and cache.bytes() == 2100
    cache.put("huge", {"v": np.zeros(10_000, np.uint8)})
    assert len(cache) == 1 and cache.get("huge") is not None, "the item just put is kept even when over"
