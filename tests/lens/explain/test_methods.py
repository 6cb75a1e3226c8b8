"""The method registry, typed views and the default-model policy."""

from __future__ import annotations

import pytest
import torch

import lens
import mvt
from lens.explain import methods as M
from lens.ui.defaults import FAMILY_ORDER, default_models


def test_the_registry_is_the_one_list():
    assert list(M.METHODS) == [m.name for m in M.METHODS.values()]
    assert set(M.KINDS) == {m.kind for m in M.METHODS.values()}
    for m in M.METHODS.values():
        assert (m.attribution is not None) == (m.kind == "captum"), m.name
        assert callable(m.compute) and m.label
    assert [n for _, n in lens.method_choices()] == M.names(M.EXPLANATION_KINDS)
    assert not {"random", "center", "oracle"} & {n for _, n in lens.method_choices()}
    assert M.get("ig").name == "integrated_gradients"
    with pytest.raises(lens.LensError, match="unknown explanation method 'lrp'; known: attention, rollout"):
        M.get("lrp")
    with pytest.raises(ValueError, match="kind"):
        M.Method("x", "x", "magic", lambda inputs: {})


def test_normalise_brings_the_stage_attention_along_and_orders_by_registry():
    assert M.normalise([]) == ()
    assert M.normalise(["saliency", "rollout", "rollout"]) == ("attention", "rollout", "saliency")
    assert M.normalise(["ig"]) == ("attention", "integrated_gradients")


def test_volume_keys_and_labels():
    key = lens.VolumeKey("attention", 2)
    assert key.slug == "attention_2" and M.volume_label(key) == "stage 3"
    assert lens.VolumeKey("rollout").slug == "rollout"
    assert M.volume_label(lens.VolumeKey("rollout")) == M.METHODS["rollout"].label
    assert key == lens.VolumeKey("attention", 2) and len({key, lens.VolumeKey("attention", 2)}) == 1


def test_view_from_the_app_controls():
    assert lens.Display.from_controls("rollout", 4, "mean") == lens.Display("rollout", 3, "mean")
    assert lens.Display.from_controls("attention", None, "head 3").head == 2
    assert lens.Display.from_controls("attention", 1, "max") == lens.Display("attention", 0, "max")
    with pytest.raises(lens.LensError, match="heads"):
        lens.Display.from_controls("attention", 1, "most")
    assert lens.head_labels(2) == ["mean", "max", "head 1", "head 2"]


def test_compute_holds_the_lock_only_for_gradient_methods():
    class Lock:
        held = 0

        def __enter__(self):
            Lock.held += 1

        def __exit__(self, *exc):
            return False

    x = torch.zeros(1, 3, 2, 8, 8)
    seen: list[tuple[float, str]] = []
    vols, times = M.compute(
        None, x, None, ["random", "center"], target=0, lock=Lock(), progress=lambda f, w: seen.append((f, w))
    )
    assert set(vols) == {lens.VolumeKey("random"), lens.VolumeKey("center")} and Lock.held == 0
    assert vols[lens.VolumeKey("random")].values.shape == (2, 8, 8) and set(times) == {"random", "center"}
    assert seen[0][0] == 0.0 and seen[-1][0] == 1.0
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 2 * 8 * 8, 3))
    M.compute(
        model,
        x,
        None,
        ["saliency", "occlusion"],
        target=1,
        lock=Lock(),
        options={"occlusion": {"window": (3, 1, 4, 4)}},
    )
    assert Lock.held == 1, "saliency needs gradients (lock); occlusion only runs forwards"
    with pytest.raises(ValueError, match="ground-truth mask"):
        M.compute(None, x, None, ["oracle"], target=0)


def test_default_models_one_per_family_trained_first():
    names = default_models()
    families = [mvt.get_spec(n).family for n in names]
    assert families == [f for f in FAMILY_ORDER if f in families] and len(set(families)) == len(families)
    assert len(names) <= lens.MAX_MODELS
    assert all(n.endswith(".synth") for n in names), names  # shipped SynthMotion weights, found offline


def test_default_models_fall_back_to_small_untrained_and_take_new_families():
    available = ["mvit_v2_s.untrained", "mvit_t.untrained", "hvt_t.untrained", "hvt_s_1.in1k"]
    assert default_models(available) == ["mvit_t.untrained", "hvt_s_1.in1k"]
    assert default_models(available, max_models=1) == ["mvit_t.untrained"]
