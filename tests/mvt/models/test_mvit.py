"""MViT v1-B / v2-S against torchvision: same configs, parameters and logits; attention records are consistent."""

from __future__ import annotations

import dataclasses
import math
from unittest import mock

import pytest
import torch
import torchvision.models.video.mvit as tvm

import mvt
from mvt.models.mvit import MVIT_CONFIGS, MViT, build_mvit
from mvt.outputs import Footprint, PoolOp

NAMES = ("mvit_v1_b", "mvit_v2_s")
PARAMS = {"mvit_v1_b": 36_610_672, "mvit_v2_s": 34_537_744}


def _tv_recipe(name: str) -> dict:
    """The block settings and flags torchvision's builder passes to its MViT (captured, nothing is built)."""
    captured: dict = {}

    def fake(block_setting, stochastic_depth_prob, weights, progress, **kw):
        captured.update(kw, block_setting=block_setting)

    with mock.patch.object(tvm, "_mvit", side_effect=fake):
        getattr(tvm, name)()
    return captured


def _tv_model(name: str, frames: int = 16, size: int = 224) -> tvm.MViT:
    """torchvision's MViT ``name`` built for ``frames``×``size``² clips, random weights, eval mode."""
    r = _tv_recipe(name)
    return tvm.MViT(
        spatial_size=(size, size),
        temporal_size=frames,
        block_setting=r["block_setting"],
        residual_pool=r.get("residual_pool", False),
        residual_with_cls_embed=r.get("residual_with_cls_embed", True),
        rel_pos_embed=r.get("rel_pos_embed", False),
        proj_after_attn=r.get("proj_after_attn", False),
    ).eval()


def _pair(name: str, frames: int, size: int, seed: int = 0) -> tuple[tvm.MViT, MViT]:
    torch.manual_seed(seed)
    tv = _tv_model(name, frames, size)
    ours = MViT(dataclasses.replace(MVIT_CONFIGS[name], num_frames=frames, image_size=size)).eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    return tv, ours


@pytest.fixture(scope="module", params=NAMES)
def small(request):
    """(name, torchvision, ours, input) for 4×64² clips: grids 2×16² → 2×8² → 2×4² → 2×2²."""
    tv, ours = _pair(request.param, 4, 64)
    torch.manual_seed(1)
    return request.param, tv, ours, torch.randn(2, 3, 4, 64, 64)


@pytest.mark.parametrize("name", NAMES)
def test_block_configs_match_torchvision(name):
    theirs = _tv_recipe(name)["block_setting"]
    ours = MVIT_CONFIGS[name].block_configs()
    assert len(ours) == len(theirs) == 16
    for a, b in zip(ours, theirs):
        assert (a.heads, a.dim_in, a.dim_out) == (b.num_heads, b.input_channels, b.output_channels)
        q_stride = tuple(b.stride_q) if b.stride_q else (1, 1, 1)
        has_q = math.prod(b.kernel_q or [1]) > 1 or math.prod(q_stride) > 1
        assert (a.q_pool is not None) == has_q
        if a.q_pool is not None:
            assert a.q_pool == PoolOp(tuple(b.kernel_q), q_stride, (1, 1, 1), "conv")
        assert a.kv_pool == PoolOp(tuple(b.kernel_kv), tuple(b.stride_kv), (1, 1, 1), "conv")
        assert (a.skip_pool is not None) == (math.prod(q_stride) > 1)


@pytest.mark.parametrize("name", NAMES)
def test_parameters_and_keys_match_torchvision(name):
    ours = build_mvit(name)
    tv_state = getattr(tvm, name)().state_dict()
    assert sum(p.numel() for p in ours.parameters()) == PARAMS[name]
    own = ours.state_dict()
    assert sorted(own) == sorted(tv_state)
    assert all(own[k].shape == tv_state[k].shape for k in own)


def test_logits_match_torchvision_small(small):
    _, tv, ours, x = small
    with torch.inference_mode():
        ref = tv(x)
        fast = ours(x)
        out = ours.forward_with_attention(x)
    assert (fast - ref).abs().max().item() <= 1e-4
    assert (out.logits - ref).abs().max().item() <= 1e-4
    assert (out.logits - fast).abs().max().item() <= 1e-5


def test_other_input_sizes(small):
    """Ours follows the actual grid (v2 resamples its relative-position tables); v1 needs the nominal grid."""
    name, _, ours, _ = small
    x = torch.randn(1, 3, 6, 96, 80)
    if name == "mvit_v1_b":
        with pytest.raises(ValueError, match="absolute position embeddings"):
            ours(x)
        return
    with torch.inference_mode():
        out = ours.forward_with_attention(x)
        fast = ours(x)
    assert [s.grid for s in out.stages] == [(3, 24, 20), (3, 12, 10), (3, 6, 5), (3, 3, 3)]
    assert torch.isfinite(fast).all() and (fast - out.logits).abs().max().item() <= 1e-5


def test_attention_records_are_consistent(small):
    name, _, ours, x = small
    with torch.inference_mode():
        out = ours.forward_with_attention(x)
    assert out.input_shape == (4, 64, 64)
    assert out.embed == Footprint((2, 4, 4), (3, 7, 7), (1, 3, 3))
    assert out.pooling == "cls"
    assert len(out.attentions) == 16 and [a.block for a in out.attentions] == list(range(16))
    grid = (2, 16, 16)
    for a, bc in zip(out.attentions, ours.block_cfgs):
        assert a.in_grid == grid
        assert a.q_grid == (a.q_pool.out_grid(grid) if a.q_pool else grid)
        assert a.k_grid == a.kv_pool.out_grid(grid)
        nq, nk = 1 + math.prod(a.q_grid), 1 + math.prod(a.k_grid)
        assert a.probs().shape == (2, 1, nq, nk)
        assert a.cls_row.shape == (2, bc.heads, nk)
        assert a.heads == bc.heads and a.num_prefix == 1 and a.kind == "joint"
        assert torch.allclose(a.probs().sum(-1), torch.ones(2, 1, nq), atol=1e-5)
        assert torch.allclose(a.cls_row.sum(-1), torch.ones(2, bc.heads), atol=1e-5)
        assert torch.allclose(a.cls_row.mean(1), a.probs()[:, 0, 0], atol=1e-6)
        assert a.residual_pool == (name == "mvit_v2_s")
        assert a.skip_pool == bc.skip_pool
        if a.skip_pool is not None:
            assert a.skip_pool == PoolOp((1, 3, 3), (1, 2, 2), (0, 1, 1), "max")
        grid = a.q_grid
    grids = [s.grid for s in out.stages]
    assert grids == [(2, 16, 16), (2, 8, 8), (2, 4, 4), (2, 2, 2)]
    assert [s.blocks for s in out.stages] == [(0,), (1, 2), tuple(range(3, 14)), (14, 15)]
    assert [s.tokens for s in out.stages] == [1 + math.prod(g) for g in grids]
    assert [s.channels for s in out.stages] == (
        [192, 384, 768, 768] if name == "mvit_v1_b" else [96, 192, 384, 768]
    )
    fp = out.embed
    for s in out.stages[1:]:
        fp = fp.then(PoolOp((3, 3, 3), (1, 2, 2), (1, 1, 1)))
        assert s.footprint == fp
    assert out.stages[-1].footprint.stride == (2, 32, 32)


def test_stage_taps_see_5d_grids_in_both_paths(small):
    _, _, ours, x = small
    seen = []
    hooks = [t.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape))) for t in ours.stage_taps]
    try:
        with torch.inference_mode():
            ours(x)
            out = ours.forward_with_attention(x)
    finally:
        for h in hooks:
            h.remove()
    expected = [(2, s.channels, *s.grid) for s in out.stages]
    assert seen == expected + expected


def test_stage_tap_output_is_on_the_logit_graph(small):
    """Captum's LayerGradCam needs d logit / d tap output: the tap's output must feed the rest of the net."""
    _, _, ours, x = small
    captured = {}

    def keep(module, inputs, output):
        captured["out"] = output

    handle = ours.stage_taps[1].register_forward_hook(keep)
    try:
        logits = ours(x[:1])
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logits[0, 3], captured["out"])
    assert grad.shape == captured["out"].shape and grad.abs().sum() > 0


def test_fast_path_with_autograd_matches_inference(small):
    _, _, ours, x = small
    with torch.inference_mode():
        ref = ours(x)
    logits = ours(x)  # grad enabled: the differentiable mask path
    assert logits.requires_grad
    assert (logits.detach() - ref).abs().max().item() <= 1e-5


def test_gradients_capture_gives_differentiable_probabilities(small):
    _, _, ours, x = small
    out = ours.forward_with_attention(x[:1], capture=mvt.Capture.GRADIENTS)
    last, w = out.attentions[-1], out.traced[len(out.attentions) - 1]
    assert w.requires_grad
    assert w.shape == (1, last.heads, *last.probs().shape[-2:])
    assert torch.allclose(w.detach().mean(1, keepdim=True), last.probs(), atol=1e-6)
    weights = [out.traced[i] for i in range(len(out.attentions))]
    grads = torch.autograd.grad(out.logits[0, 0], weights)
    assert all(g is not None and g.shape == w.shape for g, w in zip(grads, weights))
    assert grads[-1].abs().sum() > 0


def test_batch_rows_are_independent(small):
    _, _, ours, x = small
    with torch.inference_mode():
        both = ours(x)
        one = ours(x[1:])
    assert (both[1:] - one).abs().max().item() <= 1e-5


def test_training_mode_runs_with_drop_path():
    model = build_mvit("mvit_t", num_classes=8).train()
    x = torch.randn(2, 3, 16, 112, 112)
    loss = model(x).logsumexp(-1).mean()
    loss.backward()
    assert model.blocks[0].attn.rel_pos_h.grad is not None
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_mvit_t_grids():
    model = build_mvit("mvit_t", num_classes=8).eval()
    with torch.inference_mode():
        out = model.forward_with_attention(torch.randn(1, 3, 16, 112, 112))
    assert out.logits.shape == (1, 8)
    assert [s.grid for s in out.stages] == [(4, 14, 14), (4, 7, 7), (4, 4, 4)]
    assert [a.k_grid[1] for a in out.attentions] == [7, 14, 7, 7, 4, 4]  # stage starts see the finer grid
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_real_size_matches_torchvision(name):
    """1×3×16×224²: torchvision's logits, fast = capture, rows sum to 1, grids 8×56² → 8×28² → 8×14² → 8×7²."""
    tv, ours = _pair(name, 16, 224, seed=7)
    x = torch.randn(1, 3, 16, 224, 224)
    with torch.inference_mode():
        ref = tv(x)
        fast = ours(x)
        out = ours.forward_with_attention(x)
    assert (fast - ref).abs().max().item() <= 1e-4
    assert (out.logits - ref).abs().max().item() <= 1e-4
    assert [s.grid for s in out.stages] == [(8, 56, 56), (8, 28, 28), (8, 14, 14), (8, 7, 7)]
    nq = [a.probs().shape[-2] for a in out.attentions]
    nk = [a.probs().shape[-1] for a in out.attentions]
    assert nq == [25089, 6273, 6273] + [1569] * 11 + [393, 393]
    assert nk == [393, 1569, 393, 1569] + [393] * 10 + [1569, 393]  # as torchvision's softmax inputs
    for a in out.attentions:
        assert a.probs().shape[-2:] == (1 + math.prod(a.q_grid), 1 + math.prod(a.k_grid))
        assert (a.probs().sum(-1) - 1).abs().max().item() < 1e-4


@pytest.mark.parametrize("stride", [(1, 1, 1), (1, 2, 2), (1, 8, 8), (2, 4, 4)])
@pytest.mark.parametrize(
    ("kernel", "padding"), [((3, 3, 3), (1, 1, 1)), ((3, 7, 7), (1, 3, 3)), ((3, 3, 3), (0, 0, 0))]
)
def test_depthwise_pooling_has_the_gradients_of_conv3d(stride, kernel, padding):
    """The pooling convolution's own backward (input gradient as a convolution, weight gradient in a node
    of its own) gives exactly what autograd gives for F.conv3d, for the strides and paddings MViT uses."""
    from mvt.models.multiscale import depthwise_conv3d

    g = torch.Generator().manual_seed(0)
    for shape in [(2, 6, 8, 14, 14), (1, 4, 4, 7, 9)]:
        x = torch.randn(*shape, dtype=torch.float64, generator=g, requires_grad=True)
        w = torch.randn(shape[1], 1, *kernel, dtype=torch.float64, generator=g, requires_grad=True)
        ours = depthwise_conv3d(x, w, stride, padding)
        ref = torch.nn.functional.conv3d(x, w, None, stride, padding, 1, shape[1])
        grad = torch.randn(ref.shape, dtype=torch.float64, generator=g)
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
        for a, b in zip(torch.autograd.grad(ours, (x, w), grad), torch.autograd.grad(ref, (x, w), grad)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    (gx,) = torch.autograd.grad(
        depthwise_conv3d(x, w, stride, padding).sum(), x
    )  # the input alone: no weight
    assert gx.shape == x.shape
