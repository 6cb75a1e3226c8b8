"""MMViT: zero-init identity with MViT v2-S (converter and the real cache file), exactness of view 1's kernel,
cross blocks that learn, fast path = capture path, cross-map layout (segments, pooled key counts), stage taps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import mvt
from mvt import zoo
from mvt.layers import Recorder
from mvt.models import mmvit
from mvt.models.mmvit import (
    MMVIT_CONFIGS,
    CrossViewBlock,
    MMViT,
    MMViTView,
    build_mmvit,
    convert_from_mvit,
    resize_patch_kernel,
)
from mvt.models.mvit import MVIT_CONFIGS, MultiscaleBlock, build_mvit
from mvt.outputs import grid_size
from mvt.weights import WeightsError

SMALL = (1, 3, 8, 64, 64)  # for mmvit_s (no absolute positions: any clip size)
CLIP_T = (
    1,
    3,
    16,
    112,
    112,
)  # mmvit_t's own size (absolute positions): view 0 4×14² → 4×7² → 4×4²; view 1 4×7² → 4×4² → 4×2²


def _perturb(model: torch.nn.Module, seed: int, which=lambda name: True) -> None:
    """Non-trivial biases/LayerNorms (so a wrong wiring shows up in the logits)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if which(name) and (name.endswith("bias") or "norm" in name):
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def _activate_cross(model: MMViT, seed: int = 1) -> None:
    """Give the zero-initialised cross-block outputs random values, so the views really interact."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.cross.named_parameters():
            if name.endswith(mmvit._ZERO_INIT):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def tiny() -> MMViT:
    torch.manual_seed(0)
    m = build_mmvit("mmvit_t", num_classes=8).eval()
    _perturb(m, 0)
    _activate_cross(m)
    return m


@pytest.fixture(scope="module")
def k400init(tmp_path_factory):
    """A random (seeded) MViT v2-S saved as torchvision's cache file, loaded as mvit_v2_s.k400 and
    mmvit_s.k400init through the zoo (offline)."""
    home = tmp_path_factory.mktemp("torch_home")
    torch.manual_seed(0)
    ref = build_mvit("mvit_v2_s")
    _perturb(ref, 0)
    ckpt = home / "hub" / "checkpoints" / "mvit_v2_s-ae3be167.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), ckpt)
    del ref
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        mp.setenv("MVT_OFFLINE", "1")
        mvit = zoo.create_model("mvit_v2_s.k400", download=False)
        model = zoo.create_model("mmvit_s.k400init", download=False)
    return mvit, model


# --------------------------------------------------------------------------------------------- k400init


def test_k400init_loads_the_cached_mvit_file_and_predicts_exactly_as_mvit(k400init):
    mvit, model = k400init
    assert model.spec.name == "mmvit_s.k400init" and model.spec.trained
    assert "not fine-tuned" in model.spec.description and "zero-init cross-view" in model.spec.description
    x = torch.randn(SMALL, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = mvit(x)
        fast = model(x)
        out = model.forward_with_attention(x)
    assert ref.abs().max() > 0.1  # a real signal, not zeros
    assert (fast - ref).abs().max() <= 1e-4
    assert (out.logits - ref).abs().max() <= 1e-4


def test_view1_is_mvit_on_the_half_resolution_clip(k400init):
    """The resized patch kernel is exact: view 1's tower = MViT v2-S on the 2×2-average-pooled clip."""
    mvit, model = k400init
    x = torch.randn(SMALL, generator=torch.Generator().manual_seed(2))
    tower = model.views[1]
    with torch.no_grad():
        tokens, grid = tower.embed(x)
        for block in tower.blocks:
            tokens, grid = block(tokens, grid)
        view1 = mvit.head(mvit.norm(tokens[:, 0]))
        ref = mvit(F.avg_pool3d(x, (1, 2, 2)))
    assert (view1 - ref).abs().max() <= 1e-4


def test_one_step_on_the_cross_blocks_breaks_the_identity(k400init):
    mvit, model = k400init
    x = torch.randn(SMALL, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = mvit(x)
    saved = {k: v.clone() for k, v in model.cross.state_dict().items()}
    model.views.requires_grad_(False)  # only the cross blocks are trained
    try:
        opt = torch.optim.SGD(model.cross.parameters(), lr=1.0)
        loss = F.cross_entropy(model(x), torch.tensor([5]))
        loss.backward()
        opt.step()
        with torch.no_grad():
            after = model(x)
        assert (after - ref).abs().max() > 1e-3
    finally:
        model.cross.load_state_dict(saved)
        model.views.requires_grad_(True)
        model.zero_grad(set_to_none=True)


@pytest.mark.slow
def test_real_size_k400init_equals_mvit_v2_s(k400init):
    mvit, model = k400init
    x = torch.randn((1, 3, 16, 224, 224), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = mvit(x)
        out = model.forward_with_attention(x)
    assert (out.logits - ref).abs().max() <= 1e-4
    cross = [m for m in out.attentions if m.kind == "cross"]
    assert [m.segments_q[1].grid for m in cross] == [(8, 28, 28), (8, 14, 14), (8, 7, 7), (8, 4, 4)]
    assert [sum(s.length for s in m.segments_k) for m in cross] == [393 + 129] * 4


# --------------------------------------------------------------------------------------------- converter


def test_converter_is_pure_deterministic_and_zeroes_cross_outputs():
    cfg = MMVIT_CONFIGS["mmvit_t"]
    torch.manual_seed(0)
    state = build_mvit("mvit_t", num_classes=8).state_dict()
    before = {k: v.clone() for k, v in state.items()}
    a, b = convert_from_mvit(state, cfg), convert_from_mvit(state, cfg)
    assert all(torch.equal(state[k], before[k]) for k in state)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    model = MMViT(cfg, num_classes=8)
    assert set(a) == set(model.state_dict())
    zero = [k for k in a if k.startswith("cross.") and k.endswith(mmvit._ZERO_INIT)]
    assert len(zero) == 4 * len(cfg.stages) * len(cfg.views)
    assert all(not a[k].any() for k in zero)
    last = cfg.stage_last_blocks()[1].index  # cross block 1's other weights come from the stage's last block
    assert torch.equal(a["cross.1.views.1.attn.qkv.weight"], state[f"blocks.{last}.attn.qkv.weight"])
    assert torch.equal(a["views.1.blocks.3.attn.rel_pos_h"], state["blocks.3.attn.rel_pos_h"])
    assert convert_from_mvit(a, cfg) == a  # a native MMViT state dict passes through (e.g. .synth files)


def test_mvit_t_with_absolute_positions_converts_to_an_mmvit_t_that_predicts_the_same():
    """mvit_t has absolute positions: view 1 gets them resampled onto its 4×7² grid, view 0 keeps them, and with
    identity cross blocks the MMViT's logits are the MViT's."""
    cfg = MMVIT_CONFIGS["mmvit_t"]
    torch.manual_seed(0)
    mvit = build_mvit("mvit_t", num_classes=8).eval()
    state = mvit.state_dict()
    a = convert_from_mvit(state, cfg)
    assert a["views.1.pos_encoding.spatial_pos"].shape == (7 * 7, 32)
    assert torch.equal(a["views.0.pos_encoding.spatial_pos"], state["pos_encoding.spatial_pos"])
    # a constant position field stays constant when resampled
    const = convert_from_mvit({**state, "pos_encoding.spatial_pos": torch.ones(14 * 14, 32)}, cfg)
    torch.testing.assert_close(const["views.1.pos_encoding.spatial_pos"], torch.ones(49, 32))
    model = MMViT(cfg, num_classes=8).eval()
    model.load_state_dict(a)
    x = torch.randn(CLIP_T, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        torch.testing.assert_close(model(x), mvit(x), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="absolute position embeddings"):
        model(torch.randn(SMALL))


def test_converter_fails_loudly_on_foreign_keys():
    cfg = MMVIT_CONFIGS["mmvit_t"]
    state = build_mvit("mvit_t", num_classes=8).state_dict()
    with pytest.raises(KeyError, match="unknown keys"):
        convert_from_mvit({**state, "blocks.0.attn.extra": torch.zeros(1)}, cfg)
    state.pop("blocks.2.mlp.0.weight")
    with pytest.raises(KeyError, match="blocks.2.mlp.0.weight"):
        convert_from_mvit(state, cfg)
    with pytest.raises(WeightsError, match="does not match"):
        zoo.load_state_dict_strict(MMViT(cfg, 8), state, zoo.get_arch("mmvit_t").convert, what="mmvit_t")


def test_patch_kernel_resize_is_exact_for_integer_scaling_and_sane_otherwise():
    src = MMViTView((3, 7, 7), (2, 4, 4), (1, 3, 3))
    dst = MMViTView((3, 14, 14), (2, 8, 8), (1, 6, 6))
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(4, 3, 3, 7, 7, generator=g), torch.randn(1, 3, 4, 32, 32, generator=g)
    big = resize_patch_kernel(w, src, dst)
    assert big.shape == (4, 3, 3, 14, 14)
    ours = F.conv3d(x, big, stride=dst.stride, padding=dst.padding)
    ref = F.conv3d(F.avg_pool3d(x, (1, 2, 2)), w, stride=src.stride, padding=src.padding)
    assert (ours - ref).abs().max() < 1e-4 * ref.abs().max()
    # not a multiple: trilinear, scaled by the kernel volumes so a smooth kernel keeps its response
    odd = MMViTView((3, 11, 11), (2, 6, 6), (1, 5, 5))
    assert resize_patch_kernel(w, src, odd).shape == (4, 3, 3, 11, 11)
    flat = resize_patch_kernel(torch.ones(1, 3, 3, 7, 7), src, odd)
    assert torch.allclose(flat.sum(), torch.tensor(3 * 3 * 7 * 7.0))


# --------------------------------------------------------------------------------------------- attention records


def test_fast_path_equals_capture_path_and_rows_sum_to_one(tiny):
    x = torch.randn(CLIP_T, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        fast = tiny(x)
        out = tiny.forward_with_attention(x)
    assert (fast - out.logits).abs().max() <= 1e-4
    for m in out.attentions:
        assert torch.allclose(m.probs().sum(-1), torch.ones(()), atol=1e-4), (m.stage, m.block, m.kind)
        assert torch.allclose(m.cls_row.sum(-1), torch.ones(()), atol=1e-4)
        nq, nk = sum(s.length for s in m.segments_q), sum(s.length for s in m.segments_k)
        assert m.probs().shape == (1, 1, nq, nk) and m.cls_row.shape == (1, m.heads, nk)


def test_cross_maps_layout_names_the_views_and_sums_their_pooled_keys(tiny):
    x = torch.randn(CLIP_T, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        out = tiny.forward_with_attention(x)
    depth = len(tiny.block_cfgs)
    cross = [m for m in out.attentions if m.kind == "cross"]
    assert [m.stage for m in cross] == list(range(len(tiny.cfg.stages)))
    stage_grid = {(s.stage, s.view): s.grid for s in out.stages}
    for m in cross:
        assert m.view is None and m.block == depth + m.stage and m.residual_pool
        assert [s.view for s in m.q_segments] == [s.view for s in m.k_segments] == [0, 1]
        # queries: every view's full stage grid (cross blocks keep the grid), each with its CLS first
        assert [s.grid for s in m.q_segments] == [stage_grid[(m.stage, v)] for v in (0, 1)]
        assert all(s.num_prefix == 1 for s in m.q_segments + m.k_segments)
        # keys: each view's pooled keys, as the view's own last block of the stage pools them
        last = {
            v: [a for a in out.attentions if a.kind == "joint" and a.view == v and a.stage == m.stage][-1]
            for v in (0, 1)
        }
        assert [s.grid for s in m.k_segments] == [last[v].k_grid for v in (0, 1)]
        assert m.probs().shape[-1] == sum(1 + grid_size(last[v].k_grid) for v in (0, 1))
        assert m.k_segments[0].grid == m.kv_pool.out_grid(m.q_segments[0].grid)
        assert m.q_grid == m.q_segments[0].grid and m.k_grid == m.k_segments[0].grid
        assert m.q_pool.stride == (1, 1, 1) and m.skip_pool is None
    # a view-0 query really attends to view 1's keys
    assert all(m.probs()[0, 0, 0, m.k_segments[0].length :].sum() > 1e-3 for m in cross)


def test_tower_maps_and_stage_infos_per_view(tiny):
    x = torch.randn(CLIP_T, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        out = tiny.forward_with_attention(x)
    joint = [m for m in out.attentions if m.kind == "joint"]
    assert len(joint) == 2 * len(tiny.block_cfgs)
    for m in joint:
        bc = tiny.block_cfgs[m.block]
        assert m.view in (0, 1) and m.stage == bc.stage and m.heads == bc.heads
        assert (m.q_pool, m.kv_pool, m.skip_pool, m.residual_pool) == (
            bc.q_pool,
            bc.kv_pool,
            bc.skip_pool,
            True,
        )
        assert m.q_grid == (m.q_pool.out_grid(m.in_grid) if m.q_pool else m.in_grid)
    assert [(s.stage, s.view) for s in out.stages] == [(s, v) for s in range(3) for v in (0, 1)]
    assert out.extras["view_embeds"][1].stride == (4, 16, 16) and out.embed.stride == (4, 8, 8)
    v0 = [s for s in out.stages if s.view == 0]
    assert [s.grid for s in v0] == [(4, 14, 14), (4, 7, 7), (4, 4, 4)]
    assert [s.grid for s in out.stages if s.view == 1] == [(4, 7, 7), (4, 4, 4), (4, 2, 2)]
    for s in out.stages:  # footprints tile the input at the stage grid (the last cell may hang over)
        step, n = s.footprint.stride[1], s.grid[1]
        assert step * (n - 1) < x.shape[3] <= step * n and s.tokens == 1 + grid_size(s.grid)  # padded pooling


def test_stage_taps_see_view0_tokens_in_both_paths(tiny):
    x = torch.randn(CLIP_T, generator=torch.Generator().manual_seed(8))
    seen = []
    hooks = [t.register_forward_hook(lambda mod, i, o: seen.append(tuple(o.shape))) for t in tiny.stage_taps]
    try:
        with torch.no_grad():
            tiny(x)
            out = tiny.forward_with_attention(x)
    finally:
        for h in hooks:
            h.remove()
    want = [(1, s.channels, *s.grid) for s in out.stages if s.view == 0]
    assert seen == want + want


def test_gradients_capture_gives_per_head_probs_on_the_graph(tiny):
    x = torch.randn(CLIP_T, generator=torch.Generator().manual_seed(9))
    out = tiny.forward_with_attention(x, capture=mvt.Capture.GRADIENTS)
    i = [i for i, a in enumerate(out.attentions) if a.kind == "cross"][-1]
    m, w = out.attentions[i], out.traced[i]
    assert w.requires_grad and w.shape[1] == m.heads
    assert torch.allclose(w.detach().mean(1, keepdim=True), m.probs())
    (grad,) = torch.autograd.grad(out.logits[0, 3], w)
    assert grad.abs().sum() > 0


def test_one_view_cross_block_is_an_mvit_block_without_relative_positions():
    """The cross block's q/k/v pooling is MViT's: with one view it equals a MultiscaleBlock."""
    cfg = MMVIT_CONFIGS["mmvit_t"].cross_block_config(1)
    torch.manual_seed(0)
    block = MultiscaleBlock(cfg).eval()
    _perturb(block, 0)
    with torch.no_grad():
        for p in (block.attn.project[0].weight, block.mlp[3].weight):
            p.normal_(0, 0.05)
    cross = CrossViewBlock(cfg, num_views=1).eval()
    cross.views[0].load_state_dict(block.state_dict())
    grid = (2, 6, 6)
    x = torch.randn(2, 1 + grid_size(grid), cfg.dim_in)
    rec_block, rec_cross = Recorder(mvt.Capture.EAGER, 2), Recorder(mvt.Capture.EAGER, 2)
    with torch.no_grad():
        ref, q_grid = block(x, grid, rec_block)
        (ours,), q_grids = cross([x], [grid], rec_cross)
    (mb,), (mc,) = rec_block.maps, rec_cross.maps
    assert (ours - ref).abs().max() < 1e-5 and q_grids == [q_grid] and mc.k_grid == mb.k_grid
    assert mc.probs().shape == (2, 1, 1 + grid_size(grid), 1 + grid_size(mb.k_grid)) and mc.kind == "cross"
    torch.testing.assert_close(mc.probs(), mb.probs(), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------- registry


def test_registry_specs():
    t = zoo.get_spec("mmvit_t.untrained")
    assert (t.num_classes, t.label_set, t.crop_size, t.num_frames) == (8, "synthmotion", 112, 16)
    assert not t.trained
    model = zoo.create_model("mmvit_t.untrained")
    assert model.head[1].out_features == 8
    s = zoo.get_spec("mmvit_s.k400init")
    assert (
        s.weights.url.endswith("/mvit_v2_s-ae3be167.pth")
        and s.weights == zoo.get_spec("mvit_v2_s.k400").weights
    )
    assert s.description == mmvit.K400INIT_DESCRIPTION
    assert zoo.get_spec("mmvit_s.untrained").trained is False
    assert MMVIT_CONFIGS["mmvit_s"].tower == MVIT_CONFIGS["mvit_v2_s"]
    assert math.prod(MMVIT_CONFIGS["mmvit_s"].views[1].kernel) > math.prod(
        MMVIT_CONFIGS["mmvit_s"].views[1].stride
    )
