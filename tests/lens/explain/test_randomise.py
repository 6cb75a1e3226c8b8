"""The model-randomisation sanity check: which weights each level re-draws, and that they are the family's own
initialisation (the whole-model level is exactly ``<arch>.untrained``)."""

from __future__ import annotations

import pytest
import torch

import lens
import mvt
from lens.explain.randomise import LEVELS, changed, chosen, execution_order, levels, randomised


def _x(model) -> torch.Tensor:
    s = model.spec
    return torch.randn(
        1, 3, s.num_frames, s.crop_size, s.crop_size, generator=torch.Generator().manual_seed(0)
    )


@pytest.fixture(scope="module")
def mvit():
    return mvt.create_model("mvit_t.synth")


def test_units_follow_execution_order_from_the_embedding_to_the_head(mvit):
    units = execution_order(mvit, _x(mvit))
    names = [u for u, *_ in units]
    assert names[0] == "conv_proj" and names[-1] == "head.1", "embedding first, classifier last"
    blocks = [u for u, _, block, _ in units if block]
    assert blocks == [f"blocks.{i}" for i in range(6)], "every block, in the order the forward runs them"
    owned = [p for *_, params in units for p in params]
    assert sorted(owned) == sorted(n for n, _ in mvit.named_parameters()), "every parameter in one unit"


def test_each_level_redraws_the_top_of_the_model_and_keeps_the_rest(mvit):
    x = _x(mvit)
    top = set(changed(mvit, randomised(mvit, "top_block", x)))
    half = set(changed(mvit, randomised(mvit, "top_half", x)))
    whole = set(changed(mvit, randomised(mvit, "whole", x)))
    assert {"head.1.weight", "norm.weight"} <= top and any(p.startswith("blocks.5.") for p in top)
    assert not any(p.startswith(("blocks.4.", "blocks.0.", "conv_proj")) for p in top)
    assert top < half < whole, "a cascade: each level re-draws what the one before did, and more"
    assert any(p.startswith("blocks.3.") for p in half) and not any(p.startswith("blocks.2.") for p in half)
    assert whole == {n for n, _ in mvit.named_parameters()}
    assert randomised(mvit, "whole", x) is randomised(mvit, "whole", x), "built once per model and level"
    assert torch.equal(mvit.head[1].weight, mvt.create_model("mvit_t.synth").head[1].weight), (
        "model untouched"
    )


def test_the_whole_model_level_is_the_untrained_model():
    trained = mvt.create_model("hvt_t.synth")
    twin = randomised(trained, "whole", _x(trained))
    untrained = mvt.create_model("hvt_t.untrained")
    for (name, a), b in zip(twin.named_parameters(), untrained.parameters()):
        assert torch.equal(a, b), name
    x = _x(trained)
    with torch.inference_mode():
        assert torch.equal(twin(x), untrained(x)) and not torch.allclose(twin(x), trained(x))


def test_a_cross_view_block_is_one_step_of_the_cascade():
    model = mvt.create_model("mmvit_t.synth")
    top = chosen(execution_order(model, _x(model)), "top_block")
    assert {p.split(".")[3] for p in top if p.startswith("cross.2.")} == {"0", "1"}, "both views of it"
    assert not any(p.startswith(("views.", "cross.1.")) for p in top)


def test_levels_are_named_and_checked():
    assert (
        levels(["all"]) == LEVELS
        and levels(["none"]) == ()
        and levels(["whole", "top_block"])
        == (
            "top_block",
            "whole",
        )
    )
    with pytest.raises(lens.LensError, match="unknown randomisation level 'bottom'"):
        levels(["bottom"])
