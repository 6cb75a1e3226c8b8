"""The registry and weight loading, offline: hub-cache files, safetensors, refused pickles, clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import mvt
from mvt.models.mvit import build_mvit
from mvt.weights import WeightsError

K400_FILES = {"mvit_v1_b": "mvit_v1_b-dbeb1030.pth", "mvit_v2_s": "mvit_v2_s-ae3be167.pth"}


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """A private ``$TORCH_HOME``; returns its ``hub/checkpoints`` directory (not created)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert Path(torch.hub.get_dir()) == tmp_path / "torch" / "hub"
    return tmp_path / "torch" / "hub" / "checkpoints"


def _marker_payload(path: str) -> str:
    """Stands in for attacker code: leaves a file behind if a loader ever calls it."""
    Path(path).write_text("ran")
    return path


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_marker_payload, (self.marker,))


def test_list_models_names_the_mvit_entries():
    names = mvt.list_models()
    for name in (
        "mvit_v1_b.k400",
        "mvit_v1_b.untrained",
        "mvit_v2_s.k400",
        "mvit_v2_s.untrained",
        "mvit_t.untrained",
    ):
        assert name in names
    assert mvt.list_models("mvit_v*.k400") == [  # torchvision's ports, then the papers' releases (mvt.zoo)
        "mvit_v1_b.k400",
        "mvit_v1_b_32x3.k400",
        "mvit_v2_b_32x3.k400",
        "mvit_v2_l_40x3.k400",
        "mvit_v2_s.k400",
    ]
    assert {"mvit_v1_b", "mvit_v2_s", "mvit_t"} <= set(mvt.list_archs())


@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s"])
def test_k400_specs(arch):
    spec = mvt.get_spec(f"{arch}.k400")
    assert (spec.num_frames, spec.frame_stride, spec.crop_size, spec.resize_size) == (16, 4, 224, 256)
    assert spec.mean == (0.45,) * 3 and spec.std == (0.225,) * 3
    assert spec.trained and spec.family == "mvit"
    assert spec.weights.kind == "url" and spec.weights.url.endswith("/" + K400_FILES[arch])
    assert "Kinetics-400" in spec.description and "torchvision" in spec.description
    assert len(spec.labels) == 400 and spec.labels[0] == "abseiling"


def test_untrained_builds_without_weights(hub):
    model = mvt.create_model("mvit_t.untrained", download=False)
    assert model.spec.trained is False and model.spec.weights.kind == "none"
    assert "untrained" in model.spec.description
    assert (model.spec.num_frames, model.spec.frame_stride, model.spec.crop_size) == (16, 1, 112)
    assert model.spec.label_set == "synthmotion" and model.spec.num_classes == 8
    assert not model.training
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 16, 112, 112)).shape == (1, 8)
    assert mvt.get_spec("mvit_v2_s").name == "mvit_v2_s.untrained"
    assert not hub.exists()  # nothing was looked up or downloaded


def test_k400_loads_from_the_torch_hub_cache(hub):
    """A torchvision-format file (plain torch.save of the state dict) placed where torch.hub caches it."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.video.mvit_v2_s().eval()
    hub.mkdir(parents=True)
    torch.save(reference.state_dict(), hub / K400_FILES["mvit_v2_s"])
    assert "mvit_v2_s.k400" in mvt.list_models(available_only=True)
    assert "mvit_v1_b.k400" not in mvt.list_models(available_only=True)

    model = mvt.create_model("mvit_v2_s.k400", download=False)
    assert model.spec.trained and not model.training
    direct = build_mvit("mvit_v2_s").eval()
    direct.load_state_dict(reference.state_dict())
    # torchvision's own weights API reads the very same cached file (no hash check for cached files).
    tv_loaded = torchvision.models.video.mvit_v2_s(weights="KINETICS400_V1")
    tv_state = tv_loaded.state_dict()
    assert all(torch.equal(v, tv_state[k]) for k, v in model.state_dict().items())
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), direct(x))


def test_missing_k400_file_names_file_and_directory(hub):
    with pytest.raises(WeightsError) as err:
        mvt.create_model("mvit_v1_b.k400", download=False)
    msg = str(err.value)
    assert K400_FILES["mvit_v1_b"] in msg and str(hub) in msg
    assert "https://download.pytorch.org/models/" in msg


@pytest.mark.parametrize("fmt", ["torch.save", "raw pickle"])
def test_code_executing_pickle_is_refused(hub, tmp_path, fmt):
    marker = tmp_path / "payload-ran"
    hub.mkdir(parents=True)
    path = hub / K400_FILES["mvit_v2_s"]
    payload = {"conv_proj.weight": torch.zeros(1), "evil": _Exploit(marker)}
    if fmt == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(WeightsError, match="Refused"):
        mvt.create_model("mvit_v2_s.k400", download=False)
    with pytest.raises(WeightsError, match="Refused"):
        mvt.create_model("mvit_t.untrained", checkpoint=str(path))
    assert not marker.exists()
    # The payload is live: an unsafe loader would have run it.
    if fmt == "torch.save":
        torch.load(path, weights_only=False)
        assert marker.read_text() == "ran"


def test_safetensors_checkpoint(tmp_path):
    torch.manual_seed(1)
    source = build_mvit("mvit_t", num_classes=8).eval()
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = mvt.create_model("mvit_t.untrained", checkpoint=str(path))
    x = torch.randn(1, 3, 16, 112, 112)
    with torch.inference_mode():
        assert torch.equal(model(x), source(x))


def test_wrong_keys_are_listed(tmp_path):
    state = {k: v.contiguous() for k, v in build_mvit("mvit_t", num_classes=8).state_dict().items()}
    state.pop("blocks.0.attn.rel_pos_h")
    state["blocks.0.attn.norm_q.weight"] = torch.ones(32)  # SlowFast's name, not torchvision's
    path = tmp_path / "wrong.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError) as err:
        mvt.create_model("mvit_t.untrained", checkpoint=str(path))
    msg = str(err.value)
    assert "1 missing keys" in msg and "blocks.0.attn.rel_pos_h" in msg
    assert "1 unexpected keys" in msg and "blocks.0.attn.norm_q.weight" in msg


def test_wrong_shapes_are_reported(tmp_path):
    state = {k: v.contiguous() for k, v in build_mvit("mvit_t", num_classes=8).state_dict().items()}
    state["head.1.weight"] = torch.zeros(400, 128)
    path = tmp_path / "shape.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"shape mismatch.*head\.1\.weight"):
        mvt.create_model("mvit_t.untrained", checkpoint=str(path))


def test_unknown_name_is_a_clear_error():
    with pytest.raises(KeyError, match="Known tags for this architecture"):
        mvt.get_spec("mvit_v2_s.imagenet")
