"""ZeroGPU without a GPU: the service through the ``spaces`` stand-in (tests/zerogpu_stub), which forks a worker
per call and pickles arguments and results both ways. Each action is one call, sized to its models, and gives
what the CPU path gives; a call over the quota, or a model too slow for one call, says so in its panel."""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import lens
from lens.service import gpu as G
from lens.service.jobs import estimated_seconds
from tests.test_app import make_moving_square

STUB = Path(__file__).resolve().parents[2] / "zerogpu_stub" / "spaces" / "__init__.py"
SYNTH = ["mvit_t.synth", "mmvit_t.synth", "vivit_t1.synth", "hvt_t.synth"]
METHODS = ["attention", "rollout"]


def load_stub(monkeypatch, log: Path, quota: float = 600):
    """A fresh stand-in module (its own quota), not installed as ``spaces`` (other tests keep theirs)."""
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setenv("SPACES_STUB_LOG", str(log))
    monkeypatch.setenv("SPACES_STUB_QUOTA", str(quota))
    spec = importlib.util.spec_from_file_location("zerogpu_stub_spaces", STUB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_moving_square(tmp_path_factory.mktemp("zerogpu") / "square.mp4", seed=3)


@pytest.fixture(scope="module")
def cpu(clip, tmp_path_factory):
    """The CPU path's comparison and its service (the reference)."""
    service = lens.Service(out_dir=tmp_path_factory.mktemp("cpu"))
    yield service, service.analyse(clip, SYNTH, METHODS)
    service.close()


@pytest.fixture
def zero(monkeypatch, tmp_path):
    log = tmp_path / "calls.jsonl"
    service = lens.Service(out_dir=tmp_path / "out", gpu=load_stub(monkeypatch, log).GPU)
    yield service, log
    service.close()


def test_the_stand_in_pickles_like_spaces_so_a_closure_cannot_travel(monkeypatch, tmp_path):
    stub = load_stub(monkeypatch, tmp_path / "calls.jsonl")

    def step(frac: float) -> None:  # a local closure: what the old design sent as its progress callback
        return None

    run = stub.GPU(duration=lambda fn, x: 7)(lambda fn, x: x * 2)
    with pytest.raises((pickle.PicklingError, AttributeError)):
        run(step, 3)
    assert run(None, np.arange(3)).tolist() == [0, 2, 4]  # plain data goes both ways
    (record,) = calls(tmp_path / "calls.jsonl")[-1:]
    assert record["ok"] and record["duration"] == 7 and record["worker"]


def test_a_four_model_compare_is_one_call_of_tens_of_seconds_and_gives_the_cpu_results(zero, cpu, clip):
    (service, log), (_, reference) = zero, cpu
    analysis = service.analyse(clip, SYNTH, METHODS)
    (call,) = calls(log)
    assert call["ok"] and call["worker"] and G.MIN_S <= call["duration"] <= 60
    assert not service.defer, "the maps are computed in the call: drawing them later needs no GPU"
    for got, want in zip(analysis.entries, reference.entries):
        assert got.error is None, got.message
        assert [k for k, _ in got.top5] == [k for k, _ in want.top5] and got.target == want.target
        np.testing.assert_allclose([p for _, p in got.top5], [p for _, p in want.top5], atol=1e-5)
        assert list(got.volumes) == list(want.volumes)
        for key in want.volumes:
            np.testing.assert_allclose(got.volumes[key].values, want.volumes[key].values, atol=1e-4)
        assert got.output is not None and got.output.logits.device.type == "cpu"
    service.analyse(clip, SYNTH, METHODS)
    assert len(calls(log)) == 1, "the same request again is answered from the cache"


def test_explain_class_and_faithfulness_are_one_call_each(zero, cpu, clip):
    (service, log), (reference_service, _) = zero, cpu
    two = SYNTH[1:3]  # faithfulness runs many forwards: two models say what four would
    analysis = service.analyse(clip, two, METHODS)
    second = analysis.entries[0].top5[1][0]
    explained = service.explain_class(analysis.ref, 0, second, "grad_rollout")
    assert explained.entries[0].target != analysis.entries[0].target and len(calls(log)) == 2
    scores = service.faithfulness(analysis, steps=4)
    assert len(calls(log)) == 3 and all(c["ok"] for c in calls(log)), calls(log)
    want = reference_service.faithfulness(reference_service.analyse(clip, two, METHODS), steps=4)  # cached
    assert list(scores) == two
    for name in two:
        assert set(scores[name]) == set(want[name])
        for key, s in want[name].items():
            got = scores[name][key]["curves"]
            assert got.deletion_auc == pytest.approx(s["curves"].deletion_auc, abs=1e-4)
            assert got.insertion_auc == pytest.approx(s["curves"].insertion_auc, abs=1e-4)


def test_a_call_over_the_quota_is_refused_and_every_panel_says_so(monkeypatch, tmp_path, clip):
    stub = load_stub(monkeypatch, tmp_path / "calls.jsonl", quota=5)
    service = lens.Service(out_dir=tmp_path / "out", gpu=stub.GPU)
    try:
        analysis = service.analyse(clip, SYNTH[:2], METHODS)
        assert [e.error is not None for e in analysis.entries] == [True, True]
        assert all("quota" in e.message and "GPU call did not run" in e.message for e in analysis.entries)
        (call,) = calls(tmp_path / "calls.jsonl")
        assert call["refused"]
    finally:
        service.close()


def test_a_model_too_slow_for_one_call_says_so_in_its_panel_and_the_others_run(zero, clip):
    service, log = zero
    slow = SYNTH[0]
    service.took(slow, 10_000.0)  # as if it had taken that long here
    analysis = service.analyse(clip, SYNTH[:2], METHODS)
    assert analysis.entries[0].error is not None and "ZeroGPU call" in analysis.entries[0].message
    assert analysis.entries[1].error is None
    (call,) = calls(log)
    assert call["duration"] <= G.MAX_S


def test_the_duration_follows_the_models_and_methods(zero):
    service, _ = zero
    z = service.zero
    light = z.expected(SYNTH[0], ["attention"])
    assert z.expected(SYNTH[0], ["attention", "grad_rollout"]) > light
    assert G.MIN_S <= G.asked(4 * light) < G.asked(40 * light)
    z._forward[SYNTH[0]] = 0.05  # measured on the card: the next call asks for less
    assert z.expected(SYNTH[0], ["attention"]) == pytest.approx(0.05)


def test_the_pages_actions_are_one_call_each_and_progress_is_drawn_here(zero, clip):
    """The UI's Compare (its slower views and background matrices included), Explain class and faithfulness:
    one GPU call each; the figures and the export: none. Progress is reported by this process."""
    from lens.ui.actions import Actions
    from lens.ui.screens import KEEP, Controls

    service, log = zero
    actions, controls, said = Actions(service, str, len(SYNTH)), Controls(), []
    screens = list(
        actions.compare(
            clip=str(clip),
            models=SYNTH,
            controls=controls,
            methods=["rollout"],
            session="s",
            progress=lambda frac, what: said.append(what),
        )  # fmt: skip
    )
    assert len(calls(log)) == 1 and screens[-1].banner is None and calls(log)[0]["duration"] <= 60
    state = screens[-1].state
    assert all(p is not None and p.ready for p in screens[-1].panels), screens[-1].panels
    assert any("on the GPU" in s for s in said) or calls(log)[0]["elapsed"] < 2 * G.POLL_S
    assert actions.figures(state=state, controls=controls, session="s").figures_note == ""
    klass = screens[-1].panels[0].classes[1]
    explained = actions.explain(index=0, state=state, klass=klass, controls=controls, session="s")
    assert explained.banner in (None, KEEP) and len(calls(log)) == 2
    scored = actions.faithfulness(state=state, steps=4, session="s")
    assert scored.faithfulness_note == "" and len(calls(log)) == 3
    assert actions.export(state=state, controls=controls, session="s").export is not None
    assert len(calls(log)) == 3 and all(c["ok"] for c in calls(log))
    print(
        "ZeroGPU seconds asked by the page (Compare, Explain class, faithfulness):",
        [c["duration"] for c in calls(log)],
    )


class _Card:
    """A service on a card, as far as planning reads it (nothing runs)."""

    device = torch.device("cuda")

    def expected_seconds(self, name: str) -> float:
        return estimated_seconds(name)


def test_four_kinetics_size_models_never_run_on_the_card_ask_for_tens_of_seconds():
    z = G.ZeroGpu(_Card(), lambda duration: lambda fn: fn)
    names = ["mvit_v2_s.k400", "mvit_v1_b.k400", "vivit_b_16x2.k400", "hvt_s_1.in1k"]
    methods = ["attention", "rollout", "grad_rollout"]  # a gradient method: the page's leads may need one
    windows = dict.fromkeys(names, 3)
    kept, refused = z.fit(names, methods, windows)
    assert kept == names and not refused
    seconds = G.asked(sum(z.expected(n, methods, 3) for n in names))
    assert 20 <= seconds <= 60, seconds
    assert G.asked(sum(z.expected(n, ["attention"], 1) for n in names)) < seconds


def test_start_up_on_zerogpu_builds_the_models_and_spends_no_gpu_call(zero, clip):
    service, log = zero
    done = lens.startup.run(service, names=SYNTH[:2], clip=clip)
    assert done == dict.fromkeys(SYNTH[:2], "built") and not calls(log), (
        "no warm-up call: it would spend quota"
    )
    assert set(SYNTH[:2]) <= set(service.models.loaded())
