"""Panel notes: the sink caption on the map that peaks at a sink, and methods that lose to the centre
baseline, from the evaluation file; the shipped file marks mvit_t.synth's corner in the app's panels."""

from __future__ import annotations

import json

import pytest

import lens
from lens.core.records import VolumeKey
from lens.explain import sinks as N
from lens.render.captions import notes
from tests.test_app import make_moving_square

CORNER = {
    "map_index": 5,
    "stage": 2,
    "block": 5,
    "view": None,
    "key": 64,
    "cell": [3, 3, 3],
    "rate": 0.53,
    "share": 0.065,
    "uniform": 1 / 64,
    "padded": True,
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_moving_square(tmp_path_factory.mktemp("clips") / "square.mp4", frames=32, size=112)


@pytest.fixture(scope="module")
def analysis(tmp_path_factory, clip):
    service = lens.Service("cpu", out_dir=tmp_path_factory.mktemp("out"))
    return service, service.analyse(clip, ["mvit_t.synth"], ["attention", "rollout", "saliency"])


def _write(tmp_path, entry: dict):
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps({"mvit_t.synth": entry}))
    return path


def test_sink_caption_and_lost_baseline(tmp_path, analysis):
    _, a = analysis
    result = a.results[0]
    path = _write(
        tmp_path,
        {
            "n": 200,
            "sinks": [CORNER],
            "token_pointing_game": {"saliency": 0.1, "center": 0.4, "rollout": 0.7},
            "loses_to_center": {"saliency": True, "rollout": False},
        },
    )
    N.mark(result.output, "mvit_t.synth", path)
    assert result.output.sinks == {5: (64,)}
    said = notes(result, VolumeKey("attention", 2), path)
    assert len(said) == 1
    assert "bottom-right corner of the last time step" in said[0] and "padding sink" in said[0]
    assert "zero-padded corner of the key pooling" in said[0] and "53%" in said[0]
    assert notes(result, VolumeKey("attention", 0), path) == []  # a stage without a sink says nothing
    assert "sink" in notes(result, VolumeKey("rollout"), path)[0]
    lost = notes(result, VolumeKey("saliency"), path)
    assert lost and "0.10 vs the centre baseline's 0.40" in lost[0]
    assert notes(result, VolumeKey("attention", 2), tmp_path / "missing.json") == []


def test_the_app_panel_showing_the_mvit_corner_carries_the_caption(analysis):
    """The shipped evaluation (mvt/assets/evaluation.synth.json) names mvit_t.synth's padding corner."""
    assert any(s.cell == (3, 3, 3) and s.padded for s in N.sinks_of("mvit_t.synth"))
    service, a = analysis
    last = lens.Display("attention", None)
    (panel,) = service.render(a, last)
    assert panel.key == VolumeKey("attention", 2)
    assert any("padding sink" in n for n in panel.captions)
    (first,) = service.render(a, lens.Display("attention", 0))
    assert not any("sink" in n for n in first.captions)
