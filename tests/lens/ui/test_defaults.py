"""lens.ui.defaults: the two model sets, the default one (network and caches decide), every model's label."""

from __future__ import annotations

import mvt
from lens import defaults


def test_model_sets_and_the_default_follow_network_and_cache(monkeypatch):
    assert defaults.set_models(defaults.KINETICS) == list(defaults.KINETICS_SET)
    synth = defaults.set_models(defaults.SYNTHMOTION)
    assert synth == defaults.default_models() and all(n.endswith(".synth") for n in synth)
    assert defaults.set_of(list(reversed(synth))) == defaults.SYNTHMOTION
    assert defaults.set_of(synth[:2]) == defaults.CUSTOM and defaults.set_models(defaults.CUSTOM) == []
    monkeypatch.setenv("MVT_OFFLINE", "1")
    assert defaults.default_set(probe=False) == defaults.SYNTHMOTION
    monkeypatch.delenv("MVT_OFFLINE")
    monkeypatch.setattr(
        defaults, "weights_status", lambda name, probe=True: mvt.weights.Status("downloadable", 100 * 2**20)
    )
    assert defaults.default_set(probe=True) == defaults.KINETICS, (
        "with network the real models are the default"
    )
    notes = defaults.availability(["mvit_v2_s.k400", "mvit_t.synth"])
    assert notes == ["mvit_v2_s.k400: Compare downloads 100 MB on first use (mvit_v2_s-ae3be167.pth)."]
    label = defaults.model_label("mmvit_s.k400init", "downloads 132 MB on first use")
    assert label.startswith("mmvit_s.k400init — downloads 132 MB on first use — not fine-tuned")
    assert "predicts exactly as MViT v2-S" in label
