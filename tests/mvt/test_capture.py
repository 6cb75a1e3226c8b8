"""One capture argument, one capture implementation.

Every family's maps, under every capture, are made by ``mvt.layers.record_attention``; every capture gives
the fast path's logits. ``Capture.LAZY`` (the fused fast path plus CLS rows now and head means on first read)
is checked against ``Capture.EAGER``: lazy logits are the fast path's (bitwise), lazy CLS rows are the rows
of the eager per-head matrices, lazily computed head means are the eager ones (same dtype, equal to float
rounding), stage volumes of CLS models come out without computing any matrix, and concurrent first reads
compute a map once. float16 storage and the bf16 autocast path have their own measured tolerances.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import mvt
import viz
from mvt import Capture, layers
from mvt.layers import DeferredProbs, head_mean_softmax, map_dtype, record_attention
from mvt.outputs import AttentionMap

from .. import toy_family

SMALL = [a for a in mvt.list_archs() if mvt.get_spec(a).label_set == "synthmotion"]
LAZY = Capture.LAZY


def _clip(spec: mvt.ModelSpec, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, spec.num_frames, spec.crop_size, spec.crop_size, generator=g)


@pytest.fixture(scope="module", params=SMALL)
def runs(request):
    """(model, eager output, lazy output, fast logits) of one small architecture, untrained weights."""
    torch.manual_seed(0)
    model = mvt.create_model(f"{request.param}.untrained")
    x = _clip(model.spec)
    with torch.inference_mode():
        fast = model(x)
        eager = model.forward_with_attention(x)
        lazy = model.forward_with_attention(x, capture=LAZY)
    return model, eager, lazy, fast


# -- one implementation ----------------------------------------------------------------------------------------


class _Made(AttentionMap):
    """An AttentionMap that counts itself: record_attention makes these while the test patches it in."""

    made: list = []

    def __post_init__(self) -> None:
        super().__post_init__()
        _Made.made.append(self)


def _families() -> list[str]:
    """Every family's small architecture, and the toy family of the adding-a-model guide."""
    return SMALL + ["toy_t"]


@pytest.mark.parametrize("arch", _families())
def test_every_family_s_maps_come_from_record_attention_under_every_capture(arch, monkeypatch):
    with toy_family.registered():
        model = mvt.create_model(f"{arch}.untrained")
    assert model.captures == frozenset(Capture)
    monkeypatch.setattr(layers, "AttentionMap", _Made)  # the one constructor call, in record_attention
    x = _clip(model.spec)
    with torch.no_grad():
        fast = model(x)
    for capture in Capture:
        _Made.made.clear()
        with torch.enable_grad() if capture in (Capture.GRADIENTS, Capture.FLOW) else torch.no_grad():
            out = model.forward_with_attention(x, capture=capture)
        assert out.attentions and len(_Made.made) == len(out.attentions), capture
        assert all(a is b for a, b in zip(out.attentions, _Made.made)), capture
        torch.testing.assert_close(
            out.logits.detach(), fast, atol=1e-5, rtol=1e-5
        )  # any capture: same logits
        if capture is Capture.GRADIENTS:
            assert sorted(out.traced) == list(range(len(out.attentions)))
            assert all(w.requires_grad for w in out.traced.values())
        elif capture is Capture.FLOW:
            assert out.traced and all(t.requires_grad for t in out.traced.values())
        else:
            assert not out.traced


def test_a_capture_is_checked_against_what_the_family_declares():
    model = mvt.create_model("hvt_t.untrained")
    x = _clip(model.spec)
    with pytest.raises(ValueError, match="unknown capture 'sparse'"):
        model.forward_with_attention(x, capture="sparse")
    model.captures = frozenset({Capture.EAGER})
    with pytest.raises(NotImplementedError, match="does not implement capture 'flow'"):
        mvt.token_flow(model, x)
    assert layers.supported(torch.nn.Linear(2, 2)) == {Capture.EAGER}  # a model that declares nothing


def test_lazy_logits_are_the_fast_paths_and_the_records_match(runs):
    model, eager, lazy, fast = runs
    assert LAZY in layers.supported(model)
    assert torch.equal(lazy.logits, fast), "lazy capture runs exactly the fused fast path"
    assert len(lazy.attentions) == len(eager.attentions) and lazy.stages == eager.stages
    for a, b in zip(eager.attentions, lazy.attentions):
        assert (a.stage, a.block, a.kind, a.view, a.q_grid, a.k_grid, a.group_grid) == (
            b.stage,
            b.block,
            b.kind,
            b.view,
            b.q_grid,
            b.k_grid,
            b.group_grid,
        )
        assert b.groups == a.groups and b.shape == a.shape and not b.probs_ready
        assert (a.cls_row is None) == (b.cls_row is None)
    assert not lazy.traced


def test_cls_rows_are_the_rows_of_the_full_matrices(runs):
    """The 1×N product per head gives the same row as the eager capture's full per-head matrix."""
    _, eager, lazy, _ = runs
    for a, b in zip(eager.attentions, lazy.attentions):
        if a.cls_row is not None:
            torch.testing.assert_close(b.cls_row, a.cls_row, atol=1e-6, rtol=1e-5)
            assert b.cls_row.dtype == torch.float32
            # and the head mean of the CLS rows is row 0 of the head-mean matrix
            mean_row = b.cls_row.mean(1)  # (B, Nk)
            torch.testing.assert_close(mean_row, a.probs()[:, 0, 0].float(), atol=2e-3, rtol=0)


def test_lazy_head_means_equal_the_eager_ones(runs):
    _, eager, lazy, _ = runs
    out = _fresh_lazy(runs)
    assert not out.probs_ready
    out.materialise()
    assert out.probs_ready
    for a, b in zip(eager.attentions, out.attentions):
        assert b.probs().shape == a.probs().shape and b.probs().dtype == a.probs().dtype
        torch.testing.assert_close(b.probs().float(), a.probs().float(), atol=1e-6, rtol=1e-5)


def _fresh_lazy(runs):
    model, *_ = runs
    with torch.inference_mode():
        return model.forward_with_attention(_clip(model.spec), capture=LAZY)


def test_stage_volumes_of_cls_models_compute_no_matrix(runs):
    """What the first panel shows (every stage's CLS row, any head) costs no (Nq, Nk) matrix."""
    _, eager, _, _ = runs
    out = _fresh_lazy(runs)
    cls_model = all(viz.stage_map(out, s).cls_row is not None for s in viz.stages(out))
    for s in viz.stages(out):
        heads = ["mean", "max", 0] if cls_model else ["mean"]
        for h in heads:
            got, fp = viz.stage_volume(out, s, head=h)
            want, fp_eager = viz.stage_volume(eager, s, head=h)
            assert fp == fp_eager
            np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-5)
    if cls_model:
        assert not any(m.probs_ready for m in out.attentions), "a CLS model's stage volumes read no matrix"


def test_rollout_and_statistics_from_lazy_maps_equal_eager(runs):
    _, eager, _, _ = runs
    out = _fresh_lazy(runs)
    got, fp = viz.rollout_volume(out, mode="attention")
    want, fp_eager = viz.rollout_volume(eager, mode="attention")
    assert fp == fp_eager
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-4)
    for a, b in zip(viz.attention_stats(eager), viz.attention_stats(out)):
        assert a.keys() == b.keys()
        for k, v in a.items():
            if isinstance(v, float):
                assert b[k] == pytest.approx(v, abs=1e-5, nan_ok=True), k
            else:
                assert b[k] == v


# -- DeferredProbs ----------------------------------------------------------------------------------------------


def test_concurrent_first_reads_compute_a_map_once(monkeypatch):
    torch.manual_seed(1)
    q, k, v = torch.randn(3, 2, 4, 50, 8).unbind(0)  # (BG=2, heads=4, N=50, d=8)
    calls = []
    real = layers.head_mean_softmax
    barrier = threading.Barrier(6)

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(layers, "head_mean_softmax", counted)
    rec = layers.Recorder(LAZY, batch=2)
    record_attention(
        q, k, v, rec, stage=0, block=0, kind="joint", q_grid=(1, 1, 49), k_grid=(1, 1, 49), num_prefix=1
    )
    (amap,) = rec.maps
    assert amap.shape == (2, 1, 50, 50) and not amap.probs_ready and not calls  # the shape computes nothing
    seen = []

    def read():
        barrier.wait()
        seen.append(amap.probs())

    threads = [threading.Thread(target=read) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(s is seen[0] for s in seen) and amap.probs_ready
    probs = (q @ k.transpose(-2, -1) * 8**-0.5).softmax(-1)  # (2, 4, 50, 50)
    torch.testing.assert_close(seen[0], probs.mean(1, keepdim=True))


def test_chunked_head_means_equal_one_product():
    """Row chunks (the memory bound of a deferred map) give the one-product result."""
    torch.manual_seed(2)
    q, k = torch.randn(2, 1, 3, 70, 16).unbind(0)
    whole = head_mean_softmax(q, k, 0.25, chunk_bytes=1 << 30)
    chunked = head_mean_softmax(q, k, 0.25, chunk_bytes=3 * 70 * 4 * 7)  # 7 rows per chunk
    torch.testing.assert_close(chunked, whole, atol=1e-7, rtol=1e-6)
    assert torch.allclose(whole.sum(-1), torch.ones(1, 70))


def test_deferred_probs_refuse_what_they_cannot_do():
    q = torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match="no attention dropout"):
        record_attention(q, q, q, layers.Recorder(LAZY, 1), dropout_p=0.1, kind="joint")
    d = DeferredProbs(q, q, 0.5)
    d.compute()
    with pytest.raises(RuntimeError, match="first_rows"):
        d.first_rows()


# -- float16 storage and the bf16 path ---------------------------------------------------------------------------


def test_big_maps_are_stored_in_float16():
    assert map_dtype(1024, 1024) == torch.float16 and map_dtype(1023, 1024) == torch.float32


def test_float16_storage_moves_rollout_and_statistics_by_less_than_measured(monkeypatch):
    """Force every map of a small MViT into float16 storage: the rollout volume moves by < 1e-3 of its
    maximum and the statistics by < 1e-3 (bench/README.md gives the K400-size figures)."""
    model = mvt.create_model("mvit_t.untrained")
    x = _clip(model.spec, seed=4)
    with torch.inference_mode():
        full = model.forward_with_attention(x)
        monkeypatch.setattr(layers, "BIG_MAP", 1)
        half = model.forward_with_attention(x, capture=LAZY).materialise()
    assert {m.probs().dtype for m in full.attentions} == {torch.float32}
    assert {m.probs().dtype for m in half.attentions} == {torch.float16}
    a, _ = viz.rollout_volume(full, mode="attention")
    b, _ = viz.rollout_volume(half, mode="attention")
    assert np.abs(a - b).max() < 1e-3 * np.abs(a).max()
    for s, t in zip(viz.attention_stats(full), viz.attention_stats(half)):
        for key in ("entropy", "distance_px", "distance_frames"):
            assert t[key] == pytest.approx(s[key], abs=1e-3, rel=1e-3, nan_ok=True)


@pytest.mark.parametrize("arch", ["mvit_t", "vivit_t1", "hvt_t", "mmvit_t"])
def test_bf16_autocast_runs_the_lazy_path_close_to_fp32(arch):
    """The code path a GPU takes (bf16 autocast), on the CPU: it runs, and logits and CLS rows stay close to
    fp32 (bf16 keeps 8 bits of mantissa: we allow 5e-2 on logits of an untrained model, 2e-2 on rows)."""
    model = mvt.create_model(f"{arch}.untrained")
    x = _clip(model.spec, seed=5)
    with torch.inference_mode():
        ref = model.forward_with_attention(x, capture=LAZY)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.forward_with_attention(x, capture=LAZY)
        low.materialise()
    torch.testing.assert_close(low.logits.float(), ref.logits, atol=5e-2, rtol=5e-2)
    for a, b in zip(ref.attentions, low.attentions):
        if a.cls_row is not None:
            torch.testing.assert_close(b.cls_row, a.cls_row, atol=2e-2, rtol=0)
        assert torch.isfinite(b.probs().float()).all()
