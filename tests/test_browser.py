"""End to end in Debian's Chromium: upload a clip, Compare, overlays play, plotly figures render, no errors.

Set ``MVT_SCREENSHOT=path.png`` to also save the screenshot there (that is how the README's is made).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM_ARGS
from tests.test_app import make_moving_square

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser


def _error_toasts(page) -> list[str]:
    """Texts of error toasts (warnings, e.g. about untrained weights, are expected and allowed)."""
    texts = page.locator("[data-testid='toast-body']").all_inner_texts()
    return [t for t in texts if "error" in t.lower()]


def test_upload_compare_and_see_overlays(app_url, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed (apt-get install -y chromium); .ci/run installs it")
    clip = make_moving_square(tmp_path / "clip.mp4", frames=32, size=128)
    console_errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
        )
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_role("button", name="Compare").wait_for(state="visible", timeout=60_000)
        page.locator("input[type=file]").first.set_input_files(str(clip))
        # the upload is done when the clip box previews the uploaded file
        page.wait_for_function(
            "() => [...document.querySelectorAll('video')].some(v => v.src && v.src.includes('clip.mp4'))",
            timeout=60_000,
        )
        page.get_by_role("button", name="Compare").click()
        videos = page.locator("video[src*='overlay_']")
        try:
            videos.first.wait_for(state="attached", timeout=240_000)
        finally:
            page.screenshot(path=str(tmp_path / "after_compare.png"), full_page=True)
        assert not _error_toasts(page), _error_toasts(page)
        page.wait_for_function(
            "() => { const v = [...document.querySelectorAll('video')].filter(v => v.src.includes('overlay_'));"
            " return v.length >= 1 && v.every(x => x.readyState >= 2); }",
            timeout=120_000,
        )
        import lens

        n_videos = videos.count()
        assert n_videos == len(lens.default_models()), (
            f"expected an overlay per default model, got {n_videos}"
        )
        assert not _error_toasts(page), _error_toasts(page)
        page.get_by_role("tab", name="Token grids").click()
        page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=60_000)
        assert page.locator(".js-plotly-plot").count() >= 1
        page.get_by_role("tab", name="Token grids").scroll_into_view_if_needed()
        page.evaluate("window.scrollTo(0, 0)")
        # show a middle frame of every video (autoplaying clips may be between frames when captured)
        page.evaluate(
            "() => document.querySelectorAll('video').forEach(v => { v.pause(); v.currentTime = v.duration / 2; })"
        )
        page.wait_for_function(  # every video has seeked and has that frame
            "() => [...document.querySelectorAll('video')].every(v => !v.src || (!v.seeking && v.readyState >= 2))",
            timeout=30_000,
        )
        shot = tmp_path / "screenshot.png"
        page.screenshot(path=str(shot))  # the first screen: inputs, overlays and top-5 of every model
        browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("MVT_SCREENSHOT"):
        shutil.copy(shot, os.environ["MVT_SCREENSHOT"])
    real_errors = [e for e in console_errors if "favicon" not in e and "ERR_BLOCKED" not in e]
    assert not real_errors, real_errors
