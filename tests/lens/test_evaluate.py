"""SynthMotion evaluation: accuracy + pointing game per model, as a table and as JSON-ready numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import mvt
from lens.evaluate import METHODS, evaluate_models, format_table, score_clips
from mvt import synth


def test_score_clips_on_a_real_model():
    model = mvt.create_model("hvt_t.untrained")
    spec = model.spec
    batch = synth.generate(2, 3, frames=spec.num_frames, size=spec.crop_size)
    scores = score_clips(model, batch)
    hits = scores["hits"]
    assert set(hits["pixel"]) == set(hits["token"]) == set(METHODS) and scores["preds"].shape == (2,)
    for measure in ("pixel", "token", "ceiling_token", "ceiling_pixel"):
        for values in hits[measure].values():
            assert len(values) == 2 and all(v in (0.0, 1.0) for v in values)
    assert all(0.0 < v <= 1.0 for vs in hits["chance"].values() for v in vs)
    assert set(hits["flow"]) == {"rollout", "grad_rollout", "last_stage"}
    assert all(-1.0 <= v <= 1.0 for vs in hits["flow"].values() for v in vs)
    assert scores["faithfulness"] == {} and sum(scores["seconds"].values()) > 0


def test_each_clip_is_explained_once(monkeypatch):
    import lens.evaluate as ev

    calls = []
    explain = ev._explain
    monkeypatch.setattr(ev, "_explain", lambda *a, **k: calls.append(1) or explain(*a, **k))
    model = mvt.create_model("hvt_t.untrained")
    batch = synth.generate(3, 5, frames=model.spec.num_frames, size=model.spec.crop_size)
    faith = score_clips(model, batch, faithfulness_n=2, steps=3)["faithfulness"]
    assert len(calls) == 3, "the faithfulness clips reuse their pointing-game explanations"
    assert set(faith["deletion_auc"]) == set(METHODS) | {"oracle"}


def test_evaluate_models_reports_every_method_and_formats():
    results = evaluate_models(["hvt_t.untrained"], n=2, seed=1, faithfulness_n=1, steps=4)
    r = results["hvt_t.untrained"]
    assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["shuffled_accuracy"] <= 1.0
    for key in ("pointing_game", "token_pointing_game", "chance", "ceiling", "seconds"):
        assert set(r[key]) == set(METHODS), key
    assert all(0.0 <= v <= 1.0 or math.isnan(v) for v in r["token_pointing_game"].values())
    assert all(set(c) == {"token", "pixel"} for c in r["ceiling"].values())
    assert r["ceiling"]["saliency"] == {"token": 1.0, "pixel": 1.0}  # pixel maps: any voxel of the mask
    assert set(r["flow_correlation"]) == {"rollout", "grad_rollout", "last_stage"}
    for key in ("deletion_auc", "insertion_auc"):
        assert set(r[key]) == set(METHODS) | {"oracle"}, "methods and the random/center/oracle baselines"
        assert all(0.0 <= v <= 1.0 for v in r[key].values())
    assert isinstance(r["deletion_valid"], bool) and r["deletion_gap"] == pytest.approx(
        r["deletion_auc"]["random"] - r["deletion_auc"]["oracle"]
    )
    assert set(r["loses_to_center"]) == set(METHODS) - {"center", "random"}
    assert r["sinks"] == [], "untrained weights are not probed for sinks"
    assert r["faithfulness_n"] == 1 and r["seconds_per_clip"] > 0
    json.dumps(results)
    table = format_table(results)
    assert "hvt_t.untrained" in table and "del AUC" in table and "PG token" in table
    assert (
        len(table.splitlines()) == 2 + 1 + len(METHODS) + 1 + 1
    )  # header, rule, model, methods, oracle, note


def test_center_bias_is_a_real_baseline():
    # The actor is anywhere in the frame: a centred blob hits it sometimes, not always.
    batch = synth.generate(40, 0, frames=4, size=48)
    import viz

    hits = [viz.pointing_game(viz.center_bias(m.shape), m) for m in batch.masks]
    assert 0.0 < np.mean(hits) < 0.8
