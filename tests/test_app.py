"""The launched app, driven through gradio_client: predictions, playable overlays, clear errors, concurrency."""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

import numpy as np
import pytest

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


def _val(x):
    """The value of an output: gradio_client returns ``gr.update(...)`` outputs as dicts."""
    if isinstance(x, dict) and x.get("__type__") == "update":
        return x.get("value")
    return x


def _video_path(x) -> str:
    v = _val(x)
    return v["video"] if isinstance(v, dict) else v


def _names() -> list[str]:
    known = set(mvt.list_models())
    names = [n for n in SMALL_MODELS if n in known]
    assert names, f"none of {SMALL_MODELS} registered"
    return names


def _call(client: Client, clip: Path, names: list[str], method: str = "attention"):
    return client.predict(
        handle_file(str(clip)),
        names,
        None,
        ["rollout"],
        method,
        4,
        "mean",
        api_name="/compare",
    )


def test_compare_returns_predictions_and_playable_overlays(app_url, tmp_path):
    clip = make_moving_square(tmp_path / "square.mp4")
    names = _names()
    out = _call(Client(app_url, verbose=False), clip, names)
    # outputs: 4 slots × (title, label, video, strip), timings
    assert not _val(out[4 * len(names)]), "unused slots stay empty"
    for i, name in enumerate(names):
        title, label, video, strip = (_val(x) for x in out[4 * i : 4 * i + 4])
        assert name in title
        assert "untrained" in title  # untrained weights are never shown as trained
        confidences = [c["confidence"] for c in label["confidences"]]
        assert len(confidences) == 5
        assert confidences == sorted(confidences, reverse=True)
        assert 0 < sum(confidences) <= 1.0 + 1e-6  # a top-5 of a softmax
        path = _video_path(video)
        info = mvt.probe(path)
        assert info.codec in ("h264", "libx264")
        assert info.num_frames >= 8
        assert Path(strip).is_file()
    timings = out[-1]
    assert any(row[1] == "total" for row in timings["data"])


def test_broken_file_gives_clear_error_and_server_keeps_serving(app_url, tmp_path):
    client = Client(app_url, verbose=False)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(AppError) as err:
        _call(client, bad, _names())
    msg = str(err.value)
    assert "video" in msg.lower()
    assert "Traceback" not in msg
    clip = make_moving_square(tmp_path / "ok.mp4")
    out = _call(client, clip, _names()[:1])
    assert len(_val(out[1])["confidences"]) == 5


def test_four_clients_at_once_get_their_own_results(app_url, tmp_path):
    names = _names()[:1]
    clips = [make_moving_square(tmp_path / f"c{i}.mp4", seed=i) for i in range(4)]

    def run(i: int):
        return _call(Client(app_url, verbose=False), clips[i], names)

    with cf.ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(run, range(4)))
    videos = [_video_path(o[2]) for o in outs]
    assert len({Path(v).name for v in videos}) == 4, "each client must get its own overlay file"
    # each client's top-5 equals what the service gives for its own clip
    import app

    for i, o in enumerate(outs):
        expected = app.SERVICE.analyse(clips[i], names[:1], methods=()).results[0].top5
        got = {c["label"]: c["confidence"] for c in _val(o[1])["confidences"]}
        for label, p in expected:
            assert got[label] == pytest.approx(p, abs=1e-4)


def test_changing_stage_or_method_rerenders_without_running_models(tmp_path, monkeypatch):
    import app

    calls = []
    real = app.SERVICE._run_model
    monkeypatch.setattr(app.SERVICE, "_run_model", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    clip = make_moving_square(tmp_path / "rerender.mp4", seed=7)
    names = _names()[:1]
    out = app.compare(
        str(clip), names, None, ["rollout"], "attention", 1, "mean", progress=lambda *a, **k: None
    )
    state = out[0]
    assert calls == names
    first_video = out[3]["value"]
    again = app.rerender(state, "rollout", 2, "mean")
    assert calls == names, "re-rendering must not run the model again"
    assert "rollout" in again[2]["value"] and again[2]["value"] != first_video
    # asking for a method that was not computed is a clear error, not a traceback
    import gradio as gr

    with pytest.raises(gr.Error, match="not computed"):
        app.rerender(state, "integrated_gradients", 2, "mean")
    # the figures shown after Compare: a token-grid figure per model, then the statistics figure
    figs = app.figures(state)
    assert figs[0]["visible"] and len(figs[0]["value"].data) >= 1
    assert not figs[1]["visible"]
    assert len(figs[-1].data) >= 1
    # the same clip and options come from the cache
    app.compare(str(clip), names, None, ["rollout"], "rollout", 1, "mean", progress=lambda *a, **k: None)
    assert calls == names


def test_app_export_and_cli_explain_write_the_same_report_json(tmp_path):
    """The app and ``python -m mvt explain`` are one pipeline: same clip and options, same report.json."""
    import zipfile

    import app
    from lens.cli import main

    clip = make_moving_square(tmp_path / "same.mp4", seed=11)
    names = _names()
    state = app.compare(
        str(clip), names, None, ["rollout"], "attention", 4, "mean", progress=lambda *a, **k: None
    )[0]
    with zipfile.ZipFile(app.export(state, "attention")) as z:
        from_app = z.read("report.json")
        assert {"report.html", "timings.json"} <= set(z.namelist())
    out = tmp_path / "cli"
    assert (
        main(
            ["explain", str(clip), "--models", *names, "--methods", "attention", "rollout", "--out", str(out)]
        )
        == 0
    )
    from_cli = (out / "report.json").read_bytes()
    assert from_app == from_cli
    import json

    report = json.loads(from_cli)
    assert report["clip"]["name"] == "same.mp4" and len(report["clip"]["sha256"]) == 64
    assert report["clip"]["duration_s"] == pytest.approx(2.0) and report["clip"]["fps"] == pytest.approx(12.0)
    assert {"mvt-lens", "torch"} <= set(report["versions"])
    for m in report["models"]:
        assert m["frames_used"]["count"] == len(m["frames_used"]["times_s"]) > 0
        assert "source" in m["weights"] and "timings" not in json.dumps(m)
