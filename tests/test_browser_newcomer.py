"""A newcomer's first ten minutes (issue 27), in Debian's Chromium at a laptop's 1366×768 and a phone's 390×844:
problems said where they belong and never as Gradio's red "Error" pills; Play that plays and Pause that stops;
models that say what they know; a class explained only when one is chosen, and then named by Show, the Data
tab and the export; a sticky timeline that stays small and hides nothing it moves.

The app runs offline here (``MVT_OFFLINE=1`` for this module): the Kinetics-400 example cannot run, and says so.
``MVT_SCREENSHOT_DIR=dir`` also saves a screenshot of each step there.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

import lens
from tests.test_app import make_moving_square
from tests.test_browser import DESKTOP, PHONE, _compare, _open, _settled, _upload

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser
VIEWPORTS = pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1366x768", "390x844"])
PILLS = (
    "() => [...document.querySelectorAll('[data-testid=status-tracker] .error, [data-testid=toast-body]')]"
    ".map(e => e.innerText.trim().slice(0, 120))"
)
"""Gradio's status pills (an ``.error`` inside a status tracker) and its toasts, visible or not."""


@pytest.fixture(scope="module", autouse=True)
def offline():
    """This module's app is offline: weights that are not cached cannot be downloaded, and the page says so."""
    from mvt import weights

    old = os.environ.get("MVT_OFFLINE")
    os.environ["MVT_OFFLINE"] = "1"
    weights.forget_probes()
    yield
    if old is None:
        os.environ.pop("MVT_OFFLINE", None)
    else:
        os.environ["MVT_OFFLINE"] = old
    weights.forget_probes()


def _picture(style: str) -> str:
    """What a panel's frames image shows (model, method, stage), without the hash of its display options."""
    return re.sub(r"_[0-9a-f]{12}\.jpg", ".jpg", re.search(r"frames_[^'\"]+", style).group(0))


def _pills(page) -> list[str]:
    return page.evaluate(PILLS)


def _shot(page, name: str, viewport: dict) -> None:
    if os.environ.get("MVT_SCREENSHOT_DIR"):
        folder = Path(os.environ["MVT_SCREENSHOT_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}-{viewport['width']}x{viewport['height']}.png"))


def _show_box_usable(page) -> None:
    """The Show box opens and lists its methods (it is a control, not a pill), and closes again."""
    box = page.locator("#show input")
    box.scroll_into_view_if_needed()
    box.click()
    page.get_by_role("option").first.wait_for(timeout=10_000)
    assert page.get_by_role("option").count() >= 2
    page.keyboard.press("Escape")


def _example(page, starts: str):
    return page.locator("#examples button, #examples .gallery-item").filter(has_text=starts).first


@VIEWPORTS
def test_problems_are_said_in_place_and_never_as_error_pills(browser, app_url, viewport, tmp_path):
    page = _open(browser, app_url, viewport)
    # 1. a broken clip: the banner says why, Compare keeps the reason (not "upload a clip first"), no pills
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all " * 500)
    page.locator("#clip input[type=file]").set_input_files(str(bad))
    page.locator("#banner .mvt-banner").wait_for(state="visible", timeout=60_000)
    page.locator("#compare").click()
    page.wait_for_function("() => !document.querySelector('#progress .wrap:not(.hide)')", timeout=60_000)
    time.sleep(1.0)
    banner = page.locator("#banner").inner_text()
    assert "broken.mp4" in banner and "could not be opened" in banner and "Upload a video clip" not in banner
    assert page.locator(".mvt-view:not([data-model=clip])").count() == 0
    assert _pills(page) == [], _pills(page)
    _shot(page, "broken-clip", viewport)
    _show_box_usable(page)
    # 2. a good clip, then a typed label that is not a class: said in that panel, which keeps its picture
    _upload(page, make_moving_square(tmp_path / "square.mp4", frames=32, size=128, seed=3))
    page.locator("#banner").wait_for(state="hidden", timeout=60_000)  # a good clip clears the banner
    n = page.locator("#models .token").count()
    _compare(page, n)
    _settled(page)
    before = page.locator("[id^=slot-] .mvt-frame").first.get_attribute("style")
    box = page.locator("#class-0 input")
    box.scroll_into_view_if_needed()
    box.fill("a cat playing piano")
    box.press("Enter")
    note = page.locator("#slot-0 .mvt-note-panel")
    note.wait_for(state="visible", timeout=120_000)
    assert "no class called" in note.inner_text() and "a cat playing piano" in note.inner_text()
    after = page.locator("[id^=slot-] .mvt-frame").first.get_attribute("style")
    assert _picture(after) == _picture(before), "the panel keeps the explanation it showed"
    assert _pills(page) == [], _pills(page)
    _shot(page, "not-a-class", viewport)
    _show_box_usable(page)
    # 3. the Kinetics-400 example offline: marked, and Compare says why instead of starting a doomed run
    example = _example(page, "Jumping jacks")
    example.scroll_into_view_if_needed()
    assert "needs a download" in example.inner_text()
    example.click()
    page.wait_for_function(
        "() => document.querySelector('#model-set input[value=\"Kinetics-400\"]')?.checked", timeout=30_000
    )
    page.wait_for_function("() => document.querySelector('#clip video')?.readyState >= 1", timeout=60_000)
    page.locator("#compare").click()
    page.locator("#banner .mvt-banner").wait_for(state="visible", timeout=60_000)
    assert "can run here" in page.locator("#banner").inner_text()
    page.wait_for_function(
        "() => document.querySelectorAll('.mvt-view:not([data-model=clip])').length === 0", timeout=30_000
    )
    assert page.locator("#strip-0 img").count() == 0 or page.locator("#strip-0").is_hidden()
    assert _pills(page) == [], _pills(page)
    _shot(page, "kinetics-offline", viewport)
    _show_box_usable(page)
    assert _pills(page) == []
    page.close()


def _played(page, seconds: float) -> float:
    """Clip seconds the shared time moved forward during ``seconds`` of Play (wrapping to the start counts)."""
    page.evaluate(
        """() => { window.__moved = 0; window.__last = window.mvtLens.t;
        window.__on = e => { const d = e.detail - window.__last; if (d > 0) window.__moved += d; window.__last = e.detail; };
        document.addEventListener('mvt:time', window.__on); }"""
    )
    time.sleep(seconds)
    return page.evaluate(
        "() => { document.removeEventListener('mvt:time', window.__on); return window.__moved; }"
    )


@VIEWPORTS
def test_play_plays_at_the_clips_rate_and_pause_stops_after_every_compare(
    browser, app_url, viewport, tmp_path
):
    page = _open(browser, app_url, viewport)
    n = page.locator("#models .token").count()
    for attempt in range(2):  # the second Compare renders the timeline again: still one handler per click
        _upload(page, make_moving_square(tmp_path / f"play{attempt}.mp4", frames=48, size=128, fps=12, seed=5 + attempt))  # fmt: skip
        _compare(page, n)
        fps = float(page.locator(".mvt-timeline").get_attribute("data-fps"))
        play = page.locator(".mvt-play")
        play.scroll_into_view_if_needed()
        play.click()
        page.wait_for_function("() => window.mvtLens.playing", timeout=5_000)
        moved = _played(page, 1.0)
        assert moved * fps >= 5, (
            f"Play moved {moved:.3f} s = {moved * fps:.1f} frames in 1 s (attempt {attempt})"
        )
        assert play.get_attribute("aria-label") == "Pause"
        play.click()
        page.wait_for_function("() => !window.mvtLens.playing", timeout=5_000)
        t = page.evaluate("() => window.mvtLens.t")
        time.sleep(0.5)
        assert page.evaluate("() => window.mvtLens.t") == t, "Pause stops"
        assert play.get_attribute("aria-label") == "Play"
    _shot(page, "paused", viewport)
    page.close()


@VIEWPORTS
def test_synthmotion_models_on_a_real_clip_say_they_know_only_synthetic_motions(
    browser,
    app_url,
    viewport,
    tmp_path,
):
    page = _open(browser, app_url, viewport)
    page.locator("#model-set").get_by_text("SynthMotion", exact=True).click()
    from lens.ui.examples import EXAMPLES_DIR

    _upload(page, EXAMPLES_DIR / "sports2d_backflip.mp4")  # a real clip (shipped in the package)
    _compare(page, page.locator("#models .token").count())
    notice = page.locator("#notice .mvt-notice")
    notice.wait_for(state="visible", timeout=30_000)
    text = notice.inner_text()
    assert "only eight synthetic motions" in text and "Kinetics-400" in text
    assert "MVT_OFFLINE" in text and page.locator("#offer").is_hidden(), "offline: why it is not offered"
    titles = page.locator(".mvt-slot h3 + p, .mvt-slot .prose").all_inner_texts()
    assert any("SynthMotion · 8 synthetic motions" in t for t in titles), titles
    assert page.locator(".mvt-colorbar").count() >= 1, "every heat map has a colour bar"
    _shot(page, "synthetic-notice", viewport)
    page.close()


def _tab(page, name: str) -> None:
    """Open a tab (on a phone, through the "More tabs" menu where it does not fit)."""
    tab = page.get_by_role("tab", name=name)
    if not tab.is_visible():
        page.locator("button[aria-label='More tabs']").click()
        tab = page.locator("button:visible", has_text=name).last
    tab.click()


def _export_report(page, app_url: str) -> tuple[dict, str]:
    _tab(page, "Export")
    page.locator("#build-zip").click()
    link = page.locator("#export a[href]").first
    link.wait_for(timeout=120_000)
    href = link.get_attribute("href")
    url = href if href.startswith("http") else app_url.rstrip("/") + "/" + href.lstrip("/")
    with urllib.request.urlopen(url, timeout=60) as r, zipfile.ZipFile(io.BytesIO(r.read())) as z:
        return json.loads(z.read("report.json")), z.read("report.html").decode()


@VIEWPORTS
def test_explain_class_acts_only_on_a_chosen_class_and_everything_names_it(
    browser, app_url, viewport, tmp_path
):
    page = _open(browser, app_url, viewport)
    _upload(page, make_moving_square(tmp_path / "klass.mp4", frames=32, size=128, seed=12))
    _compare(page, page.locator("#models .token").count())
    _settled(page)
    frame = page.locator("#slot-0 .mvt-frame")
    before, show = frame.get_attribute("style"), page.locator("#show input").input_value()
    box = page.locator("#class-0 input")
    box.scroll_into_view_if_needed()
    box.click()  # opened…
    page.get_by_role("option").first.wait_for(timeout=10_000)
    page.keyboard.press("Escape")  # …and dismissed
    page.locator("#slot-1").click(position={"x": 5, "y": 5})  # and a click elsewhere
    time.sleep(3.0)
    assert frame.get_attribute("style") == before and page.locator("#show input").input_value() == show
    assert "explaining the class" not in page.locator("#slot-0").inner_text()
    # a class chosen: that panel explains it, and Show, the Data tab and the export name class and method
    box.click()
    options = page.get_by_role("option")
    options.first.wait_for(timeout=10_000)
    chosen = options.nth(1).inner_text().replace("✓", "").strip()
    options.nth(1).click()
    page.wait_for_function(
        "c => document.querySelector('#slot-0 .mvt-captions')?.textContent.includes(`explaining the class “${c}”`)",
        arg=chosen,
        timeout=180_000,
    )
    from lens.explain.evidence import lead_method
    from lens.ui.present import class_method

    # the panel's lead view when it depends on the class (token flow), else gradient-weighted rollout
    expected = class_method(lead_method(page.locator("#slot-0 .mvt-view").get_attribute("data-model")))
    label = lens.METHODS[expected].label
    method = page.locator("#show input").input_value()
    assert method == label, method
    _tab(page, "Data")
    data = page.locator("#summary").inner_text()
    assert chosen in data and expected in data
    report, html = _export_report(page, app_url)
    explained = report["models"][0]["explained"]
    assert explained["class"] == chosen and explained["method"] == expected
    assert chosen in html and label in html
    assert _pills(page) == []
    _shot(page, "class-explained", viewport)
    page.close()


@VIEWPORTS
def test_the_sticky_timeline_is_compact_and_hides_no_title_prediction_or_map(
    browser, app_url, viewport, tmp_path
):
    page = _open(browser, app_url, viewport)
    _upload(page, make_moving_square(tmp_path / "layout.mp4", frames=32, size=128, seed=4))
    n = page.locator("#models .token").count()
    _compare(page, n)
    timeline = page.locator("#timeline")
    height = timeline.bounding_box()["height"]
    if viewport is DESKTOP:  # controls with the curves and legend, or with each model's windows: 90 px
        assert height <= 90, height
    fold = page.locator(".mvt-fold")
    folded = "() => document.querySelector('.mvt-timeline').classList.contains('mvt-folded')"
    was = page.evaluate(folded)
    fold.click()  # collapsible: the curves fold away (or, when they started folded, open)
    page.wait_for_function(f"() => ({folded})() !== {str(was).lower()}")
    assert (timeline.bounding_box()["height"] > height) == was
    if was:
        fold.click()
    for i in range(n):  # a panel brought into view: its title, map and top-5 are below the sticky timeline
        for part in (f"#slot-{i} h3", f"#slot-{i} .mvt-frame", f"#slot-{i} .mvt-top5"):
            page.locator(part).evaluate("e => e.scrollIntoView({block: 'start'})")
            time.sleep(0.2)
            bar = timeline.bounding_box()
            box = page.locator(part).bounding_box()
            assert box["y"] >= bar["y"] + bar["height"] - 1, (part, box, bar)
    _shot(page, "timeline", viewport)
    page.close()
