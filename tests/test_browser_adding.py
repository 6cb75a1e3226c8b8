"""Add a model in Debian's Chromium: a 12-class fine-tune written here is uploaded, recognised (what the section
says), chosen beside a registry model and compared, its panel naming its own classes; a file of an unknown
architecture gets its one message in the section, and no error pill. At 1366×768 and 390×844.

``MVT_SCREENSHOT_DIR=dir`` saves ``add-model-1366x768.png`` and ``add-model-390x844.png`` there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from tests import test_browser as tb
from tests.checkpoint_formats import tiny_mmaction_file
from tests.test_app import make_moving_square

pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser
CLASSES = [f"brush stroke {i}" for i in range(12)]
REGISTRY = "mvit_t.synth"


def _open_section(page) -> None:
    page.get_by_text("Add a model (your checkpoint or a Hub repo)").click()
    page.locator("#checkpoint input[type=file]").wait_for(state="attached", timeout=10_000)


def _add_file(page, path: Path) -> str:
    """Upload ``path`` into the section, press Add; the section's answer as text."""
    page.locator("#checkpoint input[type=file]").set_input_files(str(path))
    page.wait_for_function(  # the web server has the file: the component lists it
        "name => (document.querySelector('#checkpoint')?.innerText || '').includes(name)", arg=path.name,
        timeout=30_000,
    )  # fmt: skip
    page.locator("#add").click()
    answer = page.locator("#added .mvt-added, #added .mvt-note-panel")
    answer.first.wait_for(state="visible", timeout=60_000)
    return answer.first.inner_text()


@pytest.mark.parametrize("viewport", [tb.DESKTOP, tb.PHONE], ids=["1366x768", "390x844"])
def test_an_uploaded_fine_tune_is_added_beside_a_registry_model_with_its_own_classes(
    browser, app_url, viewport, tmp_path
):
    ckpt = tiny_mmaction_file(tmp_path / "my_strokes.pth", CLASSES)
    page = tb._open(browser, app_url, viewport)
    tb._choose_models(page, [REGISTRY])
    _open_section(page)
    said = _add_file(page, ckpt)
    for words in ("Added my_strokes_", "MMAction2 checkpoint", "MViTv2, 3 blocks", "12: brush stroke 0",
                  "meta.dataset_meta.classes", "4 frames 3 apart", "75,116"):  # fmt: skip
        assert words in said, (words, said)
    page.wait_for_function("() => document.querySelectorAll('#models .token').length === 2", timeout=10_000)
    tokens = page.locator("#models .token").all_inner_texts()
    assert REGISTRY in tokens[0] and "my_strokes_" in tokens[1] and ".mmaction" in tokens[1]
    page.locator("#add-model").scroll_into_view_if_needed()
    tb._save(page, f"add-model-{viewport['width']}x{viewport['height']}.png")
    if viewport == tb.DESKTOP:  # the comparison once: the phone's layout of panels is test_browser's
        tb._upload(page, make_moving_square(tmp_path / "clip.mp4", seed=13))
        tb._compare(page, 2)
        mine = page.locator("#slot-1")
        title = mine.locator(".prose").first.inner_text()
        assert "its own 12 classes · brush stroke 0, brush stroke 1, brush stroke 2" in title, title
        top5 = mine.locator(".mvt-view").inner_text()
        assert sum(c in top5 for c in CLASSES) >= 5, top5
        assert "SynthMotion" in page.locator("#slot-0 .prose").first.inner_text()
        mine.scroll_into_view_if_needed()
        tb._save(page, "add-model-compared-1366x768.png")
    assert not tb._error_toasts(page) and not tb._real_errors(page), (
        tb._error_toasts(page),
        tb._real_errors(page),
    )
    page.close()


def test_an_unknown_architecture_is_one_message_in_the_section_and_no_error_pill(browser, app_url, tmp_path):
    path = tmp_path / "resnet18_finetune.pth"
    torch.save(torchvision.models.resnet18(num_classes=12).state_dict(), path)
    page = tb._open(browser, app_url, tb.DESKTOP)
    before = page.locator("#models .token").all_inner_texts()
    _open_section(page)
    said = _add_file(page, path)
    assert said.startswith("Not added: resnet18_finetune.pth is not a checkpoint mvt recognises"), said
    assert "122 tensors" in said and "Nothing was registered or kept." in said
    assert page.locator("#added [role=alert]").count() == 1
    page.locator("#add-model").scroll_into_view_if_needed()
    tb._save(page, "add-model-unknown-1366x768.png")
    assert page.locator("#models .token").all_inner_texts() == before
    assert not page.locator("[data-testid='toast-body']").count(), "no error pill"
    assert not tb._real_errors(page), tb._real_errors(page)
    page.close()
