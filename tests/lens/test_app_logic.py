"""What the app shows, decided in lens and tested without a browser: streamed jobs, model sets, the timeline,
panels, uploads, the examples' ground truth, per-session folders."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import lens
import mvt
from lens import defaults, examples, jobs, present, timeline, uploads
from lens.core.request import class_index
from lens.ui.screens import AppState, Controls
from tests.test_app import make_moving_square

SMALL = ["mvit_t.untrained", "hvt_t.untrained"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_moving_square(tmp_path_factory.mktemp("logic") / "square.mp4", seed=31)


# -- jobs -----------------------------------------------------------------------------------------------------------


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


# -- model sets -----------------------------------------------------------------------------------------------------


def test_model_sets_and_the_default_follow_network_and_cache(monkeypatch):
    assert defaults.set_models(defaults.KINETICS) == list(defaults.KINETICS_SET)
    synth = defaults.set_models(defaults.SYNTHMOTION)
    assert synth == defaults.default_models() and all(n.endswith(".synth") for n in synth)
    assert defaults.set_of(list(reversed(synth))) == defaults.SYNTHMOTION
    assert defaults.set_of(synth[:2]) == defaults.CUSTOM and defaults.set_models(defaults.CUSTOM) == []
    monkeypatch.setenv("MVT_OFFLINE", "1")
    assert defaults.default_set(probe=False) == defaults.SYNTHMOTION
    monkeypatch.delenv("MVT_OFFLINE")
    monkeypatch.setattr(
        defaults, "weights_status", lambda name, probe=True: mvt.weights.Status("downloadable", 100 * 2**20)
    )
    assert defaults.default_set(probe=True) == defaults.KINETICS, (
        "with network the real models are the default"
    )
    notes = defaults.availability(["mvit_v2_s.k400", "mvit_t.synth"])
    assert notes == ["mvit_v2_s.k400: Compare downloads 100 MB on first use (mvit_v2_s-ae3be167.pth)."]
    label = defaults.model_label("mmvit_s.k400init", "downloads 132 MB on first use")
    assert label.startswith("mmvit_s.k400init — downloads 132 MB on first use — not fine-tuned")
    assert "predicts exactly as MViT v2-S" in label


# -- panels and the timeline ----------------------------------------------------------------------------------------


def test_panels_say_what_they_show_and_offer_what_their_model_can_give(tmp_path, clip):
    svc = lens.Service(out_dir=tmp_path / "out")
    a = svc.analyse(clip, SMALL, ["rollout"])
    url = lambda p: f"files/{p.name}"  # noqa: E731
    controls = Controls("attention", stages=(2, None), heads=("head 2", None))
    panels = svc.render(a, controls.displays(AppState(names=tuple(SMALL))))
    mvit, hvt = (present.panel_screen(p, i, url, svc.labels(p.name)) for i, p in enumerate(panels))
    assert mvit.stage == 2 and [v for _, v in mvit.stages] == [1, 2, 3] and mvit.head == "head 2"
    assert "head 2 of 2" in mvit.html and f"files/{panels[0].frames.name}" in mvit.html
    assert hvt.heads == [] and hvt.stage == 5 and "no CLS token" in hvt.html
    assert "untrained weights" in mvit.title and mvit.klass == mvit.classes[0]
    assert mvit.download == panels[0].overlay
    rolled = present.panel_screen(svc.render(a, lens.Display("rollout"))[0], 0, url)
    assert rolled.stages == [] and rolled.heads == [], "rollout is not per stage and takes no heads"
    line = present.timeline(panels, a.clip)
    assert line.count("<polyline") == 2 and 'data-testid="timeline"' in line and "square.mp4" in line
    waiting = present.pending("hvt_t.untrained", 1)
    assert "mvt-pending" in waiting.html and "untrained" in waiting.title
    summary = present.summary(a, panels)
    assert summary["models"][0]["shown"] == {"method": "attention", "stage": 1}


def test_frame_weights_are_shares_of_the_painted_explanation(tmp_path, clip):
    svc = lens.Service(out_dir=tmp_path / "out")
    r = svc.analyse(clip, SMALL[:1], ["attention"]).results[0]
    t = r.frames.shape[0]
    hot = np.zeros(r.frames.shape[:3], np.float32)
    hot[3] = 1.0
    w = timeline.frame_weights(r, lens.Volume(hot))
    assert w[3] == pytest.approx(1.0) and w.sum() == pytest.approx(1.0)
    flat = timeline.frame_weights(r, lens.Volume(np.ones(r.frames.shape[:3], np.float32)))
    np.testing.assert_allclose(flat, np.full(t, 1.0 / t))
    assert (
        timeline.sprite_grid(16) == (8, 2)
        and timeline.sprite_grid(3) == (3, 1)
        and timeline.sprite_grid(32) == (8, 4)
    )
    tiles = timeline.tile(np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3), columns=2)
    assert tiles.shape == (6, 4, 3) and (tiles[4:, 2:] == 0).all()


def test_a_class_typed_or_picked_is_understood():
    labels = ("abseiling", "air drumming", "answering questions")
    assert class_index("Air Drumming", labels) == 1
    assert class_index("class 2", labels) == 2 and class_index("0", labels) == 0
    assert class_index("juggling", labels) is None and class_index("class 9", labels) is None
    assert (
        present.class_method("attention") == "grad_rollout"
        and present.class_method("rollout") == "grad_rollout"
    )
    assert present.class_method("saliency") == "saliency" and present.class_method("occlusion") == "occlusion"


# -- uploads, examples, folders -------------------------------------------------------------------------------------


def test_only_files_browsers_play_are_shown_as_they_are(tmp_path, clip):
    assert uploads.playable(mvt.probe(clip))
    info = mvt.probe(clip)
    from dataclasses import replace

    assert not uploads.playable(replace(info, codec="hevc"))
    assert not uploads.playable(replace(info, pix_fmt="yuv420p10le"))
    assert not uploads.playable(replace(info, codec="gif", container="gif"))
    up = uploads.prepare(clip, tmp_path)
    assert up.preview is None and up.shown == str(clip) and not list(tmp_path.glob("preview-*"))
    assert (
        uploads.original(str(clip), {"sha": lens.clips.file_sha256(clip), "original": "/x/orig.mkv"})
        == "/x/orig.mkv"
    )
    assert uploads.original(str(clip), {"sha": "other", "original": "/x/orig.mkv"}) == str(clip)


def test_the_synthmotion_examples_know_where_the_actor_is():
    shipped = {e.file: e for e in examples.available()}
    assert {"sports2d_backflip.mp4", "synth_move_left.mp4", "synth_10s.mp4"} <= set(shipped)
    path = shipped["synth_move_left.mp4"].path
    truth = examples.ground_truth(lens.clips.file_sha256(path))
    assert truth is not None and truth.masks.shape == (16, 112, 112) and truth.fps == 8.0
    decoded = mvt.read_clip(path, num_frames=16, stride=1, size=112).frames.astype(np.float32)
    assert np.abs(decoded - truth.frames).mean() < 12.0  # the same clip (H.264 and resize aside)
    # the actor moves left: the mask's centre goes left over time
    xs = [np.nonzero(m)[1].mean() for m in truth.at([0.0, 1.9])]
    assert xs[1] < xs[0] - 10
    assert truth.index([0.0, 0.124, 0.125, 99.0]).tolist() == [0, 0, 1, 15]
    pic = truth.picture([0.5])
    assert pic.shape == (1, 112, 112, 3) and pic.dtype == np.uint8
    assert examples.ground_truth(lens.clips.file_sha256(shipped["sports2d_backflip.mp4"].path)) is None
    long = examples.ground_truth(lens.clips.file_sha256(shipped["synth_10s.mp4"].path))
    assert long.masks.shape[0] == 256 and long.fps == 25.0


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
