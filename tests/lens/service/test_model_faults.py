"""A model that raises, one whose scores are NaN, one whose map is NaN: each says so in its own panel, and
the other models of the same request finish and draw."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import lens
import mvt
from lens.core.cache import build_model
from lens.ui import present
from tests.test_app import make_moving_square

GOOD, BAD = "mvit_t.untrained", "hvt_t.untrained"


def _broken(how: str):
    """A builder whose ``BAD`` model raises or returns NaN scores, on both paths (fast and with maps)."""

    def build(name: str, device: torch.device):
        model = build_model(name, device)
        if name != BAD:
            return model
        fast, full = model.forward, model.forward_with_attention

        def poison(logits: torch.Tensor) -> torch.Tensor:
            if how == "raises":
                raise RuntimeError("CUDA error: an illegal memory access was encountered (test)")
            return torch.full_like(logits, float("nan"))

        model.forward = lambda x: poison(fast(x))
        model.forward_with_attention = lambda x, **k: dataclasses.replace(
            out := full(x, **k), logits=poison(out.logits)
        )
        return model

    return build


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_moving_square(tmp_path_factory.mktemp("faults") / "clip.mp4", frames=16, size=64, seed=13)


def _slots(svc: lens.Service, analysis, view: lens.Display) -> list[present.PanelScreen]:
    url = lambda p: f"gradio_api/file={p}"  # noqa: E731
    return [
        present.panel_screen(p, i, url, svc.labels(p.name)) for i, p in enumerate(svc.render(analysis, view))
    ]


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("raises", "hvt_t.untrained failed (RuntimeError: CUDA error: an illegal memory access"),
        ("nan", "hvt_t.untrained gave scores that are not numbers (NaN or infinity) on this clip"),
    ],
)
def test_a_broken_model_says_so_in_its_panel_and_the_others_finish(tmp_path, clip, how, said):
    svc = lens.Service(out_dir=tmp_path / "out", builder=_broken(how))
    analysis = svc.analyse(clip, [BAD, GOOD], ["rollout"])
    bad, good = analysis.entries
    assert isinstance(bad, lens.ModelError) and said in bad.message, bad
    assert isinstance(good, lens.ModelResult) and np.isfinite([p for _, p in good.top5]).all()
    broken, fine = _slots(svc, analysis, lens.Display("attention"))
    assert 'data-error="1"' in broken.html and said.split(" (")[0] in broken.html
    assert "data-error" not in fine.html and "background-image" in fine.html
    assert svc.export(analysis).is_file(), "the export holds what there is"


def test_a_map_of_nan_says_so_in_its_panel_and_the_other_views_draw(tmp_path, clip):
    svc = lens.Service(out_dir=tmp_path / "out")
    analysis = svc.analyse(clip, [BAD, GOOD], ["rollout"])
    bad = analysis.entries[0]
    key = next(k for k in bad.volumes if k.method == "rollout")
    bad.volumes[key] = dataclasses.replace(
        bad.volumes[key], values=np.full_like(bad.volumes[key].values, np.nan)
    )
    broken, fine = _slots(svc, analysis, lens.Display("rollout"))
    assert 'data-error="1"' in broken.html and "values that are not numbers" in broken.html
    assert "data-error" not in fine.html
    again, _ = _slots(svc, analysis, lens.Display("attention"))
    assert "data-error" not in again.html, "the model's other maps still draw"
    assert mvt.get_spec(BAD)  # unchanged registry
