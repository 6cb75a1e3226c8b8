"""Users' checkpoints in the analysis service and the command line: ``inspect-checkpoint``, spec strings in
``--models`` beside registry names (predict, explain, analyse-dataset), one service call to add a model, and
the Motion (SSv2) model set."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from lens import defaults
from lens.cli import main
from lens.core.request import LensError
from lens.service.service import Service
from mvt.checkpoints.pyslowfast import config_from_cfg, parse_cfg
from tests.checkpoint_formats import (
    TINY_DATA,
    pyslowfast_cfg,
    pyslowfast_checkpoint,
    tiny_mvit_section,
    to_pyslowfast,
    torchvision_mvit,
    vivit_repo,
)
from tests.test_app import make_moving_square


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_moving_square(tmp_path_factory.mktemp("specs") / "clip.mp4", seed=3)


@pytest.fixture(scope="module")
def pyth(tmp_path_factory) -> Path:
    """A tiny PySlowFast MViTv2 fine-tune with an SSv2 head (its cfg names the data set)."""
    text = pyslowfast_cfg(tiny_mvit_section(True), TINY_DATA, 174, dataset="ssv2")
    cfg, _ = config_from_cfg(parse_cfg(text))
    state = to_pyslowfast(torchvision_mvit(cfg, 174, seed=7).state_dict())
    path = tmp_path_factory.mktemp("pyth") / "my_mvit_ssv2.pyth"
    torch.save(pyslowfast_checkpoint(state, text), path)
    return path


def test_inspect_checkpoint_prints_what_it_recognised(pyth, capsys):
    assert main(["inspect-checkpoint", f"file:{pyth}"]) == 0
    out = capsys.readouterr().out
    for line in (
        "format:        PySlowFast training checkpoint",
        "family:        mvit",
        "variant:       MViTv2, 3 blocks",
        "classes:       174 (Approaching something with your camera",
        "labels:        Something-Something v2 (the cfg's dataset",
        "preprocessing: 4 frames uniformly over the clip, short side 64 → centre crop 64",
        "parameters:    ",
    ):
        assert line in out


def test_an_unknown_checkpoint_is_one_error_line(tmp_path, capsys, weights_mirror):
    path = tmp_path / "notes.pt"
    torch.save({"weights": {"a": torch.ones(1)}}, path)
    url = weights_mirror.add("/x/notes.pt", path)
    for source in (str(path), f"url:{url}"):
        assert main(["inspect-checkpoint", source]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert (
            len(err) == 1
            and err[0].startswith("error: ")
            and "notes.pt is not a checkpoint mvt recognises" in err[0]
        )
    assert not [p for p in (tmp_path / "torch").rglob("*") if p.is_file()]


def test_explain_runs_a_file_a_hub_repo_and_a_registry_model_side_by_side(
    clip, pyth, tmp_path, capsys, weights_mirror
):
    folder = tmp_path / "repo"
    folder.mkdir()
    vivit_repo(folder, ["a", "b", "c", "d", "e", "f", "g"], frames=4, size=32)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        weights_mirror.add_hf("lab/vivit-tiny", name, folder / name)
    models = [f"file:{pyth}", "hub:lab/vivit-tiny", "mvit_t.untrained"]
    out = tmp_path / "out"
    assert main(["explain", str(clip), "--models", *models, "--methods", "attention", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all(f"\n{m} (" in f"\n{printed}" for m in models)  # "<name> (<its windows>): top-3"
    report = json.loads((out / "report.json").read_text())
    assert set(models) <= set(json.dumps(report).split('"'))
    assert main(["predict", str(clip), "--models", f"file:{pyth}"]) == 0
    top = capsys.readouterr().out.splitlines()[1].split(maxsplit=1)[1]
    assert top in defaults.mvt.get_spec("mvit_v2_s.ssv2").labels  # SSv2 class names, from the file's cfg


def test_analyse_dataset_takes_spec_strings(pyth, tmp_path):
    out = tmp_path / "run"
    spec = f"file:{pyth}"
    args = ["analyse-dataset", "synth:2:0", "--models", spec, "--methods", "--out", str(out)]
    assert main(args) == 0
    table = pq.read_table(out / "results.parquet").to_pydict()
    assert table["model"] == [spec, spec] and all(e is None for e in table["error"])
    assert all(" " in name for name in table["pred_name"])  # SSv2's templates, not "class 17"


def test_the_service_adds_a_model_in_one_call(pyth, clip, tmp_path):
    service = Service(out_dir=tmp_path / "files")
    spec = service.add_model(str(pyth))
    assert spec.checkpoint.format == "pyslowfast" and spec.name.endswith(".pysf")
    analysis = service.analyse(str(clip), [spec.name, "mvit_t.untrained"], methods=())
    assert [r.name for r in analysis.results] == [spec.name, "mvit_t.untrained"]
    assert analysis.results[0].top5[0][0] in spec.labels
    bad = tmp_path / "bad.pth"
    torch.save({"x": 1}, bad)
    with pytest.raises(LensError, match="not a checkpoint mvt recognises"):
        service.add_model(str(bad))
    with pytest.raises(LensError, match="does not exist"):
        service.analyse(str(clip), ["file:/no/such/ckpt.pyth"], methods=())


def test_motion_set_pairs_kinetics_and_ssv2_models_of_one_family():
    assert defaults.MOTION in defaults.SET_NAMES
    models = defaults.set_models(defaults.MOTION)
    assert models == ["mvit_v2_s.k400", "mvit_v2_s.ssv2"]
    specs = [defaults.mvt.get_spec(n) for n in models]
    assert {s.arch for s in specs} == {"mvit_v2_s"} and [s.label_set for s in specs] == [
        "kinetics400",
        "ssv2",
    ]
    assert defaults.set_of(list(reversed(models))) == defaults.MOTION


def test_ray_workers_resolve_a_checkpoint_spec_themselves(tmp_path, monkeypatch):
    """A user's file named by its spec string: each actor recognises and registers it in its own process, and
    the rows name the model by the spec string and its classes by the file's own labels (SSv2, from its cfg)."""
    ray = pytest.importorskip("ray", reason="Ray comes with requirements-scale.txt (CI installs it)")
    from lens.dataset import DatasetConfig, RowConfig, analyse_dataset
    from lens.dataset.engines import connect

    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # local Ray, whatever the environment says
    started = connect(num_cpus=2)
    text = pyslowfast_cfg(tiny_mvit_section(True), TINY_DATA, 174, dataset="ssv2")
    cfg, _ = config_from_cfg(parse_cfg(text))
    path = tmp_path / "mine.pyth"
    torch.save(pyslowfast_checkpoint(to_pyslowfast(torchvision_mvit(cfg, 174).state_dict()), text), path)
    spec = f"file:{path}"
    kw = {"threads": 1, "progress": False, "report": False}
    rows = RowConfig(methods=())
    local = analyse_dataset("synth:4:1", [spec], DatasetConfig(rows, out=tmp_path / "local", **kw))
    try:
        ray_config = DatasetConfig(rows, out=tmp_path / "ray", engine="ray", actors=1, **kw)
        on_ray = analyse_dataset("synth:4:1", [spec], ray_config)
    finally:
        if started:
            ray.shutdown()
    a = pq.read_table(tmp_path / "local" / "results.parquet").to_pylist()
    b = pq.read_table(tmp_path / "ray" / "results.parquet").to_pylist()
    assert not local.missing and not on_ray.missing and len(b) == 4
    assert {r["model"] for r in b} == {spec} and all(r["error"] is None for r in b)
    assert [r["pred_name"] for r in a] == [r["pred_name"] for r in b]
    assert {r["pred_name"] for r in b} <= set(defaults.mvt.get_spec("mvit_v2_s.ssv2").labels)
