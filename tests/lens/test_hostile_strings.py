"""HTML and script in the strings strangers control — an uploaded file's name, a class label typed into the
page, the ``id2label`` of a checkpoint's config — reach every panel, caption, tooltip, the timeline,
``report.html`` and ``summary.html`` as text: escaped, never as markup. (The page itself, with Gradio's
Markdown, banners and toasts, is checked in Chromium by tests/test_browser_hostile.py.)"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import zipfile

import pytest

import lens
import mvt
from lens.core.request import class_index
from lens.dataset import DatasetConfig, RowConfig, analyse_dataset
from lens.ui import present
from tests.mvt.test_downloads import _hub_entry
from tests.test_app import make_moving_square

FILE_PAYLOAD = "\"'><img src=x onerror=alert(1)> <svg onload=alert(2)>"
"""What a file name can carry (no slash): attribute breakers and two tags with handlers."""
LABEL_PAYLOAD = "</script><script>alert(3)</script><img src=x onerror=alert(4)>\"'&"
"""What a label can carry: closing a script block, a script, a handler, quotes and an ampersand."""
MARKUP = re.compile(r"<(img|svg|script)\b[^>]*(src=x|onload|alert)|</script><script", re.IGNORECASE)
"""The payloads as live markup (escaped text never matches: its ``<`` is ``&lt;``)."""
DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")


def assert_text_not_markup(doc: str, payload: str, *, where: str, must_show: bool = True) -> None:
    """``payload`` appears in ``doc`` only escaped (and does appear, escaped, when ``must_show``). Embedded
    images' base64 is left out of the search: it is data, and may spell "alert" or "onload" by chance."""
    doc = DATA_URI.sub("data:", doc)
    assert not MARKUP.search(doc), f"{where}: live markup {MARKUP.search(doc).group(0)!r}"
    if must_show:
        shown = html.escape(payload, quote=True)
        assert shown in doc or html.escape(payload, quote=False) in doc, f"{where}: the text is not shown"


@pytest.fixture
def hostile(weights_mirror, monkeypatch, tmp_path):
    """A checkpoint whose config.json names every class with the label payload (a hub repo on the loopback
    mirror, loaded the way a real one is), and a clip whose file name is the file payload."""
    base = mvt.get_spec("vivit_t1.untrained").labels
    labels = tuple(f"{LABEL_PAYLOAD} {i}" for i in range(len(base)))
    weights_mirror.standard.vivit("vivit_t1")()  # built before it is asked for (seconds on a busy machine)
    name = _hub_entry(weights_mirror, monkeypatch, labels)
    clip = make_moving_square(tmp_path / f"{FILE_PAYLOAD}.mp4", frames=16, size=64, seed=4)
    assert clip.is_file()
    return name, labels, clip


def test_names_and_labels_reach_panels_timeline_and_report_as_text(hostile, tmp_path):
    name, labels, clip = hostile
    svc = lens.Service(out_dir=tmp_path / "out")
    analysis = svc.analyse(clip, [name, "hvt_t.untrained"], ["rollout"])
    assert svc.labels(name) == labels, "the labels are the checkpoint's own"
    url = lambda p: f"gradio_api/file={p}"  # noqa: E731
    panels = svc.render(analysis, lens.Display("attention"))
    slots = [present.panel_screen(p, i, url, svc.labels(p.name)) for i, p in enumerate(panels)]
    top5 = slots[0].html
    assert_text_not_markup(top5, LABEL_PAYLOAD, where="panel top-5")
    assert all(lab.startswith(LABEL_PAYLOAD) for lab in slots[0].classes), "the class choices are plain text"
    for s in slots:
        assert_text_not_markup(s.title, "", where=f"{s.name} title", must_show=False)
    line = present.timeline(panels, analysis.clip)
    assert_text_not_markup(line, FILE_PAYLOAD, where="timeline")
    json.dumps(present.summary(analysis, panels))  # the Data tab: plain JSON

    # a class typed into "Explain class": found by its text, explained, and captioned as text
    typed = labels[3]
    target = class_index(typed, svc.labels(name))
    assert target == 3
    one = svc.analyse(clip, [name], ["grad_rollout"], target=target)
    panel = svc.render(one, lens.Display("grad_rollout"))[0]
    explained = present.panel_screen(panel, 0, url, svc.labels(name))
    assert explained.klass == typed
    assert_text_not_markup(explained.html, LABEL_PAYLOAD, where="explained panel (caption, target tooltip)")
    assert "explaining the class “" + html.escape(typed) in explained.html

    # report.html of the export, with faithfulness for the model with the hostile labels
    metrics = svc.faithfulness(one, steps=2)
    with zipfile.ZipFile(svc.export(analysis, metrics=metrics)) as z:
        report = z.read("report.html").decode()
        data = json.loads(z.read("report.json"))
    assert_text_not_markup(report, LABEL_PAYLOAD, where="report.html top-5")
    assert_text_not_markup(report, FILE_PAYLOAD, where="report.html clip name")
    assert data["clip"]["name"] == clip.name, "report.json keeps the name as it is"


def test_a_file_name_reaches_the_error_panel_and_summary_html_as_text(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    make_moving_square(folder / f"{FILE_PAYLOAD} good.mp4", frames=16, size=64, seed=5)
    (folder / f"{FILE_PAYLOAD} broken.mp4").write_bytes(b"\x00" * 4000)
    out = tmp_path / "run"
    config = DatasetConfig(RowConfig(methods=("rollout",)), out=out, faithfulness_n=0, progress=False)
    r = analyse_dataset(str(folder), ["hvt_t.untrained"], config)
    errors = [row for row in r.rows if row["error"]]
    assert len(errors) == 1 and FILE_PAYLOAD in errors[0]["error"], "the error names the file"
    page = (out / "summary.html").read_text(encoding="utf-8")
    assert_text_not_markup(page, FILE_PAYLOAD, where="summary.html errors table")

    # the same unreadable file in a panel: its error, in place, as text
    svc = lens.Service(out_dir=tmp_path / "out")
    with pytest.raises(mvt.VideoError) as err:
        svc.analyse(folder / f"{FILE_PAYLOAD} broken.mp4", ["hvt_t.untrained"])
    assert FILE_PAYLOAD in str(err.value)
    failed = lens.timeline.panel_html(
        "hvt_t.untrained",
        frames=None,
        error=str(err.value),
        top5=[(LABEL_PAYLOAD, 0.5)],
        target_label=LABEL_PAYLOAD,
        captions=[str(err.value)],
        url=str,
        color="#000",
    )
    assert_text_not_markup(failed, FILE_PAYLOAD, where="failed panel")
    assert_text_not_markup(failed, LABEL_PAYLOAD, where="failed panel top-5")


def test_markdown_titles_show_notes_and_descriptions_as_text(tmp_path):
    """A panel's title is Markdown (Gradio sanitises it, but a tag would still render): notes from the
    decoder, which may quote a file name, and descriptions are escaped into it."""
    r = lens.Service(out_dir=tmp_path / "out").analyse(
        make_moving_square(tmp_path / "plain.mp4", frames=16, size=64, seed=6), ["hvt_t.untrained"]
    )
    result = dataclasses.replace(
        r.results[0], description=LABEL_PAYLOAD, notes=[f"the file {FILE_PAYLOAD}.mp4 ends early"]
    )
    text = present.title(result.name, result)
    assert_text_not_markup(text, "", where="title", must_show=False)
    assert present.markdown_text(LABEL_PAYLOAD) in text and present.markdown_text(FILE_PAYLOAD) in text
    assert "**untrained weights" in text, "the title's own Markdown stays Markdown"


def test_a_model_name_typed_into_the_list_is_text_in_its_note():
    """The model list takes any value (for API users); an unknown name's note (Markdown) quotes it as text."""
    from lens.ui import defaults

    notes = defaults.availability([LABEL_PAYLOAD], probe=False)
    assert len(notes) == 1 and notes[0].startswith("unknown model") and "&lt;img src=x" in notes[0]
    assert_text_not_markup(notes[0], "", where="model note", must_show=False)
