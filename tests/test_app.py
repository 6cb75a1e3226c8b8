"""The app: its public API through gradio_client (named endpoints, named parameters, JSON and files back), and its
event handlers called directly, inputs and outputs by name: streamed panels, errors in place, uploads the browser
cannot play, model sets, class to explain, per-session files, concurrency."""

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


def make_moving_square(path: Path, *, frames: int = 24, size: int = 96, fps: int = 12, seed: int = 0) -> Path:
    """A clip with a bright square moving left to right over noise; different seeds give different clips."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 60, size=(frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        x = int(t * (size - 24) / max(1, frames - 1))
        video[t, 30 + seed % 20 : 54 + seed % 20, x : x + 24] = (255, 200 - 20 * (seed % 5), 40)
    mvt.write_video(video, path, fps=fps)
    return path


def make_frame(i: int) -> np.ndarray:
    img = np.full((96, 128, 3), 30, dtype=np.uint8)
    img[30:60, 5 * i : 5 * i + 30] = (250, 200, 40)
    return img


def _val(x):
    """The value of an output: updates (``gr.update(...)``) are dicts."""
    if isinstance(x, dict) and x.get("__type__") == "update":
        return x.get("value")
    return x


def _names() -> list[str]:
    known = set(mvt.list_models())
    names = [n for n in SMALL_MODELS if n in known]
    assert names, f"none of {SMALL_MODELS} registered"
    return names


def analyse(client: Client, clip: Path, names: list[str], **kw) -> dict:
    """``/analyse`` through gradio_client: JSON with the files downloaded."""
    return client.predict(clip=handle_file(str(clip)), models=names, api_name="/analyse", **kw)


# -- the public API, through gradio_client --------------------------------------------------------------------------


def test_the_api_is_five_named_endpoints_with_named_parameters(app_url):
    info = Client(app_url, verbose=False).view_api(return_format="dict", print_info=False)
    params = {k: [p["parameter_name"] for p in v["parameters"]] for k, v in info["named_endpoints"].items()}
    assert params == {
        "/analyse": ["clip", "models", "methods", "start_s", "windows"],
        "/explain_class": ["clip", "model", "klass", "method", "start_s"],
        "/faithfulness": ["clip", "models", "methods", "start_s", "steps"],
        "/export": ["clip", "models", "methods", "start_s"],
        "/query": ["clip", "models", "t", "x", "y", "stage", "start_s"],
    }, "UI events are private; no param_N, no unnamed endpoint"
    assert not info["unnamed_endpoints"]
    assert all(v["description"] for v in info["named_endpoints"].values()), "each says what it returns"


def test_analyse_returns_predictions_frames_volume_files_and_a_report(app_url, tmp_path):
    clip = make_moving_square(tmp_path / "square.mp4")
    names = _names()
    out = analyse(Client(app_url, verbose=False), clip, names, methods=["attention", "rollout"])
    assert [m["name"] for m in out["models"]] == names and out["clip"]["name"] == "square.mp4"
    assert out["methods"] == ["attention", "rollout"] and len(out["clip"]["sha256"]) == 64
    for m in out["models"]:
        probs = [p["prob"] for p in m["top5"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert m["weights"]["trained"] is False, "untrained weights are never shown as trained"
        assert m["frames_used"]["count"] == len(m["frames_used"]["times_s"]) > 0
        windows = {f"w{w['index']}_{slug}" for w in m["windows"] for slug in m["volumes"]}
        assert set(m["files"]) == set(m["volumes"]) | windows and "rollout" in m["files"]
        assert len(m["windows"]) == m["coverage"]["windows"] == 2 and m["coverage"]["whole_clip"], (
            "2 s, 2 windows"
        )
        for slug, path in m["files"].items():  # downloaded to this machine: every volume on its grid
            assert (
                list(np.load(path).shape) == m["volumes"][slug.split("_", 1)[1] if slug in windows else slug]
            )
    report = Path(out["report"]).read_text(encoding="utf-8")
    assert "UNTRAINED weights" in report and all(n in report for n in names)


def test_explain_class_faithfulness_and_export_endpoints(app_url, tmp_path):
    import zipfile

    client, clip, name = (
        Client(app_url, verbose=False),
        make_moving_square(tmp_path / "e.mp4", seed=5),
        _names()[0],
    )
    first = analyse(client, clip, [name])["models"][0]
    second = first["top5"][1]["label"]
    explained = client.predict(
        clip=handle_file(str(clip)), model=name, klass=second, api_name="/explain_class"
    )
    (m,) = explained["models"]
    assert m["top5"][1]["label"] == second and m["target"] != first["target"] and "grad_rollout" in m["files"]
    scores = client.predict(clip=handle_file(str(clip)), models=[name], steps=4, api_name="/faithfulness")
    assert {"rollout", "random", "center"} <= set(scores[name])
    assert all(0.0 <= s["deletion_auc"] <= 1.0 for s in scores[name].values())
    with zipfile.ZipFile(client.predict(clip=handle_file(str(clip)), models=[name], api_name="/export")) as z:
        assert {"report.json", "report.html", "timings.json"} <= set(z.namelist())


def test_broken_file_gives_clear_error_and_server_keeps_serving(app_url, tmp_path):
    client = Client(app_url, verbose=False)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(AppError) as err:
        analyse(client, bad, _names())
    msg = str(err.value)
    assert "video" in msg.lower() and "Traceback" not in msg
    out = analyse(client, make_moving_square(tmp_path / "ok.mp4"), _names()[:1])
    assert len(out["models"][0]["top5"]) == 5


def test_four_clients_at_once_get_their_own_results(app_url, tmp_path):
    names = _names()[:1]
    clips = [make_moving_square(tmp_path / f"c{i}.mp4", seed=i) for i in range(4)]

    def run(i: int):
        return analyse(Client(app_url, verbose=False), clips[i], names, methods=["attention"])

    with cf.ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(run, range(4)))
    assert len({o["clip"]["sha256"] for o in outs}) == 4
    import app

    for i, o in enumerate(outs):  # each client's top-5 is what the service gives for its own clip
        expected = app.SERVICE.analyse(clips[i], names, methods=()).results[0].top5
        got = {p["label"]: p["prob"] for p in o["models"][0]["top5"]}
        for label, p in expected:
            assert got[label] == pytest.approx(p, abs=1e-4)


# -- the event handlers, called directly, by name -------------------------------------------------------------------


def page_in(**values) -> dict:
    """An event's inputs as Gradio hands them over: a dict keyed by component (named as the page names them)."""
    import app

    n = lens.MAX_MODELS
    base = {"show": "attention", "opacity": 0.8, "colormap": "inferno"}
    base |= {f"stage_{i}": None for i in range(n)} | {f"heads_{i}": None for i in range(n)}
    return {app.PAGE[k]: v for k, v in {**base, **values}.items()}


def by_name(updates: dict) -> dict:
    """A handler's outputs by the page's part names."""
    import app

    names = {c: n for n, c in app.PAGE.items()}
    return {names[c]: v for c, v in updates.items()}


def panel(out: dict, i: int) -> dict:
    return {
        p: out.get(f"{p}_{i}") for p in ("column", "title", "picture", "stage", "heads", "klass", "download")
    }


class Request:
    session_hash = "abc123"


def run_compare(
    clip, names, *, methods=("rollout",), show="attention", start="", upload=None, int8=False, request=None
):
    """``app.on_compare`` as Gradio calls it; returns (the page after every step, by name; each step by name)."""
    import app

    data = page_in(clip=str(clip), upload=upload, models=list(names), methods=list(methods), start_s=start,
                   int8=int8, show=show)  # fmt: skip
    steps = [by_name(u) for u in app.on_compare(data, request, progress=lambda *a, **k: None)]
    page: dict = {}
    for step in steps:
        page.update(step)
    return page, steps


def test_panels_stream_one_by_one_and_displays_redraw_without_running_models(tmp_path, monkeypatch):
    import app

    calls = []
    real = app.SERVICE._run_model
    monkeypatch.setattr(app.SERVICE, "_run_model", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    clip = make_moving_square(tmp_path / "redraw.mp4", seed=7)
    names = _names()
    out, steps = run_compare(clip, names)
    assert sorted(calls) == sorted(names)
    # first step: every panel waiting; then one step per model with that model's picture
    assert all("mvt-pending" in _val(panel(steps[0], i)["picture"]) for i in range(len(names)))
    seen = [
        sum("mvt-pending" not in _val(panel(s, i)["picture"]) for i in range(len(names))) for s in steps[1:-1]
    ]
    assert seen == list(range(1, len(names) + 1)), "one more panel per step"
    assert set(steps[1]) == {"state", "timeline", *(f"{p}_{i}" for i in range(4) for p in panel(steps[0], 0))}
    state = out["state"]
    labels = [lens.METHODS[m].label for m in ("attention", "rollout")]
    assert [c for c, _ in out["show"]["choices"]] == [lens.present.FAITHFUL_LABEL, *labels]
    # a panel's stage and heads come from its model: mvit_t has 3 stages, head choices from its maps
    mvit, hvt = panel(out, 0), panel(out, 1)
    assert [c[1] for c in mvit["stage"]["choices"]] == [1, 2, 3] and mvit["stage"]["value"] == 3
    assert mvit["heads"]["choices"] == ["mean", "max", "head 1", "head 2", "head 3", "head 4"]
    assert len(hvt["stage"]["choices"]) == 5 and not hvt["heads"]["visible"], "HVT has no CLS row per head"
    controls = {"stage_0": 1, "stage_1": 5, "heads_0": "head 1", "heads_1": "mean"}
    again = by_name(app.on_redraw(page_in(state=state, **controls)))
    assert sorted(calls) == sorted(names), "drawing again must not run a model again"
    assert "attention_0" in _val(panel(again, 0)["picture"]) and "attention_4" in _val(
        panel(again, 1)["picture"]
    )
    rolled = by_name(
        app.on_redraw(page_in(state=again["state"], show="rollout", colormap="viridis", **controls))
    )
    assert "rollout" in _val(panel(rolled, 0)["picture"]) and rolled["picture_0"] != again["picture_0"]
    assert not panel(rolled, 0)["stage"]["visible"], "rollout is not per stage: no stage control"
    figs = by_name(app.on_figures(page_in(state=state)))
    assert Path(figs["strip_0"]["value"]).is_file() and figs[f"strip_{len(names)}"]["visible"] is False
    assert (
        figs["grid_0"]["visible"] and len(figs["grid_0"]["value"].data) >= 1 and len(figs["stats"].data) >= 1
    )
    run_compare(clip, names)  # the same clip and options come from the cache
    assert sorted(calls) == sorted(names)


def test_deferred_maps_are_computed_in_the_background_and_int8_is_labelled(tmp_path, monkeypatch):
    import app

    warmed = []
    real = app.SERVICE.warm
    monkeypatch.setattr(app.SERVICE, "warm", lambda rs: warmed.extend(r.name for r in rs) or real(rs))
    clip = make_moving_square(tmp_path / "deferred.mp4", seed=17)
    names = _names()
    out, _ = run_compare(clip, names)  # rollout ticked: its matrices are deferred, then warmed
    assert sorted(warmed) == sorted(names), "deferred maps are computed once every panel is shown"
    analysis = app.SERVICE.get(out["state"].ref)
    figs = by_name(app.on_figures(page_in(state=out["state"])))  # chained after Compare: waits for them
    assert all(r.ready for r in analysis.results) and Path(figs["strip_0"]["value"]).is_file()
    title = _val(run_compare(clip, names[:1], methods=[], int8=True)[0]["title_0"])
    assert "int8" in title and "approximate" in title, title


def test_a_bad_clip_after_a_good_one_clears_every_panel_and_says_why(tmp_path):
    import app

    good = make_moving_square(tmp_path / "good.mp4", seed=3)
    out, _ = run_compare(good, _names())
    assert out["column_0"]["visible"]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 5000)
    data = page_in(clip=str(bad), upload=None, models=_names(), methods=["rollout"], start_s="", int8=False)
    (cleared,) = [
        by_name(s) for s in app.on_compare(data, None, progress=lambda *a, **k: None)
    ]  # nothing raised
    assert cleared["banner"]["visible"] and "bad.mp4" in cleared["banner"]["value"]
    for i in range(lens.MAX_MODELS):  # no stale titles, no old pictures, no old strips or figures in the tabs
        slot = panel(cleared, i)
        assert slot["column"]["visible"] is False and slot["title"] == "" and slot["picture"] == ""
        assert cleared[f"strip_{i}"]["visible"] is False and cleared[f"grid_{i}"]["visible"] is False
        assert cleared[f"faithfulness_{i}"]["visible"] is False
    assert cleared["state"] is None and cleared["timeline"] == "" and not cleared["truth_column"]["visible"]
    assert cleared["stats"] is None and cleared["faithfulness_table"] == [] and cleared["export"] is None
    assert cleared["summary"] is None and cleared["timings"] is None


def test_a_model_that_fails_shows_its_error_in_its_own_panel(tmp_path, monkeypatch):
    import app

    real = app.SERVICE._run_model

    def flaky(request, name, *a, **k):
        if name == _names()[1]:
            raise mvt.WeightsError(f"{name}: the weights could not be read (test)")
        return real(request, name, *a, **k)

    monkeypatch.setattr(app.SERVICE, "_run_model", flaky)
    out, _ = run_compare(make_moving_square(tmp_path / "half.mp4", seed=9), _names())
    ok, failed = _val(out["picture_0"]), _val(out["picture_1"])
    assert "data-error" not in ok and "background-image" in ok
    assert 'data-error="1"' in failed and "could not be read (test)" in failed
    assert not out["banner"]["visible"], "one model failing is not a page-wide error"


def test_picking_a_class_explains_it_with_a_class_dependent_method(tmp_path):
    import gradio as gr

    import app

    clip = make_moving_square(tmp_path / "klass.mp4", seed=12)
    out, _ = run_compare(clip, _names()[:1])
    labels = app.SERVICE.labels(_names()[0])
    second = out["summary"]["models"][0]["top5"][1][0]
    pick = app.on_explain(0)
    res = by_name(pick(page_in(state=out["state"], klass_0=second), progress=lambda *a, **k: None))
    entry = app.SERVICE.get(res["state"].ref).entries[0]
    assert entry.target == labels.index(second) and lens.VolumeKey("grad_rollout") in entry.volumes
    assert "grad_rollout" in _val(res["picture_0"]) and f"explaining the class “{second}”" in _val(
        res["picture_0"]
    )
    assert res["state"].show == "grad_rollout" and res["show"]["value"] == "grad_rollout", (
        "Show names the method"
    )
    shown = res["summary"]["models"][0]["shown"]
    assert shown["method"] == "grad_rollout" and shown["class"] == second, (
        "the Data tab names class and method"
    )
    # the class it already explains (the control opened and dismissed): nothing changes, nothing runs
    assert pick(page_in(state=res["state"], klass_0=second), progress=lambda *a, **k: None) == gr.skip()
    # a label that is not a class: said in that panel, which keeps its picture; nothing raised
    bad = by_name(pick(page_in(state=res["state"], klass_0="not a class"), progress=lambda *a, **k: None))
    assert "no class called" in _val(bad["picture_0"]) and "grad_rollout" in _val(bad["picture_0"])
    assert "banner" not in bad


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
        up = by_name(app.on_upload(str(path)))
        info = mvt.probe(_val(up["clip"]))
        assert info.codec == "h264" and info.pix_fmt == "yuv420p" and info.num_frames == 20
        assert up["upload"]["original"] == str(path) and not up["banner"]["visible"]
        out, _ = run_compare(_val(up["clip"]), _names()[:1], upload=up["upload"])
        assert out["summary"]["clip"]["name"] == path.name, "the original file is analysed, not the preview"
        assert len(out["summary"]["models"][0]["top5"]) == 5
    playable = make_moving_square(tmp_path / "plain.mp4")
    up = by_name(app.on_upload(str(playable)))
    assert "clip" not in up and up["upload"]["original"] == str(playable), "an H.264 upload is shown as is"


def test_start_time_is_empty_by_default_and_means_the_whole_clip():
    import app
    from lens.core.request import start_time

    assert app.PAGE.start_s.value in (None, "")
    assert start_time("") is None and start_time("1.5") == 1.5


def test_model_sets_pick_their_models_and_a_hand_pick_is_custom(monkeypatch):
    import app

    monkeypatch.setenv("MVT_OFFLINE", "1")
    picked = by_name(app.on_set("Kinetics-400"))
    assert _val(picked["models"]) == list(lens.defaults.KINETICS_SET)
    notes = picked["notes"]
    assert "cannot run here" in notes and "MVT_OFFLINE" in notes, "offline: a clear sentence, not a stall"
    assert by_name(app.on_models(lens.defaults.set_models("SynthMotion"))) == {
        "model_set": "SynthMotion",
        "notes": "",
    }
    assert by_name(app.on_models(["mvit_t.synth"]))["model_set"] == "custom"
    loaded = by_name(app.on_load())
    assert loaded["suggested"] == "SynthMotion", "offline: the set the page opened with"
    assert "value" not in loaded["models"] and "model_set" not in loaded, "a slow load never undoes a choice"
    labels = dict((n, lab) for lab, n in loaded["models"]["choices"])
    registry = {n for n in mvt.list_models() if mvt.get_spec(n).checkpoint is None}  # not users' checkpoints
    assert set(labels) == registry, (
        "every registry model is offered, cached or not (users' own: their session's)"
    )
    assert "unavailable: not cached and MVT_OFFLINE is set" in labels["vivit_b_16x2.k400"]
    assert "shipped" in labels["mvit_t.synth"]


def test_examples_carry_their_model_set_and_synthmotion_ones_their_ground_truth(tmp_path):
    examples = {e.file: e for e in lens.examples.available()}
    assert examples["sports2d_backflip.mp4"].model_set == "Kinetics-400"
    assert all(e.model_set == "SynthMotion" for f, e in examples.items() if f.startswith("synth_"))
    out, _ = run_compare(examples["synth_move_left.mp4"].path, _names()[:1])
    assert out["truth_column"]["visible"] and 'data-model="ground truth"' in out["truth"]
    src = re.search(r"file=([^']+)'", out["truth"]).group(1)
    assert Path(src).is_file()
    real, _ = run_compare(examples["sports2d_backflip.mp4"].path, _names()[:1])
    assert not real["truth_column"]["visible"], "no ground truth for a real clip"


def test_each_session_has_its_own_folder_deleted_when_it_ends(tmp_path):
    import app

    clip = make_moving_square(tmp_path / "session.mp4", seed=21)
    out, _ = run_compare(clip, _names()[:1], methods=[], request=Request())
    folder = app.SERVICE.session_dir("abc123")
    assert list(folder.iterdir()) and str(folder) in _val(out["download_0"])
    app.on_end(Request())
    assert not folder.exists()


def test_app_export_and_cli_explain_write_the_same_report_json(tmp_path):
    """The app and ``python -m mvt explain`` are one pipeline: same clip and options, same report.json."""
    import zipfile

    import app
    from lens.cli import main

    clip = make_moving_square(tmp_path / "same.mp4", seed=11)
    names = _names()
    out, _ = run_compare(clip, names)
    exported = by_name(app.on_export(page_in(state=out["state"])))["export"]
    with zipfile.ZipFile(exported) as z:
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
