"""The page in Chromium with markup where strangers put it: class labels from a checkpoint's ``id2label`` and a
class typed into Explain class. Each shows as text — in the panel (top-5, captions, the target's tooltip) and
the error toast (which Gradio renders as HTML) — and no injected element or handler ever exists.

(Gradio strips ``<>"`` from uploaded file names itself, so a file name's markup is tested on the paths that
keep it, and the Markdown of titles and notes as strings, in tests/lens/test_hostile_strings.py.)"""

from __future__ import annotations

import pytest

from tests.conftest import CHROMIUM_ARGS  # noqa: F401 (the browser fixture's flags)
from tests.mirror import register_test_model
from tests.test_app import make_moving_square
from tests.test_browser import DESKTOP, _choose_models, _compare, _open, _settled, _upload

pytestmark = pytest.mark.browser

HOOK = "window.__pwned=(window.__pwned||0)+1"
LABEL = f"<img src=x onerror={HOOK}><b>bold</b>"
"""A class label as a checkpoint's config could carry it (markup that runs if it is ever parsed as HTML)."""
INJECTED = "img[src='x'], b:not([class]):not([data-testid])"  # what the markup would make


def _pwned(page) -> int:
    return page.evaluate("() => window.__pwned || 0")


def _no_markup(page, where: str) -> None:
    assert _pwned(page) == 0, f"{where}: an injected handler ran"
    found = page.evaluate(
        """() => [...document.querySelectorAll("img[src='x'], img[onerror], svg[onload]")].map(e => e.outerHTML)"""
    )
    assert found == [], f"{where}: injected elements {found}"


@pytest.fixture
def hostile_model(monkeypatch):
    """``hvt_t.hostile``: hvt_t's untrained weights with every class named by :data:`LABEL` (what a hub
    checkpoint's ``id2label`` gives: ``ModelSpec.class_names``)."""
    import app
    import mvt

    base = mvt.get_spec("hvt_t.untrained")
    labels = tuple(f"{LABEL} {i}" for i in range(len(base.labels)))
    name = register_test_model(monkeypatch, "hvt_t.hostile", "hvt_t.untrained", class_names=labels)
    yield name, labels
    app.SERVICE.forget(name)


def test_markup_in_labels_and_typed_classes_stays_text(browser, app_url, tmp_path, hostile_model):
    name, labels = hostile_model
    page = _open(browser, app_url, DESKTOP)

    # labels from the checkpoint: top-5 and its target tooltip in the panel, as text
    _upload(page, make_moving_square(tmp_path / "clip.mp4", frames=16, size=96, seed=3))
    _choose_models(page, [name])
    _compare(page, 1)
    panel = page.locator(".mvt-view[data-model='hvt_t.hostile']")
    assert LABEL in panel.inner_text(), "the label is shown, literally"
    _no_markup(page, "panel top-5")

    # a class typed into Explain class that is no class: the panel's note quotes it as text
    _settled(page)
    klass = page.locator("#class-0 input")
    klass.fill(f"{LABEL} nope")
    klass.press("Enter")
    note = page.locator("#slot-0 .mvt-note-panel").filter(has_text="no class called")
    note.first.wait_for(state="visible", timeout=60_000)
    assert LABEL in note.first.inner_text()
    _no_markup(page, "panel note")

    # a class typed that is one of its labels: explained, and the caption names it as text
    klass.fill(labels[2])
    klass.press("Enter")
    page.wait_for_function(
        "t => [...document.querySelectorAll('.mvt-captions')].some(c => c.textContent.includes(t))",
        arg=f"explaining the class “{labels[2]}”",
        timeout=120_000,
    )
    _no_markup(page, "caption of the explained class")
    page.close()
