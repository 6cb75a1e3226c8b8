"""HVT: parameter counts, token lengths, strict loading of the official checkpoint format, attention records,
spans over the original patches, and logit equivalence with a literal transcription of the official forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mvt
from mvt.models import hvt
from mvt.models.hvt import HVT, HVTConfig, block_plan, build_hvt, token_spans
from mvt.weights import WeightsError

# Tiny configs keep the unit tests fast; they exercise the same code paths as the released variants.
TINY_IMAGE = HVTConfig(embed_dim=32, num_heads=2, depth=8, pool_block_width=2)  # 224²: 196→97→48→23→11
TINY_TUBE = HVTConfig(
    embed_dim=32, num_heads=2, depth=4, pool_block_width=2, img_size=32, patch_size=8, tubelet=2, num_frames=4
)  # 2×4×4 = 32 tokens → 15 → 7


def _model(cfg: HVTConfig, num_classes: int = 10, seed: int = 0) -> HVT:
    torch.manual_seed(seed)
    m = HVT(cfg, num_classes=num_classes).eval()
    with torch.no_grad():  # non-trivial LayerNorm/bias values so a wrong wiring shows up in the logits
        for name, p in m.named_parameters():
            if name.endswith(("bias", "norm1.weight", "norm2.weight", "norm.weight")):
                p.add_(0.1 * torch.randn_like(p))
    return m


def reference_forward(sd: dict, cfg: HVTConfig, x: torch.Tensor) -> torch.Tensor:
    """Literal transcription of zhuang-group/HVT ``HVT.forward`` (models.md §3), on a raw state dict.

    ``x`` is an image batch (N, 3, H, W) for 2-D models or a clip (N, 3, T, H, W) for tubelet models.
    """
    c, heads, eps = cfg.embed_dim, cfg.num_heads, cfg.norm_eps
    conv = F.conv2d if x.ndim == 4 else F.conv3d
    stride = cfg.patch_size if x.ndim == 4 else (cfg.tubelet, cfg.patch_size, cfg.patch_size)
    x = conv(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=stride)
    x = x.flatten(2).transpose(1, 2) + sd["pos_embed"]
    for i in range(cfg.depth):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (c,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps)
        b, n, _ = h.shape
        qkv = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        qkv = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5).softmax(dim=-1)
        a = (attn @ v).transpose(1, 2).reshape(b, n, c)
        x = x + F.linear(a, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.layer_norm(x, (c,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
        h = F.linear(
            F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])), *_wb(sd, p + "mlp.fc2")
        )
        x = x + h
        if i % cfg.pool_block_width == 0:
            x = F.max_pool1d(x.transpose(2, 1), kernel_size=3, stride=2).transpose(1, 2)
            x = x + sd[p + "pos_embed"]
    x = F.layer_norm(x, (c,), sd["norm.weight"], sd["norm.bias"], eps).mean(dim=1)
    return F.linear(x, sd["head.weight"], sd["head.bias"])


def _wb(sd: dict, name: str):
    return sd[name + ".weight"], sd[name + ".bias"]


def _reference_clip(sd: dict, cfg: HVTConfig, clip: torch.Tensor) -> torch.Tensor:
    """Per-frame models: run every frame as an image and average the logits over time."""
    if cfg.tubelet is not None:
        return reference_forward(sd, cfg, clip)
    return torch.stack([reference_forward(sd, cfg, clip[:, :, t]) for t in range(clip.shape[2])], 1).mean(1)


# -- sizes ---------------------------------------------------------------------------------------------------

PAPER_PARAMS = {  # exact counts of the official models.py (models.md §3); paper table 5.74/22.09/22.11/22.11/22.12 M
    "hvt_ti_1": 5_735_656,
    "hvt_s_1": 22_087_144,
    "hvt_s_2": 22_105_576,
    "hvt_s_3": 22_114_408,
    "hvt_s_4": 22_118_632,
}
STAGE_TOKENS = {
    "hvt_ti_1": [196, 97],
    "hvt_s_1": [196, 97],
    "hvt_s_2": [196, 97, 48],
    "hvt_s_3": [196, 97, 48, 23],
    "hvt_s_4": [196, 97, 48, 23, 11],
}


@pytest.mark.parametrize("variant", sorted(PAPER_PARAMS))
def test_parameter_counts_and_token_lengths_match_the_paper(variant):
    with torch.device("meta"):
        model = build_hvt(variant)
    assert sum(p.numel() for p in model.parameters()) == PAPER_PARAMS[variant]
    assert model.stage_tokens() == STAGE_TOKENS[variant]
    pooling = [p.index for p in model.plan if p.pools]
    assert pooling == list(range(0, 12, hvt.HVT_CONFIGS[variant].pool_block_width))[: len(pooling)]
    assert pooling[0] == 0  # block 0 always pools (0 % width == 0)


def test_official_key_names():
    with torch.device("meta"):
        keys = set(build_hvt("hvt_s_2").state_dict())
    expected = {"pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"}
    expected |= {"head.weight", "head.bias", "blocks.0.pos_embed", "blocks.6.pos_embed"}
    for i in range(12):
        for n in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            expected |= {f"blocks.{i}.{n}.weight", f"blocks.{i}.{n}.bias"}
    assert keys == expected


def test_real_forward_token_lengths_196_97_48_23_11():
    model = _model(TINY_IMAGE)
    out = model.forward_with_attention(torch.randn(1, 3, 1, 224, 224))
    assert [a.q_grid for a in out.attentions] == [(1, 1, n) for n in (196, 97, 97, 48, 48, 23, 23, 11)]
    assert [s.tokens for s in out.stages] == [196, 97, 48, 23, 11]
    assert [s.blocks for s in out.stages] == [(0,), (1, 2), (3, 4), (5, 6), (7,)]
    assert [a.post_pool is not None for a in out.attentions] == [i % 2 == 0 and i < 7 for i in range(8)]


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="last block"):
        HVTConfig(embed_dim=32, num_heads=2, depth=4, pool_block_width=3)
    with pytest.raises(ValueError, match="divisible"):
        HVTConfig(embed_dim=30, num_heads=4)


# -- equivalence and the two forward paths -------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [TINY_IMAGE, TINY_TUBE], ids=["per_frame", "tubelet"])
def test_logits_match_reference_transcription(cfg):
    model = _model(cfg)
    t = 3 if cfg.per_frame else cfg.num_frames
    x = torch.randn(2, 3, t, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        ref = _reference_clip(model.state_dict(), cfg, x)
        fast = model(x)
        out = model.forward_with_attention(x)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.logits, fast, rtol=1e-4, atol=1e-5)


def test_per_frame_is_the_mean_of_image_logits_and_ignores_frame_order():
    model = _model(TINY_IMAGE)
    x = torch.randn(1, 3, 3, 224, 224)
    with torch.no_grad():
        per_image = torch.stack([model(x[:, :, t]) for t in range(3)]).mean(0)  # 4-D image batches
        torch.testing.assert_close(model(x), per_image, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(x.flip(2)), model(x), rtol=1e-4, atol=1e-5)


def test_wrong_input_size_is_a_clear_error():
    model = _model(TINY_TUBE)
    with pytest.raises(ValueError, match="position embeddings are for 32×32"):
        model(torch.randn(1, 3, 4, 48, 48))
    with pytest.raises(ValueError, match="clips of 4 frames"):
        model(torch.randn(1, 3, 6, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        _model(TINY_IMAGE)(torch.randn(3, 224, 224))


# -- attention records ---------------------------------------------------------------------------------------


def test_attention_maps_per_frame_groups_and_rows_sum_to_one():
    cfg = TINY_IMAGE
    model = _model(cfg)
    b, t = 2, 3
    out = model.forward_with_attention(torch.randn(b, 3, t, 224, 224))
    assert len(out.attentions) == cfg.depth
    assert out.pooling == "mean" and out.input_shape == (t, 224, 224)
    assert out.embed.stride == (1, 16, 16) and out.embed.kernel == (1, 16, 16)
    for a, plan in zip(out.attentions, block_plan(cfg)):
        n = plan.tokens_in
        assert a.kind == "joint" and a.num_prefix == 0 and a.cls_row is None and a.heads == 2
        assert a.group_grid == (t, 1, 1) and a.q_grid == a.k_grid == a.in_grid == (1, 1, n)
        assert a.probs().shape == (b, t, n, n)
        torch.testing.assert_close(a.probs().sum(-1), torch.ones(b, t, n), rtol=0, atol=1e-5)
        if plan.pools:
            assert a.post_pool.kind == "max"
            assert a.post_pool.out_grid(a.q_grid) == (1, 1, plan.tokens_out)


def test_frame_groups_are_the_right_frames():
    model = _model(TINY_IMAGE)
    x = torch.randn(2, 3, 2, 224, 224)
    out = model.forward_with_attention(x)
    alone = model.forward_with_attention(x[1:, :, 1:])  # clip 1, frame 1
    torch.testing.assert_close(out.attentions[2].probs()[1, 1], alone.attentions[2].probs()[0, 0])


def test_tubelet_model_has_one_space_time_group():
    cfg = TINY_TUBE
    out = _model(cfg).forward_with_attention(torch.randn(1, 3, 4, 32, 32))
    assert out.extras["patch_grid"] == (2, 4, 4)
    assert out.embed.stride == (2, 8, 8)
    assert [a.probs().shape for a in out.attentions] == [(1, 1, n, n) for n in (32, 15, 15, 7)]
    assert [s.tokens for s in out.stages] == [32, 15, 7]


def test_gradients_capture_gives_per_head_probs_on_the_graph():
    model = _model(TINY_IMAGE)
    out = model.forward_with_attention(torch.randn(1, 3, 2, 224, 224), capture=mvt.Capture.GRADIENTS)
    w = out.traced[1]
    assert w.shape == (2, 2, 97, 97) and w.requires_grad
    torch.testing.assert_close(w.detach().mean(1).reshape(1, 2, 97, 97), out.attentions[1].probs())
    w.retain_grad()
    out.logits[0, 0].backward()
    assert w.grad is not None and w.grad.abs().sum() > 0  # the score depends on these probabilities


def test_stage_taps_see_every_stage_in_both_paths():
    model = _model(TINY_IMAGE)
    seen: list[tuple[str, int, tuple]] = []
    for s, tap in enumerate(model.stage_taps):
        tap.register_forward_hook(lambda mod, i, o, s=s: seen.append((s, tuple(o.shape))))
    x = torch.randn(2, 3, 3, 224, 224)
    with torch.no_grad():
        model(x)
        fast, seen[:] = list(seen), []
        model.forward_with_attention(x)
    expected = [(s, (2, 32, 3, 1, n)) for s, n in enumerate((196, 97, 48, 23, 11))]  # (B, C, T, 1, N)
    assert fast == seen == expected


def test_stage_tap_layout_is_frames_then_sequence():
    """A tap that zeroes frame 1 of clip 0 changes only clip 0's logits (layout (B, C, T, 1, N) is right)."""
    model = _model(TINY_IMAGE)
    x = torch.randn(2, 3, 2, 224, 224)

    def kill(mod, inp, out):
        out = out.clone()
        out[0, :, 1] = 0
        return out

    with torch.no_grad():
        before = model(x)
        handle = model.stage_taps[1].register_forward_hook(kill)
        after = model(x)
        handle.remove()
    torch.testing.assert_close(after[1], before[1])
    assert not torch.allclose(after[0], before[0])


# -- spans ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [TINY_IMAGE, hvt.HVT_CONFIGS["hvt_s_4"], hvt.HVT_CONFIGS["hvt_t"]], ids=str)
def test_spans_nest_and_cover_the_patches(cfg):
    spans = token_spans(cfg)
    n0 = cfg.num_patches
    np.testing.assert_array_equal(spans[0], np.stack([np.arange(n0), np.arange(1, n0 + 1)], 1))
    for prev, cur in zip(spans, spans[1:]):
        assert cur.dtype == np.int64 and (cur[:, 0] < cur[:, 1]).all()
        for j, (start, stop) in enumerate(cur):  # token j pools tokens 2j, 2j+1, 2j+2 of the previous stage
            window = prev[2 * j : 2 * j + 3]
            assert len(window) == 3 and start == window[0, 0] and stop == window[-1, 1]
            assert (window[1:, 0] <= window[:-1, 1]).all()  # contiguous union
        # every patch of the previous stage's coverage is covered, except the dropped tail
        covered = np.zeros(n0, bool)
        for start, stop in cur:
            covered[start:stop] = True
        stop_all = cur[-1, 1]
        assert covered[:stop_all].all() and not covered[stop_all:].any()
        assert stop_all <= prev[-1, 1]
    # 196 patches: the first pool drops the last patch; 97→48 drops nothing; 48→23 drops one more token
    if cfg.num_patches == 196 and len(spans) == 5:
        assert [int(s[-1, 1]) for s in spans] == [196, 195, 195, 191, 191]


def test_span_contains_the_argmax_patch():
    """Tracing MaxPool1d's argmax back through the stages always lands inside the pooled token's span."""
    cfg = TINY_IMAGE
    spans = token_spans(cfg)
    x = torch.randn(1, 8, cfg.num_patches)  # (B, C, N): any per-channel values on the patch sequence
    source = torch.arange(cfg.num_patches).expand(1, 8, -1)  # patch index each value came from
    for s in range(1, len(spans)):
        x, idx = F.max_pool1d(x, 3, 2, return_indices=True)
        source = torch.gather(source, 2, idx)
        lo = torch.from_numpy(spans[s][:, 0])
        hi = torch.from_numpy(spans[s][:, 1])
        assert ((source >= lo) & (source < hi)).all()


def test_output_carries_spans_and_patch_grid():
    out = _model(TINY_IMAGE).forward_with_attention(torch.randn(1, 3, 1, 224, 224))
    assert out.extras["patch_grid"] == (1, 14, 14)
    assert [s.shape[0] for s in out.extras["spans"]] == [s.tokens for s in out.stages]


# -- registry and checkpoints --------------------------------------------------------------------------------


def test_registry_specs():
    from mvt.zoo import get_spec

    spec = get_spec("hvt_s_4.in1k")
    assert spec.trained and spec.per_frame and spec.label_set == "imagenet1k"
    assert spec.weights.url.endswith("/v1.0/scale_hvt_ti_4.pth") and spec.weights.state_key == "model"
    assert (spec.crop_size, spec.resize_size, spec.num_frames, spec.frame_stride) == (224, 256, 16, 4)
    assert get_spec("hvt_s_1.in1k").weights.url.endswith("/v1.1/hvt_s_1.pth")
    assert not get_spec("hvt_s_1.untrained").trained
    t = get_spec("hvt_t.untrained")
    assert t.label_set == "synthmotion" and t.num_classes == 8 and not t.per_frame


def _save_official(model: HVT, path, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "epoch": 299, **extra}, path)


def test_checkpoint_with_wrong_keys_fails_loudly(tmp_path, monkeypatch):
    from mvt.zoo import create_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = build_hvt("hvt_ti_1")
    sd = model.state_dict()
    sd["blocks.0.pos_embedding"] = sd.pop("blocks.0.pos_embed")
    path = tmp_path / "hub" / "checkpoints" / "hvt_ti_1.pth"
    path.parent.mkdir(parents=True)
    torch.save({"model": sd}, path)
    with pytest.raises(WeightsError, match="blocks.0.pos_embed"):
        create_model("hvt_ti_1.in1k", download=False)
    torch.save(model.state_dict(), path)  # not under ['model']
    with pytest.raises(WeightsError, match="no 'model' entry"):
        create_model("hvt_ti_1.in1k", download=False)


@pytest.mark.slow
def test_official_format_checkpoint_loads_strictly_and_matches_reference(tmp_path, monkeypatch):
    """Real size: a random HVT-S-1 saved as the release file (hvt_s_1.pth, state dict under ['model'])."""
    from mvt.zoo import create_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = hvt.VARIANTS["hvt_s_1"]
    src = _model(cfg, num_classes=1000, seed=1)
    _save_official(src, tmp_path / "hub" / "checkpoints" / "hvt_s_1.pth")
    model = create_model("hvt_s_1.in1k", download=False)
    assert model.spec.name == "hvt_s_1.in1k" and model.spec.trained
    x = torch.randn(1, 3, 2, 224, 224)
    with torch.no_grad():
        ref = _reference_clip(src.state_dict(), cfg, x)
        fast = model(x)
        out = model.forward_with_attention(x)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.logits, fast, rtol=1e-4, atol=1e-4)
    assert [a.probs().shape[-1] for a in out.attentions] == [196] + [97] * 11
    assert [s.tokens for s in out.stages] == [196, 97]
