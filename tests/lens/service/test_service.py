"""lens.Service: result keys, per-model errors, files only in out_dir, sessions, faithfulness scores."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import lens
import mvt
from lens.core import memory
from lens.core.request import ResultKey
from tests.test_app import make_moving_square

SMALL = ["mvit_t.untrained", "hvt_t.untrained"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_moving_square(tmp_path_factory.mktemp("svc") / "square.mp4", seed=3)


@pytest.fixture
def service(tmp_path, monkeypatch):
    svc = lens.Service(out_dir=tmp_path / "out")
    calls: list[str] = []
    real = svc._run_model
    monkeypatch.setattr(svc, "_run_model", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    svc.calls = calls
    return svc


def test_result_key_holds_clip_model_start_methods_and_target(service, clip):
    a = service.analyse(clip, SMALL[:1])
    assert service.calls == SMALL[:1]
    assert a.keys[0] == ResultKey(
        a.clip.sha256, SMALL[0], None, ("attention", "rollout"), None, (), "fp32", None
    )
    service.analyse(clip, SMALL[:1], ["rollout", "attention"])  # same methods in another order: cached
    assert len(service.calls) == 1
    service.analyse(clip, SMALL[:1], start_s=0.5)
    service.analyse(clip, SMALL[:1], ["rollout", "saliency"])
    t = service.analyse(clip, SMALL[:1], target=2)
    assert len(service.calls) == 4, "start, methods and target each change the key"
    assert t.results[0].target == 2 and t.results[0].top5 == a.results[0].top5
    assert len({k for k in service.results._items}) == 4


def test_windows_cover_the_clip_and_the_prediction_is_their_mean(service, clip):
    """A 2 s clip (24 frames at 12 fps): a SynthMotion-size model's 16-frame windows need 2 to tile it; the
    default (4 for this input size) is capped at that, each window explained for the mean's class."""
    r = service.analyse(clip, SMALL[:1], ["attention"]).results[0]
    assert len(r.seen) == 2 and r.coverage.count == 2 and r.coverage.needed == 2 and r.coverage.whole
    assert r.seen[0].times[0] == 0.0 and r.seen[-1].times[-1] == pytest.approx(23 / 12)
    probs = torch.stack([torch.tensor([p for _, p in sorted(w.top5)]) for w in r.seen])  # all 8 classes
    mean = dict(zip(sorted(lab for lab, _ in r.seen[0].top5), probs.mean(0).tolist()))
    assert [lab for lab, _ in r.top5] == sorted(mean, key=mean.get, reverse=True)[:5]
    assert all(p == pytest.approx(mean[lab], abs=1e-6) for lab, p in r.top5)
    assert {w.target for w in r.seen} == {r.target} and r.frames is r.seen[r.primary].frames
    one = service.analyse(clip, SMALL[:1], ["attention"], start_s=0.5).results[0]
    assert len(one.seen) == 1 and one.coverage.chosen == "start" and not one.coverage.whole
    assert one.times[0] == pytest.approx(0.5)
    keys = {k.windows for k in service.results._items}
    service.analyse(clip, SMALL[:1], ["attention"], windows="all")
    assert len(service.calls) == 3 and {k.windows for k in service.results._items} == keys | {0}
    with pytest.raises(lens.LensError, match="windows 'x'"):
        service.analyse(clip, SMALL[:1], windows="x")


def test_a_failing_model_is_an_error_entry_not_a_crash(service, clip, monkeypatch):
    real = service.models._builder

    def builder(name, device):
        if name == SMALL[1]:
            raise mvt.WeightsError(f"{name}: weights not cached; run `hf download ...`")
        return real(name, device)

    monkeypatch.setattr(service.models, "_builder", builder)
    a = service.analyse(clip, SMALL)
    assert [e.name for e in a.entries] == SMALL
    assert isinstance(a.entries[0], lens.ModelResult) and a.entries[1].error.endswith("run `hf download ...`")
    panels = service.render(a)
    assert panels[0].overlay.is_file() and panels[1].overlay is None and "hf download" in panels[1].error
    assert service.get(a.ref).errors == a.errors  # the error survives the round trip through the session


def test_unexpected_failures_are_contained(service, clip, monkeypatch):
    monkeypatch.setattr(service.models, "_builder", lambda name, device: 1 / 0)
    a = service.analyse(clip, SMALL[:1])
    assert a.results == [] and "ZeroDivisionError" in a.errors[0].message


def test_bad_requests_say_what_to_do(service, clip, tmp_path):
    with pytest.raises(lens.LensError, match="at least one model"):
        service.analyse(clip, [])
    with pytest.raises(lens.LensError, match="at most 4"):
        service.analyse(clip, SMALL * 3)
    with pytest.raises(lens.LensError, match="unknown model"):
        service.analyse(clip, ["nope_t.untrained"])
    with pytest.raises(lens.LensError, match="unknown explanation method"):
        service.analyse(clip, SMALL[:1], ["lrp"])
    with pytest.raises(lens.LensError, match="Upload a video"):
        service.analyse(None, SMALL[:1])
    with pytest.raises(lens.LensError, match="not a number"):
        service.analyse(clip, SMALL[:1], start_s="soon")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    with pytest.raises(mvt.VideoError):
        service.analyse(bad, SMALL[:1])
    assert service.calls == []
    a = service.analyse(clip, SMALL[:1], target=10_000)
    assert "class 10000 does not exist" in a.errors[0].message


def test_predictions_only_take_the_fast_path(service, clip):
    a = service.analyse(clip, SMALL[:1], methods=())
    r = a.results[0]
    assert a.methods == () and r.output is None and r.volumes == {} and "forward" in r.timings
    full = service.analyse(clip, SMALL[:1]).results[0]
    for (la, pa), (lb, pb) in zip(r.top5, full.top5):
        assert la == lb and pa == pytest.approx(pb, abs=1e-4)


def test_render_writes_only_into_its_folder_and_reuses_files(service, clip, tmp_path):
    a = service.analyse(clip, SMALL, ["rollout"])
    first = service.render(a, lens.Display("attention", stage=0))
    again = service.render(a, lens.Display("attention", stage=0))
    other = service.render(a, lens.Display("rollout", colormap="viridis", opacity=0.8))
    files = [p.overlay for p in first + other] + [p.strip for p in first + other]
    assert all(f.is_file() and f.parent == service.out_dir for f in files)
    assert [p.overlay for p in again] == [p.overlay for p in first]
    assert {p.overlay for p in other}.isdisjoint({p.overlay for p in first})
    assert all("rollout" in p.overlay.name for p in other)
    assert first[0].key == lens.VolumeKey("attention", 0)
    assert {p.name for p in tmp_path.iterdir()} == {"out"}, "nothing written outside the service's folder"
    # the stage as shown (1-based) is clamped to the model's stages; the last stage by default
    last = service.render(a, lens.Display.from_controls("attention", 9, "mean"))[0].key
    assert last == service.render(a, lens.Display("attention"))[0].key == lens.VolumeKey("attention", 2)
    # a view a model cannot give is an error in that model's panel only (the others are drawn)
    missing = service.render(a, lens.Display("saliency"))
    assert all(p.frames is None and "not computed for" in p.error and "tick it" in p.error for p in missing)
    mixed = service.render(a, lens.Display.from_controls("attention", 1, "max"))
    assert mixed[0].error is None and mixed[0].frames.is_file()
    assert mixed[1].result is not None and mixed[1].error == (
        "hvt_t.untrained has no max at stage 1: it offers mean."  # HVT has no CLS row per head
    )
    # heads are numbered as the app numbers them, and only the chosen stage's map is asked
    beyond = service.render(a, lens.Display.from_controls("attention", 3, "head 5"))[0].error
    assert (
        beyond
        == "mvit_t.untrained has no head 5 at stage 3: it offers mean, max, head 1, head 2, head 3, head 4."
    )
    assert service.render(a, lens.Display.from_controls("attention", 3, "head 4"))[0].error is None


def test_panels_carry_frames_times_weights_and_captions(service, clip):
    a = service.analyse(clip, SMALL[:1])
    p = service.render(a, lens.Display("attention"))[0]
    r = a.results[0]
    assert p.times == tuple(float(t) for w in r.seen for t in w.times) and len(p.weights) == len(p.times)
    assert len(r.seen) == 2 and len(p.windows) == 2 and p.window_of == (0,) * 16 + (1,) * 16
    assert sum(p.weights) == pytest.approx(1.0) and min(p.weights) >= 0
    from PIL import Image

    cols, rows = p.grid
    w, h = Image.open(p.frames).size
    assert (w, h) == (cols * r.frames.shape[2], rows * r.frames.shape[1]) and cols * rows >= len(p.times)
    assert any("CLS" in c for c in p.captions)
    from lens.render import captions

    captions.CAPTIONERS.append(lambda result, display, key, volume: f"note on {result.name}")
    try:
        q = service.render(a, lens.Display("attention", colormap="gray"))[0]
        assert q.captions[-1] == f"note on {r.name}", "a captioner added to the list is shown, no app change"
    finally:
        captions.CAPTIONERS.pop()


def test_overlays_share_one_frame_rate_rule(service, clip, tmp_path):
    a = service.analyse(clip, SMALL[:1])
    shown = service.render(a)[0].overlay
    written = lens.write_export(a, tmp_path / "export")
    exported = written[f"{SMALL[0]}:attention_2"]
    expected = lens.overlay_fps(a.results[0])
    assert mvt.probe(shown).fps == pytest.approx(expected) == pytest.approx(mvt.probe(exported).fps)


def test_a_session_keeps_a_handle_and_eviction_is_a_clear_error(tmp_path, clip):
    svc = lens.Service(out_dir=tmp_path, max_results=1)
    a = svc.analyse(clip, SMALL[:1])
    ref = a.ref
    assert svc.get(ref).results[0] is a.results[0]
    svc.analyse(clip, SMALL[1:])  # evicts the first result
    with pytest.raises(lens.LensError, match="evicted"):
        svc.get(ref)
    with pytest.raises(lens.LensError, match="Run a comparison first"):
        svc.get(None)


def test_what_is_drawn_from_a_result_leaves_the_caches_with_it(tmp_path, clip):
    """Panels and query geometries hold their result: when the result is evicted they go too, so the
    results cache's bounds (items, bytes) bound what a result keeps alive."""
    svc = lens.Service(out_dir=tmp_path, max_results=1)
    a = svc.analyse(clip, SMALL[:1], ["attention"])
    svc.render(a)
    svc.geometry(a.results[0])
    assert len(svc.panels) == 1 and len(svc.geometries) == 1
    svc.analyse(clip, SMALL[1:], ["attention"])  # evicts the first result
    assert len(svc.panels) == 0 and len(svc.geometries) == 0


def test_a_class_explained_for_a_session_goes_when_the_session_ends(tmp_path, clip):
    """A result for a chosen class lives while a session that asked it (or was served it) lives; a session
    ending drops its panels; the comparison itself (the predicted class) stays for the next visitor."""
    svc = lens.Service(out_dir=tmp_path)
    a = svc.analyse(clip, SMALL[:1], ["attention"], who="s1")
    svc.render(a, folder=svc.session_dir("s1"))
    one = svc.explain_class(a.ref, 0, "class 1", "grad_rollout", who="s1")
    svc.analyse(clip, SMALL[:1], one.request.methods, target=1, who="s2")  # s2 is served the same result
    explained = one.keys[0]
    assert explained.target == 1 and svc.results.get(explained) is not None and len(svc.panels) == 1
    svc.end_session("s1")
    assert svc.results.get(explained) is not None, "s2 still uses it"
    assert len(svc.panels) == 0, "s1's panels went with its folder"
    svc.end_session("s2")
    assert svc.results.get(explained) is None
    assert svc.results.get(a.keys[0]) is not None, "the comparison stays"
    held = svc.holding()  # what the log says at every session end (bench/soak.py reads it)
    assert held.startswith(f"results 1 ({svc.results.bytes() / 2**20:.0f} MB)") and "panels 0" in held, held


def test_a_session_ending_frees_what_reference_cycles_held(tmp_path):
    """Garbage in reference cycles (what requests leave, holding arrays) is freed when a session ends, not
    whenever Python's oldest generation happens to be collected; the heap account says what malloc holds."""
    import gc
    import weakref

    class Node:
        pass

    svc = lens.Service(out_dir=tmp_path)
    enabled = gc.isenabled()
    gc.disable()  # only the session's end may collect
    try:
        a, b = Node(), Node()
        a.other, b.other, a.data = b, a, np.ones(2**20)  # a cycle holding 8 MB
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None
        svc.end_session("s1")
        assert gone() is None, "the cycle outlived the session's end"
    finally:
        if enabled:
            gc.enable()
    held = memory.heap()
    assert held is None or held["used"] > 0 and held["free"] >= 0
    assert held is None or "heap used" in svc.holding()


def test_displays_that_draw_the_same_picture_share_one_panel(tmp_path, clip):
    """Rollout is computed once, not per stage, and has no heads: a stage or head asked of it (the app's
    controls after a point was asked at a stage) draws nothing new; attention at stage 1 does."""
    svc = lens.Service(out_dir=tmp_path)
    a = svc.analyse(clip, SMALL[:1], ["attention", "rollout"])
    plain = svc.render(a, lens.Display("rollout"))[0]
    same = svc.render(a, lens.Display("rollout", stage=1, head=0))[0]
    assert same is plain and len(svc.panels) == 1
    last = svc.render(a, lens.Display("attention"))[0]
    assert svc.render(a, lens.Display("attention", stage=99))[0] is last  # past the last stage: the last
    first = svc.render(a, lens.Display("attention", stage=0))[0]
    assert first.frames != last.frames and first.key.stage == 0


def test_a_report_page_is_made_once_per_analysis(tmp_path, clip, monkeypatch):
    from lens.files import report
    from lens.ui import api

    made = []
    real = report.report_html
    monkeypatch.setattr(report, "report_html", lambda *a, **k: made.append(1) or real(*a, **k))
    svc = lens.Service(out_dir=tmp_path)
    first = api.analyse(svc, str(clip), SMALL[:1], ["attention"], session="s1")
    second = api.analyse(svc, str(clip), SMALL[:1], ["attention"], session="s2")
    assert len(made) == 1 and first["report"] != second["report"]
    assert Path(first["report"]).read_text() == Path(second["report"]).read_text()
    api.analyse(svc, str(clip), SMALL[:1], ["rollout"], session="s1")  # another analysis: another page
    assert len(made) == 2


def test_faithfulness_scores_every_volume_against_the_baselines(service, clip):
    a = service.analyse(clip, SMALL[:1])
    scores = service.faithfulness(a, steps=2)[SMALL[0]]
    assert set(scores) == set(a.results[0].volumes) | {lens.VolumeKey("random"), lens.VolumeKey("center")}
    assert all(s["curves"].target == a.results[0].target for s in scores.values())
    rows = lens.scoring.table({SMALL[0]: scores})
    assert {r[1] for r in rows} >= {"stage 1", "random", "center", "Attention rollout through pooling"}


def test_score_model_scores_the_class_probability_and_restores_the_mode():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 2 * 8 * 8, 4)).train()
    x = torch.randn(1, 3, 2, 8, 8)
    vol = torch.rand(2, 8, 8).numpy()
    scores = lens.scoring.score_model(model, x, {"v": vol}, cells=(1, 4, 4), steps=2)
    c = scores["v"]["curves"]
    assert model.training, "the caller's train/eval mode is restored"
    with torch.no_grad():
        p = model.eval()(x).softmax(-1)[0]
    assert c.target == int(p.argmax()) and c.deletion[0] == pytest.approx(float(p.max()), abs=1e-6)


def test_session_folders_are_inside_the_service_folder_and_go_at_the_end(tmp_path):
    svc = lens.Service(out_dir=tmp_path / "out")
    folder = svc.session_dir("../../etc/passwd")
    assert folder.parent == svc.out_dir and folder.name == "session-etcpasswd"
    (folder / "x.jpg").write_bytes(b"x")
    svc.end_session("../../etc/passwd")
    assert not folder.exists() and svc.out_dir.exists()
    with pytest.raises(ValueError, match="not inside"):
        svc.render(lens.Analysis(lens.Request(lens.ClipInfo("a", "b", 1, 1, 1, 1), ()), []), folder=tmp_path)
    svc.close()
    assert not (tmp_path / "out").exists()


def test_the_service_owns_its_caches_and_close_stops_every_thread_it_started(tmp_path, clip):
    """Every cache (models, results, panels, decoded clips) is the service's; every thread it starts (the
    background pool of deferred maps, downloads, start-up, the network probes of a page load) stops with
    ``close`` — none outlives it."""
    from lens.core.threads import Closed

    before = set(threading.enumerate())
    svc = lens.Service(out_dir=tmp_path / "owned")
    a = svc.analyse(clip, SMALL, ["rollout"])  # deferred: rollout pending
    assert len(svc.clips) >= 1 and len(svc.results) == 2 and sorted(svc.models.loaded()) == sorted(SMALL)
    svc.render(a)
    assert len(svc.panels) == 2
    svc.warm(a).result(60)  # the background pool
    lens.defaults.model_choices(probe=False, pool=svc.threads.pool("probe", 8))  # what a page load does
    release = threading.Event()
    svc.threads.start("download (test)", lambda: release.wait(5))
    lens.startup.start(svc, "custom")  # nothing to fetch, no example for 'custom': quick
    release.set()
    mine = [t for t in threading.enumerate() if t not in before and t.name.startswith("mvt-lens")]
    assert {t.name.split()[1] for t in mine} >= {"warm_0", "probe_0"}, [t.name for t in mine]
    assert svc.close() == []
    alive = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not [n for n in alive if n.startswith("mvt-lens")], alive
    assert len(svc.clips) == len(svc.results) == len(svc.panels) == 0 and not (tmp_path / "owned").exists()
    with pytest.raises(Closed):
        svc.threads.start("late", lambda: None)
