"""Add a model (lens.ui.adding through lens.ui.actions): an uploaded fine-tune or a Hub repo recognised and
offered in its own session only, where it runs like any registry model (panels with its own classes, a class
explained, export, faithfulness); a file that does not fit is one message in the section and leaves nothing
behind; spec strings naming the server's files or URLs are refused wherever a name is typed."""

from __future__ import annotations

import html
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision

import mvt
from lens.core.request import LensError
from lens.service.service import Service
from lens.ui import adding, api, defaults
from lens.ui.actions import Actions
from lens.ui.screens import Controls
from tests.checkpoint_formats import tiny_mmaction_file, vivit_repo
from tests.test_app import make_moving_square

CLASSES = [f"stroke {i} of mine" for i in range(12)]
REGISTRY = "mvit_t.untrained"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_moving_square(tmp_path_factory.mktemp("adding") / "clip.mp4", seed=5)


@pytest.fixture
def upload(tmp_path) -> Path:
    """A 12-class MMAction2 fine-tune as the web server hands an upload over (a file in its own folder), with a
    name a spec string would misread."""
    folder = tmp_path / "gradio-upload"
    folder.mkdir()
    return tiny_mmaction_file(folder / "my fine#labels=x.pth", CLASSES)


@pytest.fixture
def acts(tmp_path):
    service = Service(out_dir=tmp_path / "out")
    actions = Actions(service, lambda p: f"files/{Path(p).name}", 4)
    yield actions
    for session in ("s1", "s2"):
        actions.end(session)
    service.close()


def _controls() -> Controls:
    return Controls("attention")


def test_an_uploaded_fine_tune_is_recognised_chosen_and_offered_in_its_session_only(acts, upload):
    screen = acts.add(checkpoint=str(upload), class_names="", models=[REGISTRY], session="s1")
    name = screen.models.value[-1]
    assert screen.models.value == [REGISTRY, name] and name.endswith(".mmaction")
    assert name in [n for _, n in screen.models.choices] and screen.model_set == defaults.CUSTOM
    added = screen.added
    for words in ("Added", "MMAction2 checkpoint", "mvit", "MViTv2, 3 blocks", "12: stroke 0 of mine",
                  "meta.dataset_meta.classes", "4 frames 3 apart", "<div class='mvt-key'>parameters</div><div class='mvt-value'>75,116</div>", "press Compare"):  # fmt: skip
        assert words in added, words
    assert "role='alert'" not in added
    spec = mvt.get_spec(name)
    copy = Path(spec.checkpoint.location)
    assert copy.is_file() and acts.service.session_dir("s1") in copy.parents and "#" not in copy.name
    assert name not in [n for _, n in acts._choices("s2")] and name not in [n for _, n in acts._choices(None)]
    assert name not in [n for _, n in defaults.model_choices()], "another page's picker never lists it"


def test_it_runs_like_any_model_with_its_own_classes(acts, upload, clip, tmp_path):
    name = acts.add(checkpoint=str(upload), models=[], session="s1").models.value[0]
    screens = list(acts.compare(clip=str(clip), models=[name, REGISTRY], controls=_controls(), session="s1"))
    last = screens[-1]
    assert last.banner is None and last.state.names == (name, REGISTRY)
    mine = last.panels[0]
    assert "its own 12 classes · stroke 0 of mine, stroke 1 of mine, stroke 2 of mine, …" in mine.title
    assert all(c in CLASSES for c in mine.classes) and any(f">{c}<" in mine.html for c in CLASSES)
    explained = acts.explain(index=0, state=last.state, klass=CLASSES[7], controls=_controls(), session="s1")
    assert explained.panels[0].klass == CLASSES[7] and explained.panels[0].note is None
    zipped = acts.export(state=explained.state, controls=_controls(), session="s1").export
    with zipfile.ZipFile(zipped) as z:
        record = json.loads(z.read("report.json"))["models"][0]
    ckpt = record["weights"]["checkpoint"]
    assert ckpt["format"] == "mmaction2" and ckpt["family"] == "mvit" and ckpt["num_classes"] == 12
    assert ckpt["labels_source"] == "meta.dataset_meta.classes" and ckpt["variant"].startswith("MViTv2")
    assert ckpt["preprocessing"]["num_frames"] == 4 and ckpt["preprocessing"]["crop_size"] == 64
    assert "meta.cfg" in ckpt["preprocessing"]["source"] and ckpt["parameters"] == 75116
    assert record["explained"]["class"] == CLASSES[7]
    scored = acts.faithfulness(state=explained.state, steps=4, session="s1")
    assert scored.faithfulness_note == "" and {r[0] for r in scored.faithfulness_table} == {name, REGISTRY}


def test_another_session_cannot_run_it_and_typed_spec_strings_are_refused(acts, upload, clip, tmp_path):
    name = acts.add(checkpoint=str(upload), models=[], session="s1").models.value[0]
    before = set(mvt.list_models())
    secret = tmp_path / "server-side.pth"
    tiny_mmaction_file(secret, CLASSES[:5])
    for names in ([name], [f"file:{secret}"], [f"url:http://127.0.0.1:9/{secret.name}"], ["hub:org/x"]):
        (screen,) = list(acts.compare(clip=str(clip), models=names, controls=_controls(), session="s2"))
        assert (
            screen.banner and "not a model of this page" in screen.banner and "Add a model" in screen.banner
        )
    notes = acts.pick_models([f"file:{secret}"]).notes
    assert "Add a model" in notes
    assert set(mvt.list_models()) == before, "nothing typed was read or registered"
    with pytest.raises(LensError, match="the API runs the registry"):
        api.allowed([REGISTRY, f"file:{secret}"])
    with pytest.raises(LensError, match="the API runs the registry"):
        api.allowed([name])
    assert api.allowed([REGISTRY, "hub:org/name"]) == [REGISTRY, "hub:org/name"]


def _unknown(tmp_path: Path) -> Path:
    path = tmp_path / "up" / "resnet18.pth"
    path.parent.mkdir()
    torch.save(torchvision.models.resnet18(num_classes=12).state_dict(), path)
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo never",))


def test_a_file_that_does_not_fit_is_one_message_and_leaves_nothing(acts, tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"model": _Evil()}, evil)
    missing = tmp_path / "missing.pth"
    tiny = tiny_mmaction_file(tmp_path / "tiny.pth", CLASSES)
    raw = torch.load(tiny, weights_only=True)
    raw["state_dict"] = {k: v for k, v in raw["state_dict"].items() if "blocks.1.mlp" not in k}
    torch.save(raw, missing)
    before = set(mvt.list_models())
    cases = {
        _unknown(tmp_path): "resnet18.pth is not a checkpoint mvt recognises: it holds a state dict of 122 tensors",
        evil: "Refused to load evil.pth: it is not a plain tensor checkpoint",
        missing: "block 1 has no attn.qkv / mlp.3 weights: not an MViT block.",
    }  # fmt: skip
    for path, words in cases.items():
        screen = acts.add(checkpoint=str(path), models=[REGISTRY], session="s1")
        assert screen.changes().keys() == {"added"}, "the picker is left alone"
        assert "role='alert'" in screen.added and "Not added:" in screen.added and words in screen.added
        assert screen.added.count("Not added") == 1
    assert set(mvt.list_models()) == before
    assert not list((acts.service.session_dir("s1") / "models").glob("*/*")), "no upload kept"


def test_typed_repos_class_names_size_cap_and_empty_asks(acts, tmp_path, weights_mirror, monkeypatch):
    folder = tmp_path / "repo"
    folder.mkdir()
    vivit_repo(folder, list("abcdefg"), frames=4, size=32)
    for f in ("config.json", "model.safetensors", "preprocessor_config.json"):
        weights_mirror.add_hf("lab/vivit-seven", f, folder / f)
    screen = acts.add(repo=" hub:lab/vivit-seven ", models=[], session="s1")
    (name,) = screen.models.value
    assert "Hugging Face VivitForVideoClassification" in screen.added and "7: a, b, c" in screen.added
    assert mvt.get_spec(name).checkpoint.source.startswith("hub:lab/vivit-seven@")
    for typed in (
        "file:/etc/passwd",
        "/etc/passwd",
        "url:https://host/x.pth",
        "https://host/x.pth",
        "a/../b",
    ):
        shown = acts.add(repo=typed, models=[], session="s1").added
        assert "is not a Hugging Face repo id" in shown, typed
    assert "Choose a checkpoint file" in acts.add(models=[], session="s1").added
    bare = tmp_path / "tv" / "model_44.pth"
    bare.parent.mkdir()
    raw = torch.load(tiny_mmaction_file(tmp_path / "t.pth", CLASSES), weights_only=True)
    raw["meta"]["dataset_meta"] = {}
    torch.save(raw, bare)
    typed = "\n".join(f"gesture {i}" for i in range(12)) + "\n\n"
    named = acts.add(checkpoint=str(bare), class_names=typed, models=[], session="s1")
    assert "12: gesture 0, gesture 1" in named.added and "the labels given" in named.added
    wrong = acts.add(checkpoint=str(bare), class_names="one\ntwo", models=[], session="s1").added
    assert "names 2 classes, but the checkpoint's head has 12 outputs" in html.unescape(wrong)
    monkeypatch.setattr(adding, "MAX_MB", 0)
    assert "over the 0 MB this app takes" in acts.add(checkpoint=str(bare), models=[], session="s1").added


def test_a_full_picker_keeps_its_choice_and_says_so(acts, upload):
    full = ["mvit_t.untrained", "hvt_t.untrained", "mmvit_t.untrained", "vivit_t.untrained"]
    screen = acts.add(checkpoint=str(upload), models=full, session="s1")
    assert screen.models.value == full and "remove one and pick it" in screen.added


def test_the_session_ending_drops_its_models_unless_another_holds_them(acts, upload, clip):
    name = acts.add(checkpoint=str(upload), models=[], session="s1").models.value[0]
    list(acts.compare(clip=str(clip), models=[name], controls=_controls(), session="s1"))
    assert acts.service.models.peek(name) is not None
    acts.end("s1")
    assert name not in mvt.list_models() and acts.service.models.peek(name) is None
    assert not acts.service.session_dir("s1").joinpath("models").exists()
    a = acts.add(checkpoint=str(upload), models=[], session="s1").models.value[0]
    b = acts.add(checkpoint=str(upload), models=[], session="s2").models.value[0]
    assert a != b, "each session's upload is its own model"


def test_what_a_file_names_is_shown_as_text(acts, tmp_path, clip):
    hostile = ["<img src=x onerror=alert(1)>", "**bold** _x_ `c`", *(f"c{i}" for i in range(10))]
    path = tiny_mmaction_file(tmp_path / "<b>x<i>.pth", hostile)
    screen = acts.add(checkpoint=str(path), class_names="<script>alert(2)</script>", models=[], session="s1")
    assert "<img" not in screen.added and "&lt;img src=x onerror=alert(1)&gt;" in screen.added
    assert "<b>x" not in screen.added and "<i>" not in screen.added
    (name,) = screen.models.value
    last = list(acts.compare(clip=str(clip), models=[name], controls=_controls(), session="s1"))[-1]
    title = last.panels[0].title
    assert "<img" not in title and "&lt;img src=x onerror=alert(1)&gt;" in title and "\\*\\*bold" in title
