"""Ask a point through the service, the CLI, the export and the app's actions: the window under the time,
the crop, rows from the cached maps (no model runs again), the way back, the frame × frame figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lens
import mvt
from lens.cli import main
from lens.explain.query import sampling
from lens.ui import asking
from lens.ui.actions import Actions
from lens.ui.screens import KEEP, Controls

MODELS = ["mvit_t.untrained", "vivit_t3.untrained", "hvt_t.untrained"]
H, W, FPS, N = 96, 176, 10, 40


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> Path:
    """A 176×96 clip, 4 s at 10 fps: a square moving right; the 16-frame models see 1.6 s of it (one window
    from 1.2 s, the ``analysis``) and the centre 96×96 of each frame (so x < 40 or x > 136 is cropped away)."""
    video = np.full((N, H, W, 3), 40, dtype=np.uint8)
    for t in range(N):
        x = 20 + 3 * t
        video[t, 36:60, x : x + 24] = (250, 200, 40)
    return mvt.write_video(video, tmp_path_factory.mktemp("query") / "wide.mp4", fps=FPS)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = lens.Service(out_dir=tmp_path_factory.mktemp("out"))
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def analysis(service, wide):
    return service.analyse(wide, MODELS, ["attention"], start_s=1.2)  # one window: 1.2 s to 2.7 s


def test_a_point_every_model_saw_gives_each_a_token_row_that_sums_to_one(service, analysis, monkeypatch):
    for name in MODELS:  # never a model run: a query reads the cached maps
        model = service.models.get(name)
        monkeypatch.setattr(model, "forward", lambda *a, **k: pytest.fail("a query ran a model"))
        monkeypatch.setattr(
            model, "forward_with_attention", lambda *a, **k: pytest.fail("a query ran a model")
        )
    t = float(analysis.results[0].times[5])
    q = service.query(analysis, t, 88.0, 48.0)
    assert [a.name for a in q.answers] == MODELS and all(a.seen for a in q.answers)
    mvit, vivit, hvt = q.answers
    assert mvit.caption.startswith("Stage 3 query (t ") and "pooled from 4×4 patches" in mvit.caption
    assert set(vivit.parts) == {"spatial", "temporal"} and "spatial row" in vivit.caption
    assert "pooled token" in hvt.caption and hvt.box is None
    for a in (mvit, vivit):  # box keys: the volume is the row itself (prefix keys apart)
        for kind, part in a.parts.items():
            assert part.values.sum() + a.prefix[kind] == pytest.approx(1.0, abs=1e-4)
    # 176×96 → 205×112, crop from x 46 (rounded down): the clip's centre is half a pixel right of the crop's
    assert mvit.mark == pytest.approx(((88 * 205 / 176 - 46) / 112, 0.5))
    assert 5 in mvit.frames and 5 in vivit.frames
    first = service.query(analysis, t, 88.0, 48.0, stage=0)
    assert [a.stage for a in first.answers] == [0, 0, 0]


def test_a_cropped_away_point_and_a_moment_outside_the_window_are_said(service, analysis):
    t = float(analysis.results[0].times[3])
    cropped = service.query(analysis, t, 12.0, 48.0)
    assert all(not a.seen and a.reason == "cropped" for a in cropped.answers)
    assert "crop cut it away" in cropped.answers[0].caption and cropped.answers[0].volume is None
    early = service.query(analysis, 0.05, 88.0, 48.0)
    assert all(a.reason == "window" for a in early.answers)
    first, last = sampling(analysis.results[0], analysis.clip).span
    assert f"{first:.2f}–{last:.2f} s" in early.answers[0].caption
    with pytest.raises(lens.LensError, match="not on the 176×96 clip"):
        service.query(analysis, t, 500.0, 48.0)


def test_a_click_on_a_panel_is_the_clip_point_under_it(analysis):
    r = analysis.results[0]
    k = 7
    click = {"model": r.name, "time": float(r.times[k]), "u": 0.25, "v": 0.75}
    t, x, y = asking.clip_point(click, analysis)
    assert t == pytest.approx(r.times[k])
    assert (x, y) == pytest.approx(((46 + 0.25 * 112) * 176 / 205, 0.75 * 96))  # 205×112, crop from x 46
    assert asking.clip_point({"model": "clip", "time": 1.0, "u": 0.5, "v": 0.5}, analysis) == (
        1.0,
        88.0,
        48.0,
    )
    assert asking.parse(json.dumps({"clear": 1})) is None and asking.parse("") is None
    with pytest.raises(lens.LensError):
        asking.parse(json.dumps({"model": r.name, "time": 1.0, "u": 3, "v": 0.5}))


def test_frame_matrices_and_the_export_and_cli_write_the_point(service, analysis, wide, tmp_path):
    mats = service.frame_matrices(analysis)
    assert [m.kind for m in mats] == ["joint", "temporal", "joint"]
    for m in mats:
        np.testing.assert_allclose(m.values.sum(axis=1), 1.0, rtol=1e-6)
    t = float(analysis.results[0].times[4])
    zipped = service.export(analysis, point=(t, 88.0, 48.0))
    import zipfile

    names = zipfile.ZipFile(zipped).namelist()
    assert "query/query.json" in names and any(n.endswith("_stage1.npy") for n in names)
    out = tmp_path / "cli"
    args = ["explain", str(wide), "--models", *MODELS[:2], "--methods", "attention", "--out", str(out)]
    assert main([*args, "--query", f"{t},88,48", "--query", f"{t},5,48"]) == 0
    record = json.loads((out / "query1" / "query1.json").read_text())
    mvit = record["models"][0]
    assert [s["stage"] for s in mvit["stages"]] == [0, 1, 2] and all(s["seen"] for s in mvit["stages"])
    row = np.load(mvit["stages"][2]["files"]["row"])
    assert row.shape == tuple(mvit["stages"][2]["tokens"][0]["grid"][:1]) + row.shape[1:]
    assert len(mvit["frame_x_frame"]) == 3 and np.load(mvit["frame_x_frame"][0]["file"]).shape == (4, 4)
    unseen = json.loads((out / "query2" / "query2.json").read_text())["models"][1]["stages"][0]
    assert unseen["seen"] is False and unseen["reason"] == "cropped"
    assert main([*args, "--query", "1,2"]) == 2, "a mistyped point is an error before anything runs"


def test_the_app_asks_a_point_marks_it_says_what_was_cropped_and_goes_back(tmp_path, wide):
    svc = lens.Service(out_dir=tmp_path / "out")
    acts = Actions(svc, lambda p: f"files/{p.name}", 4)
    ctl = Controls("attention")
    last = list(acts.compare(clip=str(wide), models=MODELS, controls=ctl))[-1]
    assert (
        last.banner in (None, KEEP) and "mvt-crop" in last.clip_view and 'data-model="clip"' in last.clip_view
    )
    r = svc.get(last.state.ref).results[0]
    click = {"model": r.name, "time": float(r.times[6]), "u": 0.5, "v": 0.4}
    asked = acts.ask(state=last.state, controls=ctl, query=json.dumps(click))
    assert asked.banner in (None, KEEP) and asked.state.query is not None
    shown = [p for p in asked.panels if p is not None]
    assert all('data-testid="query-mark"' in p.html and "mvt-query-clear" in p.html for p in shown)
    assert all(p.html != q.html for p, q in zip(shown, last.panels)), "every picture changed"
    assert "Stage 3 query" in shown[0].html
    redrawn = acts.redraw(state=asked.state, controls=Controls("attention", stages=(1, None, None)))
    assert "Stage 1 query" in redrawn.panels[0].html, "a stage change keeps the point"
    edge = acts.ask(state=asked.state, controls=ctl, query=json.dumps({"model": "clip", "time": click["time"], "u": 0.03, "v": 0.5}))  # fmt: skip
    assert all('data-testid="query-unseen"' in p.html for p in edge.panels if p is not None)
    assert all("crop cut it away" in p.html for p in edge.panels if p is not None)
    back = acts.ask(state=edge.state, controls=ctl, query=json.dumps({"clear": 1}))
    assert back.state.query is None and not any("query-mark" in p.html for p in back.panels if p is not None)
    figs = acts.figures(state=back.state, controls=ctl)
    assert sum(f is not None for f in figs.matrices) == len(MODELS)
    assert "stage 3" in figs.matrices[0].layout.title.text
    svc.close()


def test_the_api_asks_a_point_of_the_comparison_it_just_made(tmp_path, wide, monkeypatch):
    """/query after /analyse on the same clip and models reuses that run (no model runs again)."""
    from lens.ui import api

    svc = lens.Service(out_dir=tmp_path)
    api.analyse(svc, str(wide), MODELS[:1], session="s")
    ran: list[str] = []
    real = svc._run_model
    monkeypatch.setattr(svc, "_run_model", lambda *a, **k: ran.append(a[1]) or real(*a, **k))
    out = api.query(svc, str(wide), MODELS[:1], t=1.5, x=88.0, y=48.0, stage=1, session="s")
    assert ran == [] and out
    svc.close()


@pytest.mark.parametrize("show", ["attention", "rollout"])
def test_a_point_asked_while_compare_streams_stays_on_every_view_that_follows(tmp_path, wide, show):
    """A click on the first panel out, while the others still run (and, for rollout, while the lead views
    stream in after the fast ones): every later screen keeps the point, the comparison ends with it asked;
    the next Compare starts without it."""
    svc = lens.Service(out_dir=tmp_path / "out")
    acts = Actions(svc, lambda p: f"files/{p.name}", 4)
    ctl = Controls(show)
    stream = acts.compare(clip=str(wide), models=MODELS, controls=ctl, session="s")
    asked = later = None
    screens = []
    for screen in stream:
        if asked is None and screen.panels is not KEEP and screen.state is not KEEP and screen.panels[0].html:
            r = svc.get(screen.state.ref).entries[0]
            if isinstance(r, lens.ModelResult):
                click = {"model": r.name, "time": float(r.times[6]), "u": 0.5, "v": 0.4}
                asked = acts.ask(state=screen.state, controls=ctl, query=json.dumps(click), session="s")
                assert asked.state.query is not None and 'data-testid="query-mark"' in asked.panels[0].html
                continue
        if asked is not None and screen.panels is not KEEP:
            screens.append(screen)
            later = screen
    assert screens, "views streamed in after the click"
    for screen in screens:
        done = [
            p for p in screen.panels if p is not None and "mvt-frame" in p.html and "mvt-wait" not in p.html
        ]
        assert done and all('data-testid="query-mark"' in p.html for p in done), "the point stays"
        assert screen.state.query == asked.state.query
    assert later.state.ref is not None and later.clip_view and "query" in later.clip_view
    again = list(acts.compare(clip=str(wide), models=MODELS, controls=ctl, session="s"))[-1]
    assert again.state.query is None and not any(
        "query-mark" in p.html for p in again.panels if p is not None
    )
    svc.close()
