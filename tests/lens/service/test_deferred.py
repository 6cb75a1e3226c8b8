"""Pay for what is shown: the service's deferred attention matrices and volumes against the eager path.

A deferring service (the default) runs each model's fast path with CLS rows; rollout is a pending volume
computed on first read or by ``Service.warm`` in the background. Everything it shows must equal what the
eager service (``defer=False``, today's full capture) shows.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import lens
from lens.core.records import Volume, VolumeKey, Volumes
from tests.test_app import make_moving_square

SMALL = ["mvit_t.untrained", "hvt_t.untrained", "vivit_t1.untrained"]
ROLLOUT = VolumeKey("rollout")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_moving_square(tmp_path_factory.mktemp("deferred") / "square.mp4", seed=5)


@pytest.fixture(scope="module")
def both(clip, tmp_path_factory):
    """The same comparison from a deferring and an eager service."""
    lazy = lens.Service(out_dir=tmp_path_factory.mktemp("lazy"))
    eager = lens.Service(out_dir=tmp_path_factory.mktemp("eager"), defer=False)
    return lazy, lazy.analyse(clip, SMALL), eager.analyse(clip, SMALL)


def test_the_first_panel_needs_no_matrix_and_rollout_waits(both):
    svc, lazy, eager = both
    assert svc.defer
    for r, e in zip(lazy.results, eager.results):
        assert list(r.volumes) == list(e.volumes), "the same rows, whether or not they are ready"
        assert r.volumes.pending() == [ROLLOUT] and not r.ready
        assert e.volumes.pending() == [] and e.ready
        assert [c for c, _ in r.top5] == [c for c, _ in e.top5]
        assert [p for _, p in r.top5] == pytest.approx([p for _, p in e.top5], abs=1e-5)
        for k in r.volumes:
            if k.method == "attention":
                np.testing.assert_allclose(r.volumes[k].values, e.volumes[k].values, atol=1e-6, rtol=1e-5)
                assert r.volumes[k].footprint == e.volumes[k].footprint
        assert "forward, CLS rows of every map" not in r.timings  # progress text, not a timing
    mvit = lazy.results[0]
    assert not any(m.probs_ready for m in mvit.output.attentions), "MViT's panel read no (Nq, Nk) matrix"


def test_render_ready_only_leaves_pending_rows_out_then_warm_fills_them(both, clip):
    svc, lazy, eager = both
    fresh = svc.analyse(clip, SMALL[:1], ["attention", "rollout"], start_s=0.1)  # a result nobody read yet
    r = fresh.results[0]
    first = svc.render(fresh, ready_only=True)[0]
    assert r.volumes.pending() == [ROLLOUT], "a ready-only panel does not wait for rollout"
    future = svc.warm(fresh)
    assert future.result(timeout=120) == 1
    assert r.ready and r.output.probs_ready
    assert "Attention rollout through pooling" in r.timings
    assert "attention matrices (deferred)" in r.timings
    full = svc.render(fresh, ready_only=True)[0]
    assert full.strip != first.strip, "the strip with the rollout row is a new file"
    assert full.overlay == first.overlay
    assert svc.warm(fresh).result(timeout=10) == 0, "nothing left to do"


def test_lazy_rollout_equals_eager_and_is_computed_once(both):
    _, lazy, eager = both
    for r, e in zip(lazy.results, eager.results):
        got: list = [None] * 4

        def read(i: int, got: list = got, r: lens.ModelResult = r) -> None:
            got[i] = r.volumes[ROLLOUT]

        threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(g is got[0] for g in got), "concurrent readers share one computation"
        np.testing.assert_allclose(got[0].values, e.volumes[ROLLOUT].values, atol=1e-6, rtol=1e-4)
        assert got[0].footprint == e.volumes[ROLLOUT].footprint
        display = lens.Display("rollout")
        assert lens.render.overlays.resolve(r, display)[0] == ROLLOUT


def test_figures_from_deferred_results_equal_eager(both):
    _, lazy, eager = both
    for r, e in zip(lazy.results, eager.results):
        r.full_output()
        assert r.output.probs_ready
        for a, b in zip(e.output.attentions, r.output.attentions):
            assert a.probs.dtype == b.probs.dtype
            np.testing.assert_allclose(b.probs.float().numpy(), a.probs.float().numpy(), atol=1e-6)
    assert lens.render.overlays.stats_figure(lazy.results) is not None


def test_an_eager_family_without_the_mode_still_works(clip, tmp_path, monkeypatch):
    """A family whose forward_with_attention has no ``lazy`` keyword gets today's full capture."""
    from mvt.models.hvt import HVT

    real = HVT.forward_with_attention
    monkeypatch.setattr(HVT, "forward_with_attention", lambda self, x, *, keep_weights=False: real(self, x))
    svc = lens.Service(out_dir=tmp_path)
    r = svc.analyse(clip, ["hvt_t.untrained"]).results[0]
    assert r.output.probs_ready and r.volumes.pending() == [ROLLOUT]
    assert r.volumes[ROLLOUT].values.shape


def test_volumes_mapping_semantics():
    made = []
    vols = Volumes({VolumeKey("a"): Volume(np.zeros((1, 1, 1), np.float32))})
    times = []
    vols.on_done = lambda label, s: times.append(label)
    vols.defer(
        "B",
        (VolumeKey("b", 0), VolumeKey("b", 1)),
        lambda: (
            made.append(1)
            or {
                VolumeKey("b", 0): Volume(np.ones((1, 1, 1), np.float32)),
                VolumeKey("b", 1): Volume(np.ones((1, 1, 1), np.float32)),
            }
        ),
    )
    assert list(vols) == [VolumeKey("a"), VolumeKey("b", 0), VolumeKey("b", 1)]
    assert vols.pending() == [VolumeKey("b", 0), VolumeKey("b", 1)] and vols.ready(VolumeKey("a"))
    assert vols[VolumeKey("b", 1)].values[0, 0, 0] == 1 and made == [1] and times == ["B"]
    assert vols.pending() == [] and vols[VolumeKey("b", 0)].values.sum() == 1 and made == [1]
    bad = Volumes()
    bad.defer("C", (VolumeKey("c"),), lambda: {})
    with pytest.raises(RuntimeError, match="did not make"):
        bad[VolumeKey("c")]


def test_int8_is_asked_for_labelled_and_cached_apart(both, clip):
    svc, lazy, _ = both
    a = svc.analyse(clip, SMALL[:1], precision="int8")
    r, fp32 = a.results[0], lazy.results[0]
    assert r.precision == "int8" and fp32.precision == "fp32"
    assert "int8" in r.description and any("int8" in n for n in r.notes)
    assert a.keys[0] != lazy.keys[0] and a.keys[0].precision == "int8"
    assert svc.models.get(SMALL[0], "int8") is svc.models.get(SMALL[0], "int8")
    assert svc.models.get(SMALL[0], "int8") is not svc.models.get(SMALL[0])
    assert [c for c, _ in r.top5][:1] == [c for c, _ in fp32.top5][:1] or r.top5[0][1] < 0.5
    with pytest.raises(lens.LensError, match="unknown precision"):
        svc.analyse(clip, SMALL[:1], precision="int4")
    with pytest.raises(lens.LensError, match="need gradients"):
        svc.analyse(clip, SMALL[:1], ["saliency"], precision="int8")
