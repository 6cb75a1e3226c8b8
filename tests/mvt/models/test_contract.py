"""The model contract: every registered architecture satisfies :class:`VideoModel`, and the shared helpers."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import mvt
from mvt import zoo
from mvt.models import contract
from mvt.models.contract import EXTRAS_KEYS, VideoModel, check_clip, grow_footprint, through_tap
from mvt.outputs import Footprint, ModelOutput, PoolOp

SMALL = [a for a in mvt.list_archs() if zoo.get_spec(a).label_set == "synthmotion"]


def _num_classes(spec: mvt.ModelSpec) -> int:
    return spec.num_classes or len(spec.labels)


@pytest.mark.parametrize("arch", mvt.list_archs())
def test_every_registered_architecture_satisfies_the_contract(arch):
    """Built on the meta device (no memory, no compute), so the Kinetics-size models cost nothing: the
    structure, and the shapes of a forward pass on the spec's input."""
    spec = zoo.get_spec(arch)
    with torch.device("meta"):
        model = zoo.get_arch(arch).builder(num_classes=_num_classes(spec)).eval()
        model.spec = spec
        assert isinstance(model, VideoModel)
        keep = inspect.signature(model.forward_with_attention).parameters["keep_weights"]
        assert keep.kind is inspect.Parameter.KEYWORD_ONLY and keep.default is False
        assert len(model.stage_taps) >= 1 and all(isinstance(t, nn.Identity) for t in model.stage_taps)
        x = torch.zeros(1, 3, spec.num_frames, spec.crop_size, spec.crop_size)
        out = model.forward_with_attention(x)
    assert isinstance(out, ModelOutput) and tuple(out.logits.shape) == (1, _num_classes(spec))
    assert tuple(out.input_shape) == tuple(x.shape[2:])
    assert sorted({s.stage for s in out.stages}) == list(range(len(model.stage_taps)))
    assert set(out.extras) <= set(EXTRAS_KEYS), f"undocumented extras: {set(out.extras) - set(EXTRAS_KEYS)}"
    assert out.attentions and all(m.weights is None for m in out.attentions)
    assert zoo.get_spec(arch).family == zoo.get_arch(arch).family


def test_a_model_without_the_contract_is_told_apart():
    assert not isinstance(nn.Linear(2, 2), VideoModel)
    model = zoo.get_arch("hvt_t").builder(num_classes=8)
    assert not isinstance(model, VideoModel)  # no spec until create_model sets it
    assert isinstance(mvt.create_model("hvt_t.untrained"), VideoModel)


@pytest.mark.parametrize("arch", SMALL)
def test_small_models_run_both_paths_and_every_tap_sees_a_5d_stage(arch):
    model = mvt.create_model(f"{arch}.untrained")
    spec = model.spec
    x = torch.randn(
        1, 3, spec.num_frames, spec.crop_size, spec.crop_size, generator=torch.Generator().manual_seed(0)
    )
    seen: list[tuple[int, int]] = []
    hooks = [
        t.register_forward_hook(lambda _m, _i, o, s=s: seen.append((s, o.ndim)))
        for s, t in enumerate(model.stage_taps)
    ]
    with torch.no_grad():
        fast = model(x)
        out = model.forward_with_attention(x, keep_weights=False)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(out.logits, fast, atol=1e-4, rtol=1e-4)
    taps = len(model.stage_taps)
    assert sorted(seen) == sorted([(s, 5) for s in range(taps)] * 2)  # each tap once per path, always 5-D
    assert set(out.extras) <= set(EXTRAS_KEYS)


def test_every_family_states_its_input_size_once():
    """The spec's frames and crop are the config's (MViT/MMViT/ViViT/HVT tubelet), so they cannot drift."""
    from mvt.models import hvt, mmvit, mvit, vivit

    for arch, cfg in mvit.MVIT_CONFIGS.items():
        assert (zoo.get_spec(arch).num_frames, zoo.get_spec(arch).crop_size) == (
            cfg.num_frames,
            cfg.image_size,
        )
    for arch, cfg in mmvit.MMVIT_CONFIGS.items():
        spec = zoo.get_spec(arch)
        assert (spec.num_frames, spec.crop_size) == (cfg.tower.num_frames, cfg.tower.image_size)
    for arch, cfg in vivit.VIVIT_CONFIGS.items():
        assert (zoo.get_spec(arch).num_frames, zoo.get_spec(arch).crop_size) == (
            cfg.num_frames,
            cfg.image_size,
        )
    for arch, cfg in hvt.HVT_CONFIGS.items():
        spec = zoo.get_spec(arch)
        assert spec.crop_size == cfg.img_size and (cfg.per_frame or spec.num_frames == cfg.num_frames)


# -- helpers ---------------------------------------------------------------------------------------------------


def test_check_clip_says_what_to_feed():
    assert check_clip(torch.zeros(2, 3, 8, 8), model="M", image_ok=True).shape == (2, 3, 1, 8, 8)
    with pytest.raises(ValueError, match=r"M expects a clip \(B, 3, T, H, W\).*got shape \(2, 3, 8, 8\)"):
        check_clip(torch.zeros(2, 3, 8, 8), model="M")
    with pytest.raises(ValueError, match="permute"):
        check_clip(torch.zeros(1, 4, 3, 8, 8), model="M", hint=" (permute it)")
    with pytest.raises(ValueError, match=r"position embeddings are for 16×16 frames, got 8×8"):
        check_clip(torch.zeros(1, 3, 4, 8, 8), model="M", size=16)
    with pytest.raises(ValueError, match="clips of 2 frames, got 4"):
        check_clip(torch.zeros(1, 3, 4, 8, 8), model="M", frames=2, size=8)


def test_through_tap_is_the_identity_and_shows_the_grid():
    """Prefix tokens pass by; groups (one sequence per frame, as ViViT model 2 and per-frame HVT run) are
    put together into one clip grid in raster order."""
    b, t, h, w, c = 2, 3, 2, 4, 5
    grid = torch.arange(b * t * h * w * c, dtype=torch.float32).view(b, t, h, w, c)
    seen = []
    tap = nn.Identity()
    tap.register_forward_hook(lambda _m, _i, o: seen.append(o))
    # one group per clip, one CLS token
    tokens = torch.cat((torch.full((b, 1, c), -1.0), grid.reshape(b, t * h * w, c)), dim=1)
    assert torch.equal(through_tap(tap, tokens, (t, h, w), num_prefix=1), tokens)
    assert torch.equal(seen[-1], grid.permute(0, 4, 1, 2, 3))  # (B, C, T, H, W)
    # one group per frame (B·T sequences), each with its own CLS token
    per_frame = torch.cat((torch.full((b * t, 1, c), -1.0), grid.reshape(b * t, h * w, c)), dim=1)
    assert torch.equal(through_tap(tap, per_frame, (t, h, w), num_prefix=1, batch=b), per_frame)
    assert torch.equal(seen[-1], grid.permute(0, 4, 1, 2, 3))
    # a tap that changes its input changes the grid tokens only
    double = through_tap(lambda g: 2 * g, tokens, (t, h, w), num_prefix=1)
    assert torch.equal(double[:, 0], tokens[:, 0]) and torch.equal(double[:, 1:], 2 * tokens[:, 1:])


def test_grow_footprint_moves_only_through_strided_pools():
    embed = Footprint(stride=(2, 4, 4), kernel=(3, 7, 7), padding=(1, 3, 3))
    stride1 = PoolOp((3, 3, 3), (1, 1, 1), (1, 1, 1))
    stride2 = PoolOp((3, 3, 3), (1, 2, 2), (1, 1, 1))
    assert grow_footprint(embed, [None, stride1]) == embed
    assert grow_footprint(embed, [stride1, stride2, None]) == embed.then(stride2)


def test_config_lookup_and_synthmotion_sizes_fail_clearly():
    with pytest.raises(KeyError, match=r"unknown MViT config 'mvit_x'; known: \['a', 'b'\]"):
        contract.config_named({"a": 1, "b": 2}, "mvit_x", "MViT")
    with pytest.raises(ValueError, match="SynthMotion clips are 16×112²"):
        contract.synthmotion_spec("x", num_frames=8, crop_size=112)
    spec = contract.synthmotion_spec("x")
    assert (spec.num_frames, spec.crop_size, spec.resize_size, spec.frame_stride) == (16, 112, 112, 1)
    assert spec.num_classes == len(spec.labels) == 8


def test_published_checkpoints_keep_their_architectures_input_settings():
    fields = (
        "num_frames",
        "frame_stride",
        "crop_size",
        "resize_size",
        "mean",
        "std",
        "label_set",
        "per_frame",
    )
    releases = {
        e.name for e in zoo.PUBLIC_CHECKPOINTS
    }  # their own release's pipeline (test_public_checkpoints)
    published = [
        n for n in mvt.list_models() if n.split(".")[1] not in ("untrained", "synth") and n not in releases
    ]
    assert {"mvit_v2_s.k400", "vivit_b_16x2.k400", "hvt_s_1.in1k", "mmvit_s.k400init"} <= set(published)
    for name in published:
        spec, base = zoo.get_spec(name), zoo.get_spec(name.split(".")[0])
        assert spec.trained and spec.weights.kind != "none" and spec.description
        assert [getattr(spec, f) for f in fields] == [getattr(base, f) for f in fields], name
