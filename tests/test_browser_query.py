"""Ask a point in Debian's Chromium: a click on a SynthMotion panel turns every panel into that point's
attention with the point marked (the click-to-pictures latency is printed and, with
``MVT_SCREENSHOT_DIR=dir``, written to ``query_latency.json`` there with the screenshots), a click on a part
of the clip every model cropped away says so in every panel, the way back restores the CLS view, and the
frame × frame tab shows one matrix per model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import mvt
from tests.test_browser import (
    DESKTOP,
    PHONE,
    _choose_models,
    _compare,
    _open,
    _real_errors,
    _settled,
    _upload,
)

pytestmark = pytest.mark.browser
MODELS = ["mvit_t.synth", "mmvit_t.synth", "vivit_t1.synth", "hvt_t.synth"]
PAD = 64
"""Columns of background added on each side of a 224² SynthMotion example: the SynthMotion models' centre
crop leaves them out."""

PICTURES = "() => [...document.querySelectorAll('[id^=slot-] .mvt-view .mvt-frame')].map(f => f.style.backgroundImage)"


@pytest.fixture(scope="module")
def wide_example(tmp_path_factory) -> tuple[Path, tuple[float, float, float]]:
    """The move-left example padded to 352×224, and a point on its actor (t, x, y) from the example's mask."""
    from lens.core.storage import file_sha256
    from lens.ui.examples import EXAMPLES_DIR, ground_truth

    src = EXAMPLES_DIR / "synth_move_left.mp4"
    clip = mvt.read_clip(src, num_frames=16, stride=1)
    frames = np.pad(clip.frames, ((0, 0), (0, 0), (PAD, PAD), (0, 0)), constant_values=90)
    path = mvt.write_video(frames, tmp_path_factory.mktemp("wide") / "wide_move_left.mp4", fps=clip.fps)
    truth = ground_truth(file_sha256(src))
    t = float(clip.times[6])
    ys, xs = np.nonzero(truth.at([t])[0])
    return path, (t, float(xs.mean()) + PAD, float(ys.mean()))


def _save(page, name: str) -> None:
    if os.environ.get("MVT_SCREENSHOT_DIR"):
        folder = Path(os.environ["MVT_SCREENSHOT_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / name), full_page=False)


def _show(page, selector: str) -> None:
    """Scroll so that ``selector``'s picture ends at the bottom of the window (clear of the sticky timeline)."""
    page.locator(selector).first.evaluate("e => e.scrollIntoView({block: 'end'})")
    page.evaluate("() => window.scrollBy(0, 140)")


def _click_and_time(page, selector: str, u: float, v: float, before: list[str]) -> float:
    """Click ``selector`` at (u, v) of its box; milliseconds until every model picture has changed and its
    mark or notice is drawn (measured in the page from the click)."""
    frame = page.locator(selector).first
    frame.evaluate("e => e.scrollIntoView({block: 'end'})")  # below the sticky timeline, which covers the top
    box = frame.bounding_box()
    page.evaluate("() => { window.mvtLens.asked = null; }")
    page.mouse.click(box["x"] + u * box["width"], box["y"] + v * box["height"])
    page.wait_for_function(
        """([before]) => {
        const frames = [...document.querySelectorAll('[id^=slot-] .mvt-view .mvt-frame')];
        const done = frames.length === before.length && frames.every((f, i) => f.style.backgroundImage !== before[i]
          && f.querySelector('[data-testid=query-mark], [data-testid=query-unseen]'));
        if (done && !window.mvtLens.answered) window.mvtLens.answered = performance.now();
        return done;
      }""",
        arg=[before],
        timeout=60_000,
        polling="raf",
    )
    return page.evaluate("() => window.mvtLens.answered - window.mvtLens.asked")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1366x768", "390x844"])
def test_a_click_asks_a_point_of_every_model(browser, app_url, viewport, wide_example):
    path, (t, x, y) = wide_example
    page = _open(browser, app_url, viewport)
    _upload(page, path)
    _choose_models(page, MODELS)
    _compare(page, len(MODELS))
    _settled(page)  # each panel's lead view streams in after its fast view: the point is asked of the last
    page.evaluate(f"() => window.mvtLens.setTime({t})")
    before = page.evaluate(PICTURES)
    assert len(before) == len(MODELS)
    # the actor, clicked on the first panel (its crop starts PAD·112/224 px into the 176-px-wide resize)
    u, v = (x - PAD) / 224, y / 224
    page.evaluate("() => { window.mvtLens.answered = null; }")
    ms = _click_and_time(page, "#slot-0 .mvt-frame", u, v, before)
    marks = page.locator("[id^=slot-] [data-testid=query-mark]")
    assert marks.count() == len(MODELS)
    captions = page.locator("[id^=slot-] .mvt-captions").all_inner_texts()
    assert all("Stage" in c for c in captions), captions
    for i in range(len(MODELS)):  # the point is marked where it was clicked, in every model's crop
        style = page.locator(f"#slot-{i} [data-testid=query-mark]").get_attribute("style")
        left = float(style.split("left:")[1].split("%")[0])
        assert left == pytest.approx(100 * u, abs=1.5), (MODELS[i], style)
    _show(page, "#slot-0 .mvt-frame")
    _save(page, f"query-actor-{viewport['width']}x{viewport['height']}.png")
    # the background, far from the actor
    page.evaluate("() => { window.mvtLens.answered = null; }")
    ms_bg = _click_and_time(page, "#slot-1 .mvt-frame", 0.12, 0.88, page.evaluate(PICTURES))
    _save(page, f"query-background-{viewport['width']}x{viewport['height']}.png")
    # a point every model cropped away, clicked on the clip's own frame
    page.evaluate("() => { window.mvtLens.answered = null; }")
    _click_and_time(page, "#clip_view .mvt-frame", 0.04, 0.5, page.evaluate(PICTURES))
    unseen = page.locator("[id^=slot-] [data-testid=query-unseen]")
    assert unseen.count() == len(MODELS) and "cropped away" in unseen.first.inner_text()
    assert all("crop cut it away" in c for c in page.locator("[id^=slot-] .mvt-captions").all_inner_texts())
    _show(page, "#clip_view .mvt-frame")
    _save(page, f"query-cropped-{viewport['width']}x{viewport['height']}.png")
    # the way back
    page.locator("#slot-0 .mvt-query-clear").click()
    page.wait_for_function(
        "() => !document.querySelector('[id^=slot-] [data-testid=query-unseen]')", timeout=30_000
    )
    assert page.locator("[id^=slot-] [data-testid=query-mark]").count() == 0
    if viewport is PHONE:  # Gradio folds the tabs into an overflow menu at this width: checked on the desktop
        assert not _real_errors(page), _real_errors(page)
        page.close()
        return
    # one frame × frame matrix per model
    page.get_by_role("tab", name="Frame × frame").click()
    page.wait_for_function(
        "n => document.querySelectorAll('#matrices .js-plotly-plot').length === n",
        arg=len(MODELS),
        timeout=60_000,
    )
    page.locator("#matrices").scroll_into_view_if_needed()
    _save(page, f"frames-{viewport['width']}x{viewport['height']}.png")
    latency = {
        "actor_ms": round(ms, 1),
        "background_ms": round(ms_bg, 1),
        "load": [round(v, 2) for v in os.getloadavg()],
    }
    print(f"\nquery click → every picture {viewport['width']}x{viewport['height']}: {latency}")
    if os.environ.get("MVT_SCREENSHOT_DIR"):
        out = Path(os.environ["MVT_SCREENSHOT_DIR"]) / "query_latency.json"
        old = json.loads(out.read_text()) if out.exists() else {}
        out.write_text(json.dumps({**old, f"{viewport['width']}x{viewport['height']}": latency}, indent=1))
    assert not _real_errors(page), _real_errors(page)
    page.close()
