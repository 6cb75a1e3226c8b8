"""lens.explain.evidence: the method a model leads with is the one whose score depends most on its trained
weights (not the one with the highest score), said in one line; a family's evaluated model stands in for
models the evaluation does not cover, and says so."""

from __future__ import annotations

import json

import pytest

from lens.explain.evidence import evidence, lead, lead_method, measured_as

NaN = float("nan")


def _entry(trained: dict, random: dict, shows: dict, deletion: dict) -> dict:
    return {
        "n": 40,
        "token_pointing_game": {**trained, "center": 0.35, "random": 0.04},
        "deletion_auc": {**deletion, "random": 0.5, "center": 0.4, "oracle": 0.2},
        "deletion_valid": True,
        "loses_to_center": {m: v < 0.35 for m, v in trained.items()},
        "randomised": {"whole": {"token_pointing_game": random}},
        "shows_input": shows,
    }


@pytest.fixture
def path(tmp_path):
    table = {
        "mvit_t.synth": _entry(
            {"token_flow": 0.8, "last_stage": 0.9, "grad_rollout": 0.85, "saliency": 0.1},
            {"token_flow": 0.3, "last_stage": 0.9, "grad_rollout": 0.7, "saliency": 0.1},
            {"token_flow": False, "last_stage": True, "grad_rollout": False, "saliency": True},
            {"token_flow": 0.2, "last_stage": 0.3, "grad_rollout": 0.25, "saliency": 0.45},
        ),
        "hvt_t.synth": _entry(
            {"token_flow": 0.95, "rollout": 0.9},
            {"token_flow": 0.7, "rollout": 0.2},
            {"token_flow": False, "rollout": False},
            {"token_flow": 0.2, "rollout": 0.6},  # rollout deletes worse than random: not a lead
        ),
    }
    p = tmp_path / "evaluation.json"
    p.write_text(json.dumps(table))
    return p


def test_the_lead_is_the_largest_gap_over_random_weights_not_the_highest_score(path):
    e = lead("mvit_t.synth", path)
    assert e.method == "token_flow" and e.gap == pytest.approx(0.5), (
        "last_stage scores 0.9, but so do random weights"
    )
    assert e.line() == (
        "Token flow points at the actor on 80% of SynthMotion clips, 30% with random weights; "
        "centre baseline 35% (n = 40)."
    )
    assert lead("hvt_t.synth", path).method == "token_flow", "rollout's bigger gap fails deletion vs random"


def test_a_method_as_good_with_random_weights_shows_the_input(path):
    e = evidence("mvit_t.synth", "attention", path)
    assert e.shows_input and e.input_line() == (
        "With random weights attention points at the actor as often (90% vs 90%): it shows the input, not the model."
    )
    assert evidence("mvit_t.synth", "token_flow", path).input_line() is None


def test_models_outside_the_evaluation_read_their_family_and_say_so(path):
    assert measured_as("mvit_v2_s.k400", path) == "mvit_t.synth" == measured_as("mvit_t.untrained", path)
    e = lead("mvit_v2_s.k400", path)
    assert e.method == "token_flow" and not e.same_model
    assert e.line().startswith("Not measured for this model; on mvit_t.synth (same family) token flow points")
    assert measured_as("vivit_b_16x2.k400", path) is None and lead("vivit_b_16x2.k400", path) is None
    assert lead_method("vivit_b_16x2.k400", path) == "attention", "nothing measured: the fast view"


def test_the_shipped_evaluation_leads_every_family_with_a_measured_method():
    for name in ("mvit_t.synth", "mmvit_t.synth", "vivit_t1.synth", "hvt_t.synth", "mvit_v2_s.k400"):
        e = lead(name)
        assert e is not None and e.trained > e.centre and (e.deletion_vs_random or 0) >= 0, name
