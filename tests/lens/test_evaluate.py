"""SynthMotion evaluation: accuracy + pointing game per model, as a table and as JSON-ready numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lens.evaluate import METHODS, evaluate_models, format_table, main
from mvt import synth


def test_each_clip_is_explained_once_per_model(monkeypatch):
    import lens.dataset.rows as rows

    calls = []
    explain = rows._explanations
    monkeypatch.setattr(rows, "_explanations", lambda *a, **k: calls.append(1) or explain(*a, **k))
    results = evaluate_models(["hvt_t.untrained"], n=2, seed=5, faithfulness_n=1, steps=2)
    assert len(calls) == 2, "the faithfulness clip reuses its pointing-game explanations"
    assert set(results["hvt_t.untrained"]["deletion_auc"]) == set(METHODS) | {"oracle"}


def test_the_output_is_what_evaluate_printed_before_it_ran_on_lens_dataset(capsys):
    """tests/lens/data/evaluate_before_dataset.json holds the JSON and the table the loop-per-clip
    implementation printed (commit 5993bb3, one torch thread): the report over lens.dataset gives the same
    numbers (all but the timing) in the same layout."""
    before = json.loads((Path(__file__).parent / "data" / "evaluate_before_dataset.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float sums depend on the thread count; the reference used one thread
    try:
        args = ["--models", "hvt_t.synth", "mmvit_t.synth", "--n", "6", "--seed", "3"]
        args += ["--faithfulness-n", "2", "--steps", "3"]
        assert main([*args, "--json"]) == 0
        now = json.loads(capsys.readouterr().out)
    finally:
        torch.set_num_threads(threads)
    for r in now.values():
        assert r.pop("seconds_per_clip") > 0
    expected = before["results"]
    for r in expected.values():
        del r["seconds_per_clip"]
    assert list(now) == list(expected) and all(list(now[m]) == list(expected[m]) for m in now), (
        "same keys, order"
    )
    assert _flat(now).keys() == _flat(expected).keys()
    for key, value in _flat(expected).items():
        assert _flat(now)[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
    for m in now:
        now[m]["seconds_per_clip"] = 0.0
    assert format_table(now) == before["table"]


def _flat(d: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


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
