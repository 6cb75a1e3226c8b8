"""ViViT's four variants without transformers: capture path vs fast path, the attention records, stage taps,
factorised mixing, model 2's split, config errors, embedding initialisation, the registry and offline loading.
(The equivalence with transformers' model 1 is in ``test_vivit.py``.)"""

from __future__ import annotations

import pytest
import torch

import mvt
from mvt import layers, weights, zoo
from mvt.explain import attention_gradients
from mvt.models import vivit
from mvt.models.vivit import ViViT, ViViTConfig, config_from_hf, convert_hf_vivit, inflate_patch_kernel
from mvt.outputs import grid_size
from mvt.weights import WeightsError

# 4 frames of 32² with 2x16x16 tubelets: a 2x2x2 token grid. Small, but every code path of the big models.
TINY = {
    "num_frames": 4,
    "image_size": 32,
    "dim": 32,
    "heads": 4,
    "depth": 2,
    "temporal_depth": 2,
    "mlp_dim": 64,
}
KINDS = {
    1: ["joint"] * 2,
    2: ["spatial"] * 2 + ["temporal"] * 2,
    3: ["spatial", "temporal"] * 2,
    4: ["temporal", "spatial"] * 2,
}


def _tiny(variant: int, seed: int = 0, num_classes: int = 5, **kw) -> ViViT:
    torch.manual_seed(seed)
    m = ViViT(ViViTConfig(variant=variant, **{**TINY, **kw}), num_classes=num_classes).eval()
    with torch.no_grad():  # non-trivial norms, biases and embeddings so wiring mistakes show up
        for name, p in m.named_parameters():
            if name.endswith("bias") or "norm" in name or "cls_token" in name:
                p.add_(0.2 * torch.randn_like(p))
    return m


def _clip(b: int = 2, t: int = 4, s: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, t, s, s, generator=torch.Generator().manual_seed(seed))


def test_offline_without_cache_says_what_to_download(hf_cache):
    spec = zoo.get_spec("vivit_b_16x2.k400")
    assert not weights.is_available(spec.weights)
    assert "vivit_b_16x2.k400" not in zoo.list_models("vivit*", available_only=True)
    with pytest.raises(WeightsError) as err:
        weights.load(spec.weights)
    msg = str(err.value)
    assert "google/vivit-b-16x2-kinetics400" in msg and "pytorch_model.bin" in msg and "download" in msg


# -- the four variants -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
def test_capture_path_matches_fast_path_and_maps_are_well_formed(variant):
    m = _tiny(variant)
    x = _clip()
    with torch.no_grad():
        fast = m(x)
        out = m.forward_with_attention(x)
    torch.testing.assert_close(out.logits, fast, atol=1e-5, rtol=1e-5)
    assert [a.kind for a in out.attentions] == KINDS[variant]
    assert out.pooling == ("cls" if variant in (1, 2) else "mean")
    grid = (2, 2, 2)
    for a in out.attentions:
        stage_grid = out.stages[a.stage].grid
        assert a.in_grid == stage_grid
        full = tuple(g * q for g, q in zip(a.group_grid, a.q_grid))
        assert full == stage_grid  # group grid ⊙ query grid = the stage's token grid
        nq = a.num_prefix + grid_size(a.q_grid)
        assert a.probs().shape == (2, grid_size(a.group_grid), nq, nq)
        torch.testing.assert_close(
            a.probs().float().sum(-1), torch.ones(a.probs().shape[:-1]), atol=1e-5, rtol=0
        )
        if a.kind == "temporal" and a.stage == 0:
            assert a.probs().shape == (2, 4, 2, 2)  # (B, H*W, T, T): keys are the same spatial position
        if a.kind == "spatial":
            assert a.group_grid == (2, 1, 1) and a.q_grid == (1, 2, 2)
        if a.cls_row is not None:
            assert a.cls_row.shape == (2, a.heads, nq)
            torch.testing.assert_close(a.cls_row.mean(1), a.probs()[:, 0, 0].float(), atol=1e-6, rtol=0)
    if variant == 1:
        assert out.stages[0].grid == grid and out.stages[0].num_prefix == 1
        assert all(a.cls_row is not None for a in out.attentions)
    if variant == 2:
        assert [s.grid for s in out.stages] == [grid, (2, 1, 1)]
        assert out.stages[1].footprint.kernel == (2, 32, 32)  # a per-frame token covers the whole frame
        assert [a.block for a in out.attentions] == [0, 1, 2, 3]
    if variant == 4:
        assert [a.head_range for a in out.attentions[:2]] == [(0, 2), (2, 4)]
        assert all(a.heads == 2 for a in out.attentions)
    assert out.embed.stride == (2, 16, 16) and out.input_shape == (4, 32, 32)


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
def test_gradients_and_stage_taps(variant):
    m = _tiny(variant)
    x = _clip(b=1)
    seen = []
    hooks = [tap.register_forward_hook(lambda mod, i, o: seen.append(tuple(o.shape))) for tap in m.stage_taps]
    out = attention_gradients(m, x)
    for h in hooks:
        h.remove()
    expected = [(1, 32, 2, 2, 2)] + ([(1, 32, 2, 1, 1)] if variant == 2 else [])
    assert seen == expected
    assert sorted(out.grad_weighted) == list(range(len(out.attentions))) and not out.traced
    assert any(g.abs().sum() > 0 for g in out.grad_weighted.values())
    o = m.forward_with_attention(x, capture=mvt.Capture.GRADIENTS)
    for i, a in enumerate(o.attentions):
        g, w = grid_size(a.group_grid), o.traced[i]
        assert w.requires_grad and w.shape == (g, a.heads) + tuple(a.probs().shape[2:])
    # a stage tap sees tokens whose gradient reaches the logits (the CLS models tap before the last block)
    acts = {}
    h = m.stage_taps[0].register_forward_hook(lambda mod, i, o: acts.setdefault("a", o))
    logits = m(x)
    h.remove()
    (grad,) = torch.autograd.grad(logits[0, 0], acts["a"])
    assert grad.abs().sum() > 0


def _changed_positions(model: ViViT, x: torch.Tensor, t0: int, h0: int, w0: int) -> torch.Tensor:
    """Which tokens seen by ``stage_taps[0]`` change when the pixels of tubelet (t0, h0, w0) change."""
    acts = []
    h = model.stage_taps[0].register_forward_hook(lambda mod, i, o: acts.append(o.detach()))
    y = x.clone()
    y[:, :, 2 * t0 : 2 * t0 + 2, 16 * h0 : 16 * h0 + 16, 16 * w0 : 16 * w0 + 16] += 1.0
    with torch.no_grad():
        model(x), model(y)
    h.remove()
    return ((acts[0] - acts[1]).abs().amax(dim=1) > 1e-6)[0]  # (T, H, W)


@pytest.mark.parametrize("variant", [3, 4])
def test_factorised_attention_only_mixes_along_its_axis(variant):
    """With the other axis' attention switched off, a change at (t0, h0, w0) reaches only the tokens that
    share its spatial position (temporal attention) or its time index (spatial attention)."""
    for keep in ("temporal", "spatial"):
        m = _tiny(variant, depth=1)
        blk = m.encoder.blocks[0]
        with torch.no_grad():
            blk.mlp.fc2.weight.zero_()
            blk.mlp.fc2.bias.zero_()
            if variant == 3:  # zero the other sublayer's output projection
                off = blk.attn if keep == "temporal" else blk.attn_t
                off.proj.weight.zero_()
                off.proj.bias.zero_()
            else:  # model 4: zero the proj columns fed by the other half of the heads
                cols = slice(16, 32) if keep == "temporal" else slice(0, 16)
                blk.attn.proj.weight[:, cols] = 0
        changed = _changed_positions(m, _clip(b=1), 1, 0, 1)
        expect = torch.zeros(2, 2, 2, dtype=torch.bool)
        if keep == "temporal":
            expect[:, 0, 1] = True
        else:
            expect[1] = True
        assert torch.equal(changed, expect), (keep, changed)
    joint = _tiny(1, depth=1)  # contrast: joint attention spreads one tubelet's change everywhere
    with torch.no_grad():
        joint.encoder.blocks[0].mlp.fc2.weight.zero_()
    acts = []
    h = joint.encoder.blocks[0].register_forward_hook(lambda mod, i, o: acts.append(o.detach()))
    x = _clip(b=1)
    y = x.clone()
    y[:, :, 2:4, :16, 16:] += 1.0
    with torch.no_grad():
        joint(x), joint(y)
    h.remove()
    assert ((acts[0] - acts[1]).abs().amax(-1) > 1e-6).all()


def test_big_maps_are_float16_with_cls_rows_and_chunked_heads_agree(monkeypatch):
    m = _tiny(1, image_size=64)  # 2x4x4 = 32 tokens + CLS
    x = _clip(b=1, s=64)
    with torch.no_grad():
        ref = m.forward_with_attention(x)
        monkeypatch.setattr(layers, "BIG_MAP", 16)
        monkeypatch.setattr(layers, "_EAGER_CHUNK_BYTES", 1)  # one head per chunk
        out = m.forward_with_attention(x)
    a, r = out.attentions[0], ref.attentions[0]
    assert a.probs().dtype == torch.float16 and r.probs().dtype == torch.float32
    torch.testing.assert_close(a.probs().float(), r.probs(), atol=1e-3, rtol=0)
    torch.testing.assert_close(a.cls_row, r.cls_row, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-6, rtol=0)


# -- config, embedding initialisation, registry ---------------------------------------------------------------


def test_config_variants_and_errors():
    assert ViViTConfig(variant="factorised_encoder").variant == 2
    assert ViViTConfig(variant="factorized_dot_product_attention").variant == 4
    with pytest.raises(ValueError, match="variant"):
        ViViTConfig(variant="axial")
    with pytest.raises(ValueError, match="heads must be even"):
        ViViTConfig(variant=4, dim=48, heads=3)
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\).*layout must be permuted"):
        _tiny(1)(torch.zeros(1, 4, 3, 32, 32))
    with pytest.raises(ValueError, match="tanh GELU"):
        config_from_hf({"hidden_act": "relu"})


@pytest.mark.parametrize("method", ["central_frame", "average_frame"])
def test_inflated_kernel_gives_the_2d_response_on_a_static_clip(method):
    torch.manual_seed(0)
    k2 = torch.randn(8, 3, 16, 16)
    k3 = inflate_patch_kernel(k2, 2, method)
    if method == "central_frame":
        assert k3[:, :, 0].abs().sum() == 0 and torch.equal(k3[:, :, 1], k2)
    frame = torch.randn(1, 3, 32, 32)
    static = frame.unsqueeze(2).repeat(1, 1, 4, 1, 1)  # (1, 3, 4, 32, 32)
    y3 = torch.nn.functional.conv3d(static, k3, stride=(2, 16, 16))  # (1, 8, 2, 2, 2)
    y2 = torch.nn.functional.conv2d(frame, k2, stride=16)  # (1, 8, 2, 2)
    torch.testing.assert_close(y3[:, :, 0], y2, atol=1e-4, rtol=1e-4)
    m = ViViT(ViViTConfig(**TINY, embed_init=method))
    w = m.patch_embed.weight
    if method == "central_frame":
        assert w[:, :, 0].abs().sum() == 0 and w[:, :, 1].abs().sum() > 0
    else:
        assert torch.equal(w[:, :, 0], w[:, :, 1])


def test_registry_entries():
    names = zoo.list_models("vivit*")
    for arch in vivit.VIVIT_CONFIGS:
        assert f"{arch}.untrained" in names
    spec = zoo.get_spec("vivit_b_16x2.k400")
    assert spec.trained and spec.weights.kind == "hf" and spec.weights.filename == "pytorch_model.bin"
    assert spec.weights.repo_id == "google/vivit-b-16x2-kinetics400"
    assert (spec.num_frames, spec.frame_stride, spec.crop_size, spec.resize_size) == (32, 2, 224, 256)
    assert spec.mean == spec.std == (0.5, 0.5, 0.5) and spec.label_set == "kinetics400"
    assert zoo.get_arch("vivit_b_16x2").convert is convert_hf_vivit
    for i in range(1, 5):
        s = zoo.get_spec(f"vivit_t{i}")
        assert not s.trained and s.num_classes == 8 and s.label_set == "synthmotion"
    model = zoo.create_model("vivit_t2")
    assert model.cfg.variant == 2 and model.spec.name == "vivit_t2.untrained"
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 16, 112, 112)).shape == (1, 8)


def test_model2_splits_into_frame_tokens_and_their_classifier():
    model = _tiny(2).eval()
    x = _clip()
    with torch.no_grad():
        for p in model.parameters():  # every weight non-trivial (the head starts at zero)
            p.add_(0.1 * torch.randn_like(p))
        z = model.frame_tokens(x)
        assert z.shape == (2, model.cfg.grid[0], model.cfg.dim)  # (B, T', D)
        torch.testing.assert_close(model.classify_frames(z), model(x), rtol=0, atol=0)
        # the temporal encoder sees only these tokens: changing one time step's token changes the logits
        moved = z.clone()
        moved[:, 1] += torch.randn_like(moved[:, 1])
        assert not torch.allclose(model.classify_frames(moved), model(x))
    for variant in (1, 3, 4):
        with pytest.raises(ValueError, match="only model 2"):
            _tiny(variant).frame_tokens(x)
