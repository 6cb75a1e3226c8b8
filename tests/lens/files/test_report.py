"""lens.files.report: a self-contained report.html from real small models, opened offline in headless Chromium."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import lens
import mvt
from lens.core.records import Analysis, ModelError, VolumeKey
from lens.core.request import Request
from lens.explain.scoring import score_result
from lens.files.html import jpeg_data_uri, png_data_uri
from lens.files.report import report_html, weights_html, write_report_html
from tests.conftest import CHROMIUM_ARGS

MODELS = ("mvit_t.untrained", "hvt_t.untrained")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Two real small models on a generated clip, faithfulness for one of them, written to report.html."""
    tmp = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    video = rng.integers(0, 60, size=(16, 112, 112, 3), dtype=np.uint8)
    for t in range(16):
        video[t, 40:64, 4 + 4 * t : 28 + 4 * t] = (255, 200, 40)
    clip = tmp / "clip.mp4"
    mvt.write_video(video, clip, fps=8)
    service = lens.Service(out_dir=tmp / "service")
    a = service.analyse(clip, MODELS[:1])
    b = service.analyse(clip, MODELS[1:], ("attention", "rollout", "saliency"))
    analysis = Analysis(Request.of(a.clip, MODELS, a.methods), [*a.entries, *b.entries])
    first = analysis.results[0]
    metrics = {
        first.name: score_result(service.models.get(first.name), first, [VolumeKey("rollout")], steps=2)
    }
    path = write_report_html(analysis, tmp / "out", metrics=metrics, title="test report")
    n_figs = path.read_text(encoding="utf-8").count('class="plotly-graph-div"')
    return path, analysis, metrics, n_figs


def test_report_is_self_contained_and_honest(report):
    path, analysis, metrics, n_figs = report
    results = analysis.results
    assert path.name == "report.html" and path.exists()
    doc = path.read_text(encoding="utf-8")
    # nothing is fetched: no external scripts, stylesheets or images
    assert not re.search(r"""<(script|img|link)[^>]+(src|href)=["']?(https?:)?//""", doc)
    assert doc.count("<script") >= n_figs + 1  # plotly.js + one per figure
    assert n_figs == 2 * len(results) + 1  # token grid + stats per model, one curves figure
    for r in results:
        assert f"<h2>{r.name}</h2>" in doc
        assert r.top5[0][0] in doc
    assert doc.count("UNTRAINED weights") == len(results)  # untrained is said plainly
    body = doc.split("<body>", 1)[1]
    assert body.count('src="data:image/jpeg;base64,') == len(results) + 1  # + the saliency strip
    assert "<h3>Attributions</h3>" in body
    rollout = metrics[results[0].name][VolumeKey("rollout")]["curves"]
    assert "deletion AUC" in doc and f"{rollout.deletion_auc:.3f}" in doc
    for baseline in ("random", "center"):  # every score is compared with the baselines
        assert f"<td>{baseline}</td>" in doc
    assert analysis.clip.sha256 in doc and "clip.mp4" in doc  # the report names the clip


def test_weights_are_labelled_honestly(report):
    results = report[1].results
    assert "UNTRAINED" in weights_html(results[0])
    fake = dataclasses.replace(results[1], trained=True, description="trained on SynthMotion (test double)")
    html = weights_html(fake)
    assert "trained weights" in html and "UNTRAINED" not in html and "test double" in html


def test_a_broken_figure_becomes_a_note(report, monkeypatch):
    import viz

    analysis = report[1]

    def broken(*args, **kwargs):
        raise RuntimeError("no grid for you")

    monkeypatch.setattr(viz, "token_grid_figure", broken)
    monkeypatch.setattr(viz, "attention_stats", broken)
    one = Analysis(analysis.request.only(MODELS[0]), analysis.entries[:1])
    doc, n = report_html(one)
    assert n == 0 and "token grid figure unavailable: RuntimeError: no grid for you" in doc
    assert "Top-5 predictions" in doc


def test_a_failed_model_gets_its_message(report):
    analysis = report[1]
    failed = ModelError("vivit_t1.synth", "weights file is damaged: download it again")
    doc, _ = report_html(Analysis(analysis.request, [failed, *analysis.entries]))
    section = doc.split('<section id="vivit_t1.synth">', 1)[1].split("</section>", 1)[0]
    assert "weights file is damaged: download it again" in section and "Top-5" not in section


def test_png_data_uri_roundtrip():
    import base64
    import io

    from PIL import Image

    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    uri = png_data_uri(img)
    assert uri.startswith("data:image/png;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert np.array_equal(back, img)
    with pytest.raises(ValueError):
        png_data_uri(img.astype(np.float32))


def test_jpeg_data_uri_is_the_picture_within_jpeg_loss():
    import base64
    import io

    from PIL import Image

    yy, xx = np.mgrid[0:48, 0:64]
    img = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1).astype(np.uint8)  # smooth, as frames are
    uri = jpeg_data_uri(img)
    assert uri.startswith("data:image/jpeg;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert back.shape == img.shape and np.abs(back.astype(int) - img).mean() < 3
    with pytest.raises(ValueError):
        jpeg_data_uri(img.astype(np.float32))


@pytest.mark.browser
def test_report_renders_offline_in_chromium(report):
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed (apt-get install -y chromium); .ci/run installs it")
    path, _, _, n_figs = report
    errors: list[str] = []
    requests: list[str] = []

    def route(r):
        url = r.request.url
        requests.append(url)
        if url.startswith(("file:", "data:")):
            r.continue_()
        else:
            r.abort()

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/*", route)
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_function(
            f"() => document.querySelectorAll('.js-plotly-plot').length === {n_figs}"
            " && [...document.querySelectorAll('.js-plotly-plot')].every(d => d.querySelector('svg.main-svg'))"
            " && [...document.images].every(i => i.complete)",
            timeout=30_000,
        )
        plots = page.evaluate(
            "[...document.querySelectorAll('.js-plotly-plot')].map(d => ["
            "d.querySelectorAll('svg.main-svg').length, (d._fullData || []).length,"
            " d.getBoundingClientRect().width, d.getBoundingClientRect().height])"
        )
        images = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        browser.close()
    assert len(plots) == n_figs
    for svgs, traces, w, h in plots:
        assert svgs >= 1 and traces >= 1 and w > 100 and h > 100, plots
    assert images and all(ok and w > 0 and h > 0 for ok, w, h in images), images
    external = [u for u in requests if not u.startswith(("file:", "data:"))]
    assert not external, f"the report tried to fetch {external}"
    assert not errors, errors


def test_report_json_and_the_export_carry_every_window(tmp_path):
    """A clip two windows long: report.json names each window (span, clip times, its own top-5) and how the
    prediction was made; the volumes of every window are in the .npz; report.html says which window it draws."""
    import json

    from lens.files.export import report_json
    from tests.test_app import make_moving_square

    clip = make_moving_square(tmp_path / "square.mp4", seed=5)
    service = lens.Service(out_dir=tmp_path / "service")
    analysis = service.analyse(clip, MODELS[:1], ("attention",))
    record = report_json(analysis)["models"][0]
    assert record["coverage"] == {
        "windows": 2, "needed": 2, "chosen": "default", "seen_s": pytest.approx(2.0), "whole_clip": True,
        "prediction": "average of 2 windows over 0.00–2.00 s (the whole clip)",
    }  # fmt: skip
    first, second = record["windows"]
    assert first["start_s"] == 0.0 and second["end_s"] == pytest.approx(2.0) and len(second["times_s"]) == 16
    assert [w["primary"] for w in record["windows"]].count(True) == 1 and len(first["top5"]) == 5
    written = lens.write_export(analysis, tmp_path / "export")
    with np.load(written[f"{MODELS[0]}:npz"]) as z:
        assert {"attention_2", "w0_attention_2", "w1_attention_2"} <= set(z.files)
    assert json.loads(written["report.json"].read_text())["format"] == "mvt-lens report 2"
    assert (
        "window 1 of 2" in written["report.html"].read_text()
        or "window 2 of 2" in written["report.html"].read_text()
    )
