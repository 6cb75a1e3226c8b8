"""The app's adapters, called directly and through gradio_client: streamed panels, errors in place, uploads the
browser cannot play, model sets, class to explain, per-session files, concurrency."""

from __future__ import annotations

import concurrent.futures as cf
import json
import re
from pathlib import Path

import numpy as np
import pytest

import lens
import mvt

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

SMALL_MODELS = ["mvit_t.untrained", "hvt_t.untrained"]
SLOT = ("column", "title", "view", "stage", "head", "klass", "download")


def make_moving_square(path: Path, *, frames: int = 24, size: int = 96, fps: int = 12, seed: int = 0) -> Path:
    """A clip with a bright square moving left to right over noise; different seeds give different clips."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 60, size=(frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        x = int(t * (size - 24) / max(1, frames - 1))
        video[t, 30 + seed % 20 : 54 + seed % 20, x : x + 24] = (255, 200 - 20 * (seed % 5), 40)
    mvt.write_video(video, path, fps=fps)
    return path


def _val(x):
    """The value of an output: updates (``gr.update(...)``) are dicts."""
    if isinstance(x, dict) and x.get("__type__") == "update":
        return x.get("value")
    return x


def _skipped(x) -> bool:
    return isinstance(x, dict) and x == {"__type__": "update"}


def named(values: list) -> dict:
    """The compare outputs by name (see ``app.build_demo``)."""
    n = lens.MAX_MODELS
    return {
        "state": values[0],
        "banner": values[1],
        "show": values[2],
        "timeline": values[3],
        "truth_column": values[4],
        "truth": values[5],
        "slots": [dict(zip(SLOT, values[6 + 7 * i : 13 + 7 * i])) for i in range(n)],
        "summary": values[6 + 7 * n],
        "timings": values[7 + 7 * n],
    }


def named_api(values: list) -> dict:
    """The compare outputs as gradio_client returns them (no State, no layout columns)."""
    n = lens.MAX_MODELS
    parts = SLOT[1:]
    return {
        "banner": values[0],
        "show": values[1],
        "timeline": values[2],
        "truth": values[3],
        "slots": [dict(zip(parts, values[4 + 6 * i : 10 + 6 * i])) for i in range(n)],
        "summary": values[4 + 6 * n],
        "timings": values[5 + 6 * n],
    }


def merged(yields: list[list]) -> list:
    """What the page shows after a streamed event: per output, the last value that was not skipped."""
    out = list(yields[0])
    for y in yields[1:]:
        out = [old if _skipped(new) else new for old, new in zip(out, y)]
    return out


def run_compare(
    clip, names, *, methods=("rollout",), show="attention", start="", upload=None
) -> tuple[dict, list]:
    """``app.compare`` called as Gradio calls it; returns (the merged outputs by name, every yield)."""
    import app

    gen = app.compare(
        str(clip),
        list(names),
        start,
        list(methods),
        show,
        0.8,
        "inferno",
        False,
        upload,
        progress=lambda *a, **k: None,
    )
    yields = list(gen)
    return named(merged(yields)), yields


def _names() -> list[str]:
    known = set(mvt.list_models())
    names = [n for n in SMALL_MODELS if n in known]
    assert names, f"none of {SMALL_MODELS} registered"
    return names


def _call(client: Client, clip: Path, names: list[str], show: str = "attention"):
    return client.predict(
        handle_file(str(clip)), names, "", ["rollout"], show, 0.8, "inferno", api_name="/compare"
    )


# -- through gradio_client ------------------------------------------------------------------------------------------


def test_compare_returns_predictions_pictures_and_downloads(app_url, tmp_path):
    clip = make_moving_square(tmp_path / "square.mp4")
    names = _names()
    out = named_api(list(_call(Client(app_url, verbose=False), clip, names)))
    summary = out["summary"]
    assert [m["name"] for m in summary["models"]] == names and summary["clip"]["name"] == "square.mp4"
    for i, m in enumerate(summary["models"]):
        probs = [p for _, p in m["top5"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert m["trained"] is False and len(m["times"]) == len(m["weights"]) > 0
        assert sum(m["weights"]) == pytest.approx(1.0, abs=1e-4)
        slot = out["slots"][i]
        assert "untrained" in _val(slot["title"])  # untrained weights are never shown as trained
        assert f'data-model="{names[i]}"' in _val(slot["view"]) and "background-image" in _val(slot["view"])
        info = mvt.probe(_val(slot["download"]))
        assert info.codec == "h264" and info.num_frames >= 8
    assert not _val(out["slots"][len(names)]["title"]), "unused panels stay empty"
    assert 'data-testid="timeline"' in _val(out["timeline"])
    assert any(row[1] == "total" for row in out["timings"]["data"])


def test_broken_file_gives_clear_error_and_server_keeps_serving(app_url, tmp_path):
    client = Client(app_url, verbose=False)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(AppError) as err:
        _call(client, bad, _names())
    msg = str(err.value)
    assert "video" in msg.lower() and "Traceback" not in msg
    clip = make_moving_square(tmp_path / "ok.mp4")
    out = named_api(list(_call(client, clip, _names()[:1])))
    assert len(out["summary"]["models"][0]["top5"]) == 5


def test_four_clients_at_once_get_their_own_results(app_url, tmp_path):
    names = _names()[:1]
    clips = [make_moving_square(tmp_path / f"c{i}.mp4", seed=i) for i in range(4)]

    def run(i: int):
        return named_api(list(_call(Client(app_url, verbose=False), clips[i], names)))

    with cf.ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(run, range(4)))
    assert len({o["summary"]["clip"]["sha256"] for o in outs}) == 4
    import app

    for i, o in enumerate(outs):  # each client's top-5 is what the service gives for its own clip
        expected = app.SERVICE.analyse(clips[i], names, methods=()).results[0].top5
        got = dict(o["summary"]["models"][0]["top5"])
        for label, p in expected:
            assert got[label] == pytest.approx(p, abs=1e-4)


# -- the adapters, called directly ------------------------------------------------------------------------------------


def test_panels_stream_one_by_one_and_views_rerender_without_running_models(tmp_path, monkeypatch):
    import app

    calls = []
    real = app.SERVICE._run_model
    monkeypatch.setattr(app.SERVICE, "_run_model", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    clip = make_moving_square(tmp_path / "rerender.mp4", seed=7)
    names = _names()
    out, yields = run_compare(clip, names)
    assert sorted(calls) == sorted(names)  # fastest expected first: the order follows measured times
    # first yield: every panel waiting; then one yield per model with that model's picture
    first = named(yields[0])
    assert all("mvt-pending" in _val(first["slots"][i]["view"]) for i in range(len(names)))
    seen = [[("mvt-pending" not in (_val(named(y)["slots"][i]["view"]) or "")) for i in range(len(names))]
            for y in yields[1 : 1 + len(names)]]  # fmt: skip
    assert [sum(s) for s in seen] == list(range(1, len(names) + 1)), "one more panel per yield"
    state = out["state"]
    assert [c for c, _ in out["show"]["choices"]] == [lens.METHODS[m].label for m in ("attention", "rollout")]
    # a panel's stage and heads come from its model: mvit_t has 3 stages, head choices from its maps
    mvit = out["slots"][0]
    assert [c[1] for c in mvit["stage"]["choices"]] == [1, 2, 3] and mvit["stage"]["value"] == 3
    assert mvit["head"]["choices"] == ["mean", "max", "head 1", "head 2", "head 3", "head 4"]
    hvt = out["slots"][1]
    assert len(hvt["stage"]["choices"]) == 5 and not hvt["head"]["visible"], "HVT has no CLS row per head"
    controls = [1, 5, None, None, "head 1", "mean", None, None]  # stages then heads of the 4 slots
    again = app.rerender(state, "attention", 0.8, "inferno", *controls)
    assert sorted(calls) == sorted(names), "re-rendering must not run a model again"
    slots = named([None, None, None, *again[1:2], None, None, *again[2:], None, None])["slots"]
    assert "attention_0" in _val(slots[0]["view"]) and "attention_4" in _val(slots[1]["view"])
    rolled = app.rerender(again[0], "rollout", 0.8, "viridis", *controls)
    view = _val(rolled[2 + 2])
    assert "rollout" in view and view != _val(slots[0]["view"])
    assert not rolled[2 + 3]["visible"], "rollout is not per stage: no stage control"
    # the figures shown after Compare
    figs = app.figures(state, "attention", 0.8, "inferno")
    n = lens.MAX_MODELS
    assert Path(figs[0]["value"]).is_file() and figs[len(names)]["visible"] is False
    assert figs[n]["visible"] and len(figs[n]["value"].data) >= 1 and len(figs[-1].data) >= 1
    run_compare(clip, names)  # the same clip and options come from the cache
    assert sorted(calls) == sorted(names)  # fastest expected first: the order follows measured times


def test_deferred_maps_are_computed_in_the_background_and_int8_is_labelled(tmp_path, monkeypatch):
    import app

    warmed = []
    real = app.SERVICE.warm
    monkeypatch.setattr(app.SERVICE, "warm", lambda rs: warmed.extend(r.name for r in rs) or real(rs))
    clip = make_moving_square(tmp_path / "deferred.mp4", seed=17)
    names = _names()
    out, _ = run_compare(clip, names)  # rollout ticked: its matrices are deferred, then warmed
    assert sorted(warmed) == sorted(names), "deferred maps are computed once every panel is shown"
    analysis = app.SERVICE.get(out["state"]["ref"])
    figs = app.figures(out["state"], "attention", 0.8, "inferno")  # chained after Compare: waits for them
    assert all(r.ready for r in analysis.results) and Path(figs[0]["value"]).is_file()
    gen = app.compare(
        str(clip), names[:1], "", [], "attention", 0.8, "inferno", True, None, progress=lambda *a, **k: None
    )
    title = _val(named(merged(list(gen)))["slots"][0]["title"])
    assert "int8" in title and "approximate" in title, title


def test_a_bad_clip_after_a_good_one_clears_every_panel_and_says_why(tmp_path):
    import gradio as gr

    good = make_moving_square(tmp_path / "good.mp4", seed=3)
    out, _ = run_compare(good, _names())
    assert out["slots"][0]["column"]["visible"]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 5000)
    import app

    gen = app.compare(
        str(bad),
        _names(),
        "",
        ["rollout"],
        "attention",
        0.8,
        "inferno",
        False,
        None,
        progress=lambda *a, **k: None,
    )
    cleared = named(next(gen))
    with pytest.raises(gr.Error):
        next(gen)
    assert cleared["banner"]["visible"] and "bad.mp4" in cleared["banner"]["value"]
    for slot in cleared["slots"]:  # no stale titles, no old pictures
        assert (
            slot["column"]["visible"] is False
            and slot["title"]["value"] == ""
            and slot["view"]["value"] == ""
        )
    assert cleared["state"] is None and cleared["timeline"] == ""


def test_a_model_that_fails_shows_its_error_in_its_own_panel(tmp_path, monkeypatch):
    import app

    real = app.SERVICE._run_model

    def flaky(path, name, *a, **k):
        if name == _names()[1]:
            raise mvt.WeightsError(f"{name}: the weights could not be read (test)")
        return real(path, name, *a, **k)

    monkeypatch.setattr(app.SERVICE, "_run_model", flaky)
    out, _ = run_compare(make_moving_square(tmp_path / "half.mp4", seed=9), _names())
    ok, failed = out["slots"][0], out["slots"][1]
    assert "data-error" not in _val(ok["view"]) and "background-image" in _val(ok["view"])
    assert 'data-error="1"' in _val(failed["view"]) and "could not be read (test)" in _val(failed["view"])
    assert not out["banner"]["visible"], "one model failing is not a page-wide error"


def test_picking_a_class_explains_it_with_a_class_dependent_method(tmp_path):
    import app

    clip = make_moving_square(tmp_path / "klass.mp4", seed=12)
    out, _ = run_compare(clip, _names()[:1])
    state = out["state"]
    labels = app.SERVICE.labels(_names()[0])
    second = out["summary"]["models"][0]["top5"][1][0]
    controls = [None] * (2 * lens.MAX_MODELS)
    res = app.explain(0)(state, second, "attention", 0.8, "inferno", *controls, progress=lambda *a, **k: None)
    new_state, view = res[0], _val(res[2 + 2])
    entry = app.SERVICE.get(new_state["ref"]).entries[0]
    assert entry.target == labels.index(second) and lens.VolumeKey("grad_rollout") in entry.volumes
    assert "grad_rollout" in view and f"Explaining the class “{second}”" in view
    assert new_state["override"] == {0: "grad_rollout"}
    import gradio as gr

    with pytest.raises(gr.Error, match="no class called"):
        app.explain(0)(
            state, "not a class", "attention", 0.8, "inferno", *controls, progress=lambda *a, **k: None
        )


def test_gif_and_hevc_uploads_get_a_playable_preview_and_the_original_is_analysed(tmp_path):
    import av
    from PIL import Image

    import app

    frames = [make_frame(i) for i in range(20)]
    gif = tmp_path / "anim.gif"
    Image.fromarray(frames[0]).save(
        gif, save_all=True, append_images=[Image.fromarray(f) for f in frames[1:]], duration=80, loop=0
    )
    hevc = tmp_path / "clip_hevc.mp4"
    with av.open(str(hevc), "w") as out:
        s = out.add_stream("libx265", rate=25, options={"x265-params": "log-level=error"})
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    for path, codec in ((gif, "gif"), (hevc, "hevc")):
        assert mvt.probe(path).codec == codec
        shown, upload_state, banner = app.upload(str(path))
        preview = _val(shown)
        info = mvt.probe(preview)
        assert info.codec == "h264" and info.pix_fmt == "yuv420p" and info.num_frames == 20
        assert upload_state["original"] == str(path) and not banner["visible"]
        out, _ = run_compare(preview, _names()[:1], upload=upload_state)
        assert out["summary"]["clip"]["name"] == path.name, "the original file is analysed, not the preview"
        assert len(out["summary"]["models"][0]["top5"]) == 5
    playable = make_moving_square(tmp_path / "plain.mp4")
    shown, upload_state, _ = app.upload(str(playable))
    assert _skipped(shown) and upload_state["original"] == str(playable), "an H.264 upload is shown as is"


def make_frame(i: int) -> np.ndarray:
    img = np.full((96, 128, 3), 30, dtype=np.uint8)
    img[30:60, 5 * i : 5 * i + 30] = (250, 200, 40)
    return img


def test_start_time_is_empty_by_default_and_means_the_whole_clip():
    import app

    demo_start = next(b for b in app.demo.blocks.values() if getattr(b, "elem_id", None) == "start")
    assert demo_start.value in (None, "")
    assert lens.service.service.start_time("") is None and lens.service.service.start_time("1.5") == 1.5


def test_model_sets_pick_their_models_and_a_hand_pick_is_custom(monkeypatch):
    import app

    monkeypatch.setenv("MVT_OFFLINE", "1")
    models, notes = app.pick_set("Kinetics-400")
    assert models["value"] == list(lens.defaults.KINETICS_SET)
    assert "cannot run here" in notes and "MVT_OFFLINE" in notes, "offline: a clear sentence, not a stall"
    assert app.pick_models(lens.defaults.set_models("SynthMotion")) == ("SynthMotion", "")
    assert app.pick_models(["mvit_t.synth"])[0] == "custom"
    update, chosen_set, _ = app.on_load()
    assert chosen_set == "SynthMotion" and update["value"] == lens.defaults.set_models("SynthMotion")
    labels = dict((n, lab) for lab, n in update["choices"])
    assert set(labels) == set(mvt.list_models()), "every model is offered, cached or not"
    assert "unavailable: not cached and MVT_OFFLINE is set" in labels["vivit_b_16x2.k400"]
    assert "shipped" in labels["mvit_t.synth"]


def test_examples_carry_their_model_set_and_synthmotion_ones_their_ground_truth(tmp_path):
    examples = {e.file: e for e in lens.examples.available()}
    assert examples["sports2d_backflip.mp4"].model_set == "Kinetics-400"
    assert all(e.model_set == "SynthMotion" for f, e in examples.items() if f.startswith("synth_"))
    out, _ = run_compare(examples["synth_move_left.mp4"].path, _names()[:1])
    assert out["truth_column"]["visible"] and 'data-model="ground truth"' in _val(out["truth"])
    src = re.search(r"file=([^']+)'", _val(out["truth"])).group(1)
    assert Path(src).is_file()
    real, _ = run_compare(examples["sports2d_backflip.mp4"].path, _names()[:1])
    assert not real["truth_column"]["visible"], "no ground truth for a real clip"


def test_each_session_has_its_own_folder_deleted_when_it_ends(tmp_path):
    import app

    class Request:
        session_hash = "abc123"

    clip = make_moving_square(tmp_path / "session.mp4", seed=21)
    out = merged(
        list(
            app.compare(
                str(clip),
                _names()[:1],
                "",
                [],
                "attention",
                0.8,
                "inferno",
                False,
                None,
                Request(),
                progress=lambda *a, **k: None,
            )
        )
    )
    folder = app.SERVICE.session_dir("abc123")
    written = [p for p in folder.iterdir()]
    assert written and str(folder) in _val(named(out)["slots"][0]["download"])
    app.end_session(Request())
    assert not folder.exists()


def test_app_export_and_cli_explain_write_the_same_report_json(tmp_path):
    """The app and ``python -m mvt explain`` are one pipeline: same clip and options, same report.json."""
    import zipfile

    import app
    from lens.cli import main

    clip = make_moving_square(tmp_path / "same.mp4", seed=11)
    names = _names()
    out, _ = run_compare(clip, names)
    with zipfile.ZipFile(app.export(out["state"], "attention", 0.8, "inferno")) as z:
        from_app = z.read("report.json")
        assert {"report.html", "timings.json"} <= set(z.namelist())
    dest = tmp_path / "cli"
    args = ["explain", str(clip), "--models", *names, "--methods", "attention", "rollout", "--out", str(dest)]
    assert main(args) == 0
    from_cli = (dest / "report.json").read_bytes()
    assert from_app == from_cli
    report = json.loads(from_cli)
    assert report["clip"]["name"] == "same.mp4" and len(report["clip"]["sha256"]) == 64
    assert report["clip"]["duration_s"] == pytest.approx(2.0) and report["clip"]["fps"] == pytest.approx(12.0)
    assert {"mvt-lens", "torch"} <= set(report["versions"])
    for m in report["models"]:
        assert m["frames_used"]["count"] == len(m["frames_used"]["times_s"]) > 0
        assert "source" in m["weights"] and "timings" not in json.dumps(m)
