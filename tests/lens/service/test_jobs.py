"""lens.service.jobs: a comparison in progress — cached results first, then the quickest model; downloads that
never hold the compute slot; the job knows its runner by four methods (a fake runner drives it here)."""

from __future__ import annotations

import pickle
import threading
import time

import pytest

import lens
from lens import jobs, present
from lens.core.request import ClipInfo, Request
from tests.test_app import make_moving_square

SMALL = ["mvit_t.untrained", "hvt_t.untrained"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_moving_square(tmp_path_factory.mktemp("jobs") / "square.mp4", seed=31)


def test_a_job_yields_cached_results_first_then_the_fastest_model(tmp_path, clip):
    svc = lens.Service(out_dir=tmp_path / "out")
    svc.analyse(clip, ["hvt_t.untrained"], ["attention"])
    svc.took("vivit_t1.untrained", 0.01)  # known to be quick
    svc.took("mvit_t.untrained", 50.0)  # known to be slow
    said: list[str] = []
    job = svc.analyse_iter(
        clip,
        ["mvit_t.untrained", "vivit_t1.untrained", "hvt_t.untrained"],
        ["attention"],
        progress=lambda f, w: said.append(w),
    )
    order = [(i, e.name) for i, e in job]
    assert order == [(2, "hvt_t.untrained"), (1, "vivit_t1.untrained"), (0, "mvit_t.untrained")]
    assert [e.name for e in job.analysis.entries] == [
        "mvit_t.untrained",
        "vivit_t1.untrained",
        "hvt_t.untrained",
    ]
    assert any("next: mvit_t.untrained" in w for w in said), "progress says what is left"
    assert svc.expected_seconds("mvit_t.untrained") < 50.0, "the time it really took replaces the guess"


def test_a_partial_job_reads_as_waiting_entries_and_an_unknown_model_is_a_clear_request_error(tmp_path, clip):
    svc = lens.Service(out_dir=tmp_path / "out")
    job = svc.analyse_iter(clip, SMALL, ["attention"])
    it = iter(job)
    next(it)
    ref = job.ref()
    got = svc.get(ref)
    assert any(
        isinstance(e, lens.ModelError) and e.pending and "not finished yet" in e.message for e in got.entries
    )
    shown = [present.panel_screen(p, i, str) for i, p in enumerate(svc.render(got))]
    assert sum("mvt-pending" in s.html for s in shown) == 1, (
        "a model still running reads as waiting, not failed"
    )
    with pytest.raises(RuntimeError, match="iterate it to the end"):
        job.analysis  # noqa: B018
    list(it)
    assert job.finished and all(isinstance(e, lens.ModelResult) for e in job.analysis.entries)
    with pytest.raises(lens.LensError, match="unknown model 'nope_t.untrained'"):
        svc.analyse_iter(clip, ["nope_t.untrained"])


def test_two_requests_never_run_two_models_at_once_on_one_compute_slot(tmp_path, clip, monkeypatch):
    svc = lens.Service(out_dir=tmp_path / "out", compute_slots=1)
    running, peak, lock = [0], [0], threading.Lock()
    real = svc._run_model

    def counted(*a, **k):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.05)
            return real(*a, **k)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(svc, "_run_model", counted)
    clips = [make_moving_square(tmp_path / f"c{i}.mp4", seed=40 + i) for i in range(2)]
    threads = [threading.Thread(target=svc.analyse, args=(c, SMALL, ["attention"])) for c in clips]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert peak[0] == 1


def test_a_model_whose_weights_cannot_be_had_is_an_error_entry_in_its_own_place(tmp_path, clip, monkeypatch):
    monkeypatch.setenv("MVT_OFFLINE", "1")
    svc = lens.Service(out_dir=tmp_path / "out")
    t0 = time.monotonic()
    a = svc.analyse(clip, ["vivit_b_16x2.k400", "hvt_t.untrained"], ["attention"])
    assert time.monotonic() - t0 < 60, "offline: an answer, not a stall"
    err = a.entries[0]
    assert isinstance(err, lens.ModelError) and "MVT_OFFLINE" in err.message
    assert isinstance(a.entries[1], lens.ModelResult)
    assert jobs.needs_download("vivit_b_16x2.k400", []) and not jobs.needs_download("hvt_t.synth", [])


class FakeRunner:
    """A runner without models (what a job needs, and nothing else): results made up on the spot, downloads that
    finish at once or fail, and every run recorded — as pickled bytes, the way a ZeroGPU worker would get it."""

    def __init__(self, seconds: dict[str, float], *, kept=(), downloads=(), failing=()) -> None:
        self.seconds, self.kept = seconds, {k: v for k, v in kept}
        self.downloads, self.failing = set(downloads), set(failing)
        self.runs: list[tuple[Request, list[str]]] = []

    def cached(self, key, who=None):
        return self.kept.get(key)

    def download(self, name):
        if name not in self.downloads:
            return None
        d = jobs.Download(name)
        d.error = OSError(f"{name}: the server sent nothing (test)") if name in self.failing else None
        d.finished.set()
        return d

    def expected_seconds(self, name):
        return self.seconds[name]

    def run(self, request, names, progress, who=None):
        request, names = pickle.loads(pickle.dumps((request, list(names))))  # plain values only
        self.runs.append((request, names))
        progress(0.5, f"{names[0]}: forward")
        return [result(n, request) for n in names]


def result(name: str, request: Request) -> lens.ModelResult:
    import numpy as np

    frames = np.zeros((2, 4, 4, 3), np.uint8)
    return lens.ModelResult(name, "made up", False, frames, np.zeros(2), 1.0, [("a", 1.0)], 0, None)


def test_a_job_talks_to_its_runner_by_four_methods_and_streams_quickest_first():
    clip = ClipInfo("c.mp4", "0" * 64, 1.0, 8.0, 4, 4)
    request = Request(clip, ("slow", "cached", "quick", "fails", "fetched"), ("attention",))
    kept = [(request.key("cached"), result("cached", request))]
    runner = FakeRunner(
        {"slow": 9.0, "cached": 0.0, "quick": 0.1, "fails": 0.0, "fetched": 1.0},
        kept=kept,
        downloads={"fails", "fetched"},
        failing={"fails"},
    )
    said: list[str] = []
    job = jobs.Job(runner, request, lambda frac, what: said.append(what))
    order = [(i, e.name) for i, e in job]
    assert order == [(1, "cached"), (3, "fails"), (2, "quick"), (4, "fetched"), (0, "slow")]
    assert isinstance(job.entries[3], lens.ModelError) and "sent nothing" in job.entries[3].message
    assert [names for _, names in runner.runs] == [["quick"], ["fetched"], ["slow"]], "one run per model here"
    assert all(r == request for r, _ in runner.runs), "the request travels whole, by value"
    assert "download weights" in job.entries[4].timings
    assert "quick: forward (2 of 5 done; next: slow, fetched)" in said, (
        "the runner says what it does, the job what is left"
    )
    assert [e.name for e in job.analysis.entries] == list(request.models)
    assert job.analysis.keys[0] == request.key("slow") and job.analysis.keys[3] is None


def test_a_one_call_runner_gets_every_model_at_once_once_the_downloads_are_in():
    """ZeroGPU: one run (one GPU call) for all the models not cached; a failed download stays its own error."""
    clip = ClipInfo("c.mp4", "0" * 64, 1.0, 8.0, 4, 4)
    request = Request(clip, ("slow", "cached", "quick", "fails", "fetched"), ("attention",))
    runner = FakeRunner(
        {"slow": 9.0, "cached": 0.0, "quick": 0.1, "fails": 0.0, "fetched": 1.0},
        kept=[(request.key("cached"), result("cached", request))],
        downloads={"fails", "fetched"},
        failing={"fails"},
    )
    runner.zero = object()  # a ZeroGPU runner
    said: list[tuple[float, str]] = []
    job = jobs.Job(runner, request, lambda frac, what: said.append((frac, what)))
    order = [name for _, e in job for name in [e.name]]
    assert order[:2] == ["cached", "fails"] and sorted(order[2:]) == ["fetched", "quick", "slow"]
    assert [sorted(names) for _, names in runner.runs] == [["fetched", "quick", "slow"]], "one run for all"
    assert "download weights" in job.entries[4].timings
    assert any("forward" in w and 0 < f < 1 for f, w in said), "the runner's progress spans the whole run"
    assert [e.name for e in job.analysis.entries] == list(request.models)
