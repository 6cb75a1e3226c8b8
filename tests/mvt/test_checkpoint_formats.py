"""Users' checkpoints through the real formats: each loads from a file and from a URL on the loopback mirror
(ViViT also from a hub repo id), with a non-400 head, labels from its own source, preprocessing from its own
config, and the reference implementation's logits (torchvision for MViT, transformers for ViViT)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import mvt
from mvt.checkpoints.pyslowfast import config_from_cfg, parse_cfg
from mvt.labels import get_labels
from tests.checkpoint_formats import (
    TINY_DATA,
    mmaction_checkpoint,
    pyslowfast_cfg,
    pyslowfast_checkpoint,
    references_checkpoint,
    tiny_mvit_section,
    to_mmaction,
    to_pyslowfast,
    torchvision_mvit,
    vivit_repo,
)

TOL = 1e-4


def _same_logits(model, reference, x) -> float:
    with torch.inference_mode():
        return (model(x) - reference(x)).abs().max().item()


def _clip(spec, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(5)
    return torch.randn(batch, 3, spec.num_frames, spec.crop_size, spec.crop_size)


@pytest.fixture(scope="module")
def pysf(tmp_path_factory):
    """Tiny PySlowFast MViT v1 and v2 ``.pyth`` files (SSv2 head, 174 classes) and their torchvision twins."""
    out = {}
    root = tmp_path_factory.mktemp("pysf")
    for version in ("v1", "v2"):
        text = pyslowfast_cfg(tiny_mvit_section(version == "v2"), TINY_DATA, 174, dataset="ssv2")
        cfg, classes = config_from_cfg(parse_cfg(text))
        tv = torchvision_mvit(cfg, classes, seed=1)
        state = to_pyslowfast(tv.state_dict(), separate_qkv=version == "v2")
        path = root / f"mvit_{version}_ssv2.pyth"
        torch.save(pyslowfast_checkpoint(state, text), path)
        out[version] = (path, tv)
    return out


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_pyslowfast_pyth_with_cfg_loads_from_a_file(pysf, version):
    path, tv = pysf[version]
    model = mvt.load_checkpoint(f"file:{path}")
    rec = model.spec.checkpoint
    assert (rec.format, rec.family, rec.num_classes) == ("pyslowfast", "mvit", 174)
    assert ("MViTv2" if version == "v2" else "MViT v1") in rec.variant and "3 blocks" in rec.variant
    assert model.spec.labels == get_labels("ssv2") and "cfg's dataset" in rec.labels_source
    pre = rec.preprocessing
    assert (pre.num_frames, pre.frame_stride, pre.crop_size, pre.resize_size) == (4, None, 64, 64)
    assert "cfg" in pre.source and model.spec.frame_stride is None
    assert rec.parameters == sum(p.numel() for p in tv.parameters())
    assert _same_logits(model, tv, _clip(model.spec)) <= TOL


def test_pyslowfast_from_a_url_on_the_mirror(pysf, weights_mirror):
    path, tv = pysf["v2"]
    url = weights_mirror.add("/files/runs/mvit_v2_ssv2.pyth", path)
    model = mvt.load_checkpoint(f"url:{url}")
    assert model.spec.weights.kind == "url" and model.spec.checkpoint.format == "pyslowfast"
    assert model.spec.labels[0] == "Approaching something with your camera"
    assert _same_logits(model, tv, _clip(model.spec)) <= TOL
    assert weights_mirror.count("/files/runs/mvit_v2_ssv2.pyth", "GET") == 1
    again = mvt.load_checkpoint(f"url:{url}")  # cached: no second download, the same name
    assert again.spec.name == model.spec.name
    assert weights_mirror.count("/files/runs/mvit_v2_ssv2.pyth", "GET") == 1


def test_pyslowfast_state_without_cfg_is_read_from_its_shapes(pysf, tmp_path):
    path, tv = pysf["v2"]
    raw = torch.load(path, weights_only=True)
    torch.save({"model_state": raw["model_state"]}, tmp_path / "bare.pyth")
    rec = mvt.inspect_checkpoint(tmp_path / "bare.pyth")
    assert rec.num_classes == 174 and rec.labels[:2] == ("class 0", "class 1")
    assert "class 0…173" in rec.labels_source and any("no cfg" in n for n in rec.notes)
    model = mvt.load_checkpoint(tmp_path / "bare.pyth")
    assert _same_logits(model, tv, _clip(model.spec)) <= TOL


@pytest.fixture(scope="module")
def mmaction(tmp_path_factory):
    """A tiny MMAction2 MViTv2 recogniser (5 classes named in meta) and its torchvision twin."""
    text = pyslowfast_cfg(tiny_mvit_section(True), TINY_DATA, 5)
    cfg, _ = config_from_cfg(parse_cfg(text))
    tv = torchvision_mvit(cfg, 5, seed=2)
    tmp = tmp_path_factory.mktemp("mma") / "mvit.pth"
    classes = ["pour", "stir", "cut", "peel", "wash"]
    torch.save(mmaction_checkpoint(to_mmaction(tv.state_dict(), stages=3), classes), tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]  # MMAction2 names files by their SHA-256 prefix
    path = tmp.rename(tmp.with_name(f"mvit-tiny_mine-rgb_20240101-{sha}.pth"))
    return path, tv, classes


def test_mmaction2_checkpoint_loads_with_its_classes_and_pipeline(mmaction, weights_mirror):
    path, tv, classes = mmaction
    for source in (f"file:{path}", "url:" + weights_mirror.add(f"/mma/{path.name}", path)):
        model = mvt.load_checkpoint(source)
        rec = model.spec.checkpoint
        assert rec.format == "mmaction2" and model.spec.labels == tuple(classes)
        assert rec.labels_source == "meta.dataset_meta.classes"
        pre = rec.preprocessing
        assert (pre.num_frames, pre.frame_stride, pre.resize_size, pre.crop_size) == (4, 3, 72, 64)
        assert pre.mean == pytest.approx((0.485, 0.456, 0.406)) and pre.std == pytest.approx(
            (0.229, 0.224, 0.225)
        )
        assert _same_logits(model, tv, _clip(model.spec)) <= TOL


def test_references_checkpoint_with_a_12_class_head_and_a_labels_file(tmp_path, weights_mirror):
    text = pyslowfast_cfg(tiny_mvit_section(True), TINY_DATA, 12)
    cfg, _ = config_from_cfg(parse_cfg(text))
    tv = torchvision_mvit(cfg, 12, seed=3)
    path = tmp_path / "checkpoint.pth"
    torch.save(
        references_checkpoint(tv.state_dict(), clip_len=4, val_resize_size=[72], val_crop_size=[64]), path
    )
    names = [f"gesture {i}" for i in range(12)]
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    bare = mvt.inspect_checkpoint(f"file:{path}")
    assert bare.format == "torchvision-references" and bare.labels[-1] == "class 11"
    assert "kinetics_version" not in bare.labels_source  # 12 outputs: not Kinetics-400, whatever args say
    url = weights_mirror.add("/runs/checkpoint.pth", path)
    for source in (
        f"file:{path}#labels={tmp_path / 'classes.txt'}",
        f"url:{url}#labels={tmp_path / 'classes.txt'}",
    ):
        model = mvt.load_checkpoint(source)
        assert model.spec.labels == tuple(names) and "classes.txt" in model.spec.checkpoint.labels_source
        pre = model.spec.checkpoint.preprocessing
        assert (pre.num_frames, pre.resize_size, pre.crop_size) == (4, 72, 64)
        assert pre.mean == (0.43216, 0.394666, 0.37645) and any("fps" in n for n in pre.notes)
        assert _same_logits(model, tv, _clip(model.spec)) <= TOL


@pytest.fixture(scope="module")
def vivit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vivit-7")
    labels = ["wave", "clap", "jump", "sit", "stand", "turn", "bow"]
    reference = vivit_repo(folder, labels, frames=16)
    return folder, reference, labels


def _hf_logits(reference, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return reference(pixel_values=x.permute(0, 2, 1, 3, 4)).logits  # HF takes (B, T, C, H, W)


def _check_vivit(model, reference, labels):
    rec = model.spec.checkpoint
    assert rec.format == "hf-vivit" and rec.family == "vivit" and rec.num_classes == 7
    assert model.spec.labels == tuple(labels) and rec.labels_source == "config.json id2label"
    assert (model.spec.num_frames, model.spec.crop_size, model.spec.resize_size) == (16, 32, 36)
    assert model.spec.mean == pytest.approx((0.75,) * 3) and model.spec.std == pytest.approx((0.25,) * 3)
    x = _clip(model.spec)
    with torch.inference_mode():
        assert (model(x) - _hf_logits(reference, x)).abs().max().item() <= TOL


def test_hub_vivit_repo_loads_by_repo_id_url_and_folder(vivit, weights_mirror):
    folder, reference, labels = vivit
    repo = "my-lab/vivit-7-gestures"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        weights_mirror.add_hf(repo, name, folder / name)
    model = mvt.load_checkpoint(f"hub:{repo}")
    _check_vivit(model, reference, labels)
    commit = weights_mirror.commits[repo]
    assert model.spec.checkpoint.source == f"hub:{repo}@{commit}"  # pinned to what main meant then
    _check_vivit(mvt.load_checkpoint(f"file:{folder}"), reference, labels)
    resolve = f"/{repo}/resolve/{commit}"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        weights_mirror.add(f"{resolve}/{name}", folder / name)
    _check_vivit(
        mvt.load_checkpoint(f"url:{weights_mirror.url}{resolve}/model.safetensors"), reference, labels
    )


def test_hvt_training_file_from_a_file_and_a_url(weights_mirror):
    path = weights_mirror.standard.hvt("hvt_ti_1")()  # real size, written as HVT's main.py writes it
    url = weights_mirror.add("/mine/hvt_ti_1.pth", path)
    for source in (f"file:{path}", f"url:{url}"):
        model = mvt.load_checkpoint(source)
        rec = model.spec.checkpoint
        assert (rec.format, rec.family, rec.num_classes) == ("hvt", "hvt", 1000)
        assert "3 heads" in rec.variant and "every 12 blocks" in rec.variant and rec.parameters == 5_735_656
        assert model.spec.labels == get_labels("imagenet1k") and "IMNET" in rec.labels_source
        assert model.spec.per_frame and model.spec.mean == (0.485, 0.456, 0.406)
        state = mvt.weights.load_file(path, state_key="model", pickle_globals=("argparse.Namespace",))
        assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_our_own_safetensors_keep_their_arch_and_classes():
    path = mvt.weights.resolve(mvt.get_spec("mvit_t.synth").weights)
    model = mvt.load_checkpoint(f"file:{path}")
    rec = model.spec.checkpoint
    assert (rec.format, rec.arch) == ("mvt", "mvit_t") and model.spec.arch == "mvit_t"
    assert model.spec.labels == mvt.get_spec("mvit_t.synth").labels
    assert "metadata" in rec.labels_source and rec.preprocessing.crop_size == 112
    shipped = mvt.create_model("mvit_t.synth")
    assert _same_logits(model, shipped, _clip(model.spec, 1)) == 0.0


def test_a_file_name_is_stable_and_a_changed_file_gets_a_new_one(pysf, tmp_path):
    path, _ = pysf["v1"]
    copy = tmp_path / "copy.pyth"
    copy.write_bytes(path.read_bytes())
    first = mvt.get_spec(f"file:{copy}")
    assert mvt.get_spec(f"file:{copy}").name == first.name
    assert first.name in mvt.list_models() and first.checkpoint.source == f"file:{copy}"
    raw = torch.load(copy, weights_only=True)
    raw["epoch"] = 7  # different bytes, same model
    torch.save(raw, copy)
    assert mvt.get_spec(f"file:{copy}").name != first.name


def test_labels_file_formats(tmp_path, pysf):
    from mvt.checkpoints.detect import user_labels

    (tmp_path / "a.json").write_text(json.dumps({"1": "b", "0": "a"}))
    (tmp_path / "b.json").write_text(json.dumps(["a", "b"]))
    (tmp_path / "c.txt").write_text("a\n\nb\n")
    for name in ("a.json", "b.json", "c.txt"):
        assert user_labels(tmp_path / name)[0] == ("a", "b")
    assert user_labels(["x", "y"])[0] == ("x", "y")
    path, _ = pysf["v1"]
    with pytest.raises(mvt.WeightsError, match="names 2 classes, but the checkpoint's head has 174"):
        mvt.inspect_checkpoint(Path(path), labels=tmp_path / "c.txt")  # a user's list must fit the head


@pytest.mark.slow
def test_references_checkpoint_of_torchvisions_mvit_v2_s_with_12_classes(tmp_path):
    """Real size: torchvision's ``mvit_v2_s(num_classes=12)`` fine-tuned with the references (as they save it)
    is recognised as MViTv2-S from its shapes alone, with the references' input settings from its args."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.video.mvit_v2_s(num_classes=12).eval()
    path = tmp_path / "model_44.pth"
    torch.save(references_checkpoint(reference.state_dict(), kinetics_version="400"), path)
    rec = mvt.inspect_checkpoint(path)
    registered = mvt.models.mvit.MVIT_CONFIGS["mvit_v2_s"]
    assert rec.config.stages == registered.stages and rec.config.kv_stride == registered.kv_stride
    assert rec.num_classes == 12 and rec.parameters == sum(p.numel() for p in reference.parameters())
    assert rec.labels[0] == "class 0"  # args say Kinetics-400, but a 12-way head is not Kinetics-400
    pre = rec.preprocessing
    assert (pre.num_frames, pre.resize_size, pre.crop_size, pre.mean) == (
        16,
        256,
        224,
        (0.43216, 0.394666, 0.37645),
    )
    model = mvt.load_checkpoint(path)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference.state_dict().items())


def test_a_torchvision_state_dict_and_torchvisions_own_published_file(tmp_path, monkeypatch):
    text = pyslowfast_cfg(tiny_mvit_section(True), TINY_DATA, 400)
    cfg, _ = config_from_cfg(parse_cfg(text))
    tv = torchvision_mvit(cfg, 400, seed=6)
    path = tmp_path / "state.pth"
    torch.save(tv.state_dict(), path)
    model = mvt.load_checkpoint(path)
    rec = model.spec.checkpoint
    assert rec.format == "torchvision" and rec.config.kv_stride == (1, 4, 4)  # read from the tables
    assert rec.config.stages == cfg.stages and rec.config.num_frames == 4 and rec.config.image_size == 64
    assert model.spec.labels[0] == "class 0"  # 400 outputs alone do not make a file Kinetics-400
    assert _same_logits(model, tv, _clip(model.spec)) <= TOL
    v1 = torchvision_mvit(
        config_from_cfg(parse_cfg(pyslowfast_cfg(tiny_mvit_section(False), TINY_DATA, 9)))[0], 9
    )
    torch.save(v1.state_dict(), tmp_path / "v1.pth")  # v1's shapes cannot show its key/value stride: said so
    assert any("(1, 8, 8)" in n and "assumed" in n for n in mvt.inspect_checkpoint(tmp_path / "v1.pth").notes)
    from mvt.checkpoints import detect

    prefix = mvt.checkpoints.sources.file_sha256(path)[:8]  # as if it were a file torchvision published
    monkeypatch.setattr(detect, "_known_torchvision_hashes", lambda: {prefix: "kinetics400"})
    rec = mvt.inspect_checkpoint(path)
    assert (
        rec.labels == get_labels("kinetics400")
        and f"torchvision's published weights (SHA-256 {prefix}" in rec.labels_source
    )
