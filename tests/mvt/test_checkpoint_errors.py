"""Users' checkpoints that do not fit fail loudly and precisely — one WeightsError naming what did not fit and
what was detected — and leave nothing in any cache; loading stays as safe as everywhere else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

import mvt
from mvt.checkpoints import parse_source
from mvt.weights import KeysMismatch, UnsafeCheckpoint, WeightsError
from tests.checkpoint_formats import (
    TINY_DATA,
    pyslowfast_cfg,
    pyslowfast_checkpoint,
    tiny_mvit_section,
    to_pyslowfast,
    torchvision_mvit,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny PySlowFast MViTv2 checkpoint as a dict (cfg text + state), to be spoiled by each test."""
    from mvt.checkpoints.pyslowfast import config_from_cfg, parse_cfg

    text = pyslowfast_cfg(tiny_mvit_section(True), TINY_DATA, 10)
    cfg, _ = config_from_cfg(parse_cfg(text))
    return text, to_pyslowfast(torchvision_mvit(cfg, 10).state_dict())


def _save(tmp_path: Path, obj, name: str = "ckpt.pyth") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_an_unknown_format_names_what_it_holds(tmp_path):
    path = _save(tmp_path, {"encoder": {"w": torch.ones(2)}, "step": 3}, "other.pt")
    with pytest.raises(
        WeightsError, match=r"not a checkpoint mvt recognises: it holds a dict with keys \['encoder'"
    ):
        mvt.inspect_checkpoint(path)
    path = _save(tmp_path, {"fc.weight": torch.ones(2, 2), "fc.bias": torch.ones(2)}, "mlp.pt")
    with pytest.raises(WeightsError, match=r"a state dict of 2 tensors \(e\.g\. \['fc\.bias'"):
        mvt.inspect_checkpoint(path)


def test_an_unknown_architecture_from_a_url_is_one_message_and_nothing_is_cached(tmp_path, weights_mirror):
    path = _save(
        tmp_path,
        {
            "model_state": {"backbone.w": torch.ones(3)},
            "cfg": "MODEL:\n  ARCH: slowfast\n  MODEL_NAME: SlowFast\n",
        },
    )
    url = weights_mirror.add("/runs/slowfast.pyth", path)
    with pytest.raises(WeightsError) as err:
        mvt.load_checkpoint(f"url:{url}")
    assert "the cfg builds MODEL.MODEL_NAME 'SlowFast' (MODEL.ARCH 'slowfast'), not an MViT" in str(err.value)
    assert _files(Path(os.environ["TORCH_HOME"])) == []
    assert f"url:{url}" not in " ".join(mvt.list_models())


def test_a_hub_repo_of_another_model_leaves_no_cache_folder(tmp_path, weights_mirror):
    repo = "some-org/bert-tiny"
    weights_mirror.add_hf(repo, "config.json", b'{"model_type": "bert", "architectures": ["BertModel"]}')
    weights_mirror.add_hf(repo, "pytorch_model.bin", _save(tmp_path, {"bert.embeddings.w": torch.ones(2)}))
    with pytest.raises(WeightsError, match="not a checkpoint mvt recognises"):
        mvt.load_checkpoint(f"hub:{repo}")
    assert not (Path(os.environ["HF_HOME"]) / "hub" / "models--some-org--bert-tiny").exists()
    with pytest.raises(WeightsError, match="has no repository|RepoNotFound|no repository"):
        mvt.inspect_checkpoint("hub:some-org/missing")


def test_missing_and_unexpected_keys_are_named_with_what_was_detected(tmp_path, tiny):
    text, state = tiny
    spoiled = dict(state)
    spoiled.pop("blocks.1.attn.rel_pos_t")
    with pytest.raises(
        KeysMismatch, match=r"recognised as MViTv2, 3 blocks.*1 missing keys.*blocks\.1\.attn\.rel_pos_t"
    ):
        mvt.inspect_checkpoint(_save(tmp_path, pyslowfast_checkpoint(spoiled, text)))
    spoiled = dict(state, **{"blocks.0.attn.extra": torch.ones(2)})
    with pytest.raises(KeysMismatch, match=r"blocks\.0\.attn\.extra"):
        mvt.inspect_checkpoint(_save(tmp_path, pyslowfast_checkpoint(spoiled, text)))


def test_a_cfg_that_disagrees_with_the_weights_is_a_shape_mismatch(tmp_path, tiny):
    text, state = tiny
    cfg = yaml.safe_load(text)
    cfg["DATA"]["NUM_FRAMES"] = 8  # relative-position tables are for 4 frames
    with pytest.raises(
        KeysMismatch,
        match=r"shape mismatches \(e\.g\. blocks\.\d\.attn\.rel_pos_t: file \(3, \d+\) vs model \(7",
    ):
        mvt.inspect_checkpoint(_save(tmp_path, pyslowfast_checkpoint(state, yaml.safe_dump(cfg))))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"MODE": "max"}, "MVIT.MODE 'max'"),
        ({"POOL_FIRST": True}, "MVIT.POOL_FIRST"),
        ({"USE_MEAN_POOLING": True}, "MVIT.USE_MEAN_POOLING"),
        ({"REL_POS_TEMPORAL": False}, "relative positions on one axis only"),
        ({"DIM_MUL": [[2, 2.0]]}, "widens blocks"),
    ],
)
def test_pyslowfast_options_mvt_does_not_implement_are_named(tmp_path, tiny, change, named):
    text, state = tiny
    cfg = yaml.safe_load(text)
    cfg["MVIT"].update(change)
    with pytest.raises(WeightsError, match=named.replace("(", r"\(").replace(".", r"\.")):
        mvt.inspect_checkpoint(_save(tmp_path, pyslowfast_checkpoint(state, yaml.safe_dump(cfg))))


def test_a_pickle_that_runs_code_is_refused_and_does_not_run(tmp_path, tiny):
    marker = tmp_path / "ran"

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    text, state = tiny
    ckpt = pyslowfast_checkpoint(state, text)
    ckpt["hook"] = RunsCode()
    with pytest.raises(UnsafeCheckpoint, match="Refused"):
        mvt.inspect_checkpoint(_save(tmp_path, ckpt))
    assert not marker.exists()


def test_files_over_the_size_cap_are_refused_before_reading(tmp_path, tiny, monkeypatch, weights_mirror):
    text, state = tiny
    path = _save(tmp_path, pyslowfast_checkpoint(state, text))
    monkeypatch.setenv("MVT_CHECKPOINT_MAX_MB", "0.01")
    with pytest.raises(WeightsError, match="over the 0 MB limit on checkpoints"):
        mvt.inspect_checkpoint(path)
    url = weights_mirror.add("/big/ckpt.pyth", path)
    with pytest.raises(WeightsError, match="MVT_CHECKPOINT_MAX_MB"):
        mvt.inspect_checkpoint(f"url:{url}")
    assert weights_mirror.count("/big/ckpt.pyth", "GET") == 0  # refused from the announced size


def test_asking_for_another_family_or_an_unknown_arch(tmp_path, tiny):
    text, state = tiny
    path = _save(tmp_path, pyslowfast_checkpoint(state, text))
    with pytest.raises(WeightsError, match="asked for a vivit model, but .* is a mvit checkpoint"):
        mvt.inspect_checkpoint(path, arch="vivit")
    with pytest.raises(WeightsError, match="neither a family"):
        mvt.inspect_checkpoint(path, arch="mvit_v9")
    with pytest.raises(KeysMismatch, match="shape mismatches"):  # forced into MViT v2-S: every shape is named
        mvt.inspect_checkpoint(path, arch="mvit_v2_s")


def test_spec_strings_parse():
    assert parse_source("hub:org/name@abc").spec == "hub:org/name@abc"
    assert parse_source("org/name").kind == "hub"
    assert parse_source("https://h/x.pth").kind == "url"
    src = parse_source("file:/tmp/x.pyth#labels=/tmp/l.txt&arch=mvit")
    assert (src.location, src.option("labels"), src.option("arch")) == ("/tmp/x.pyth", "/tmp/l.txt", "mvit")
    for bad in ("file:/x#colour=red", "url:ftp://h/x", "hub:not a repo", "no such thing at all"):
        with pytest.raises(WeightsError):
            parse_source(bad)
    with pytest.raises(WeightsError, match="does not exist"):
        mvt.get_spec("file:/definitely/not/here.pyth")
    with pytest.raises(WeightsError, match="does not exist"):  # a typo'd path is not taken for a repo id
        parse_source("runs/ckpt.pyth")
