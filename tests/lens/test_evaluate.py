"""SynthMotion evaluation: accuracy + pointing game per model, as a table and as JSON-ready numbers."""

from __future__ import annotations

import json
import math

import numpy as np

import mvt
from lens.evaluate import METHODS, evaluate_models, format_table, score_clips
from mvt import synth


def test_score_clips_on_a_real_model():
    model = mvt.create_model("hvt_t.untrained")
    spec = model.spec
    batch = synth.generate(2, 3, frames=spec.num_frames, size=spec.crop_size)
    scores, preds, faith, seconds = score_clips(model, batch)
    assert set(scores) == set(METHODS) and preds.shape == (2,)
    for values in scores.values():
        assert len(values) == 2 and all(v in (0.0, 1.0) for v in values)
    assert faith == {} and seconds > 0, "no deletion / insertion unless asked for"


def test_each_clip_is_explained_once(monkeypatch):
    import lens.evaluate as ev

    calls = []
    explain = ev._explanations
    monkeypatch.setattr(ev, "_explanations", lambda *a, **k: calls.append(1) or explain(*a, **k))
    model = mvt.create_model("hvt_t.untrained")
    batch = synth.generate(3, 5, frames=model.spec.num_frames, size=model.spec.crop_size)
    _, _, faith, _ = score_clips(model, batch, faithfulness_n=2, steps=3)
    assert len(calls) == 3, "the faithfulness clips reuse their pointing-game explanations"
    assert set(faith["deletion_auc"]) == set(METHODS) | {"oracle"}


def test_evaluate_models_reports_every_method_and_formats():
    results = evaluate_models(["hvt_t.untrained"], n=2, seed=1, faithfulness_n=1, steps=4)
    r = results["hvt_t.untrained"]
    assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["shuffled_accuracy"] <= 1.0
    assert set(r["pointing_game"]) == set(METHODS) and r["n"] == 2
    assert all(0.0 <= v <= 1.0 or math.isnan(v) for v in r["pointing_game"].values())
    for key in ("deletion_auc", "insertion_auc"):
        assert set(r[key]) == set(METHODS) | {"oracle"}, "methods and the random/center/oracle baselines"
        assert all(0.0 <= v <= 1.0 for v in r[key].values())
    assert r["faithfulness_n"] == 1 and r["seconds_per_clip"] > 0
    json.dumps(results)
    table = format_table(results)
    assert "hvt_t.untrained" in table and "deletion AUC" in table
    assert len(table.splitlines()) == 2 + len(METHODS) + 1  # header, rule, a row per method + oracle


def test_center_bias_is_a_real_baseline():
    # The actor is anywhere in the frame: a centred blob hits it sometimes, not always.
    batch = synth.generate(40, 0, frames=4, size=48)
    import viz

    hits = [viz.pointing_game(viz.center_bias(m.shape), m) for m in batch.masks]
    assert 0.0 < np.mean(hits) < 0.8
