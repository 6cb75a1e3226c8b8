"""The seed papers' public checkpoints by name: each registered with its release's URL, labels and input
settings; each architecture the PySlowFast config it was trained with (parameter counts as published); a file
that is not what its entry says fails loudly and is not cached."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch
import yaml

import mvt
from mvt import zoo
from mvt.checkpoints.public import VARIANTS, variant_config
from mvt.checkpoints.pyslowfast import config_from_cfg
from mvt.labels import SIZES, get_labels
from mvt.models.mvit import MVIT_CONFIGS, MViT
from mvt.prefetch import weights_status
from mvt.weights import KeysMismatch
from tests.checkpoint_formats import (
    TINY_DATA,
    pyslowfast_cfg,
    pyslowfast_checkpoint,
    tiny_mvit_section,
    to_pyslowfast,
    torchvision_mvit,
)

TRAINING_ONLY = ("head_dropout", "drop_path")


def _params(config, classes: int) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in MViT(config, num_classes=classes).parameters())


def test_every_public_checkpoint_is_registered_as_its_release_describes_it():
    assert len(zoo.PUBLIC_CHECKPOINTS) == 7
    for entry in zoo.PUBLIC_CHECKPOINTS:
        spec = mvt.get_spec(entry.name)
        assert spec.weights.url == entry.url and spec.trained and spec.family == "mvit"
        assert spec.num_classes == SIZES[entry.label_set] and len(spec.labels) == spec.num_classes
        assert (spec.num_frames, spec.frame_stride, spec.resize_size, spec.crop_size) == (
            entry.num_frames, entry.frame_stride, entry.resize_size, entry.crop_size,
        )  # fmt: skip
        assert (spec.mean, spec.std) == entry.norm
        assert urlsplit(entry.url).netloc == "dl.fbaipublicfiles.com" and entry.format == "pyslowfast"
        assert all(a.startswith("https://download.openmmlab.com/") for a in entry.also)
    assert mvt.get_spec("mvit_v2_s.ssv2").labels[:2] == get_labels("ssv2")[:2]
    assert mvt.get_spec("mvit_v1_b_32x3.k600").labels == get_labels("kinetics600")
    ssv2 = mvt.list_models("*.ssv2")
    assert ssv2 == ["mvit_v2_b_32x3.ssv2", "mvit_v2_l_40x3.ssv2", "mvit_v2_s.ssv2"]
    assert all(mvt.get_spec(n).frame_stride is None for n in ssv2)  # uniform over the clip, as SSv2 is read


@pytest.mark.parametrize("entry", zoo.PUBLIC_CHECKPOINTS, ids=lambda e: e.name)
def test_parameter_counts_are_the_published_ones(entry):
    built = _params(variant_config(entry.name.split(".")[0]), SIZES[entry.label_set]) / 1e6
    if entry.name == "mvit_v2_l_40x3.k400":  # PySlowFast's README says 217.6 M, MMAction2's 213 M (same file)
        assert round(built, 1) == 213.4
    elif entry.params_m is None:  # PySlowFast publishes none for v1 32×3: 24 blocks per its config
        assert round(built, 1) == {400: 53.1, 600: 53.3}[SIZES[entry.label_set]]
    else:
        assert round(built, 1) == entry.params_m


def test_variants_are_the_pyslowfast_configs():
    ours = variant_config("mvit_v2_s")
    skip = {f: None for f in TRAINING_ONLY}
    assert dataclasses.replace(ours, **skip) == dataclasses.replace(MVIT_CONFIGS["mvit_v2_s"], **skip)
    v1 = {  # configs/Kinetics/MVIT_B_16x4_CONV.yaml's MVIT section
        "SEP_POS_EMBED": True, "DEPTH": 16, "NUM_HEADS": 1, "EMBED_DIM": 96, "PATCH_KERNEL": "(3, 7, 7)",
        "PATCH_STRIDE": "(2, 4, 4)", "PATCH_PADDING": "(1, 3, 3)", "MLP_RATIO": 4.0, "QKV_BIAS": True,
        "DROPPATH_RATE": 0.2, "NORM": "layernorm", "MODE": "conv", "CLS_EMBED_ON": True,
        "DIM_MUL": [[1, 2.0], [3, 2.0], [14, 2.0]], "HEAD_MUL": [[1, 2.0], [3, 2.0], [14, 2.0]],
        "POOL_KVQ_KERNEL": [3, 3, 3], "POOL_KV_STRIDE_ADAPTIVE": [1, 8, 8],
        "POOL_Q_STRIDE": [[1, 1, 2, 2], [3, 1, 2, 2], [14, 1, 2, 2]],
    }  # fmt: skip
    cfg, classes = config_from_cfg({"MVIT": v1, "DATA": {"NUM_FRAMES": 16}, "MODEL": {"NUM_CLASSES": 400}})
    assert dataclasses.replace(cfg, **skip) == dataclasses.replace(MVIT_CONFIGS["mvit_v1_b"], **skip)
    assert _params(cfg, classes) == 36_610_672  # torchvision's mvit_v1_b
    kernels = {bc.kv_pool.kernel for bc in variant_config("mvit_v1_b_32x3").block_configs() if bc.kv_pool}
    assert kernels == {(1, 9, 9), (1, 5, 5), (1, 3, 3)}  # no POOL_KVQ_KERNEL: stride + 1; none at stride 1
    assert set(VARIANTS) == {e.name.split(".")[0] for e in zoo.PUBLIC_CHECKPOINTS}


def test_a_file_that_is_not_what_its_entry_says_fails_and_is_not_cached(tmp_path, weights_mirror):
    text = pyslowfast_cfg(tiny_mvit_section(True), TINY_DATA, 400)
    cfg, _ = config_from_cfg(yaml.safe_load(text))
    path = tmp_path / "tiny.pyth"
    torch.save(pyslowfast_checkpoint(to_pyslowfast(torchvision_mvit(cfg, 400).state_dict()), text), path)
    entry = next(e for e in zoo.PUBLIC_CHECKPOINTS if e.name == "mvit_v2_b_32x3.k400")
    weights_mirror.add(urlsplit(entry.url).path, path)
    with pytest.raises(KeysMismatch, match=r"the file's cfg builds another MViT than this entry's: stages"):
        mvt.create_model(entry.name)
    assert [p for p in Path(os.environ["TORCH_HOME"]).rglob("*") if p.is_file()] == []


@pytest.mark.slow
def test_mvit_v2_s_ssv2_real_size_from_its_release_url(tmp_path, weights_mirror):
    """A real-size PySlowFast ``.pyth`` (SSv2 cfg, 174 classes, optimizer state) at the release's path: the
    registry name downloads it, labels it with SSv2's classes and gives torchvision's logits."""
    entry = next(e for e in zoo.PUBLIC_CHECKPOINTS if e.name == "mvit_v2_s.ssv2")
    config = variant_config("mvit_v2_s")
    sections = dict(VARIANTS["mvit_v2_s"])
    text = pyslowfast_cfg(sections["MVIT"], {"NUM_FRAMES": 16, "SAMPLING_RATE": 4}, 174, dataset="ssv2")
    reference = torchvision_mvit(config, 174, seed=4)
    path = tmp_path / "MViTv2_S_16x4_ssv2.pyth"
    torch.save(pyslowfast_checkpoint(to_pyslowfast(reference.state_dict()), text), path)
    weights_mirror.add(urlsplit(entry.url).path, path)
    assert weights_status(entry.name).describe().startswith("downloads 1")  # ~130 MB, from HEAD
    model = mvt.create_model(entry.name)
    assert model.spec.labels == get_labels("ssv2") and model.spec.frame_stride is None
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 224, 224)
    with torch.inference_mode():
        assert (model(x) - reference(x)).abs().max().item() <= 1e-4
