"""lens.ui.present and lens.ui.screens: what the app shows, decided in lens and tested without a browser — panels,
the timeline, the class a person picks, and a screen spelled out part by part."""

from __future__ import annotations

import numpy as np
import pytest

import lens
from lens import present, timeline
from lens.core.request import class_index
from lens.ui.screens import AppState, Controls
from tests.test_app import make_moving_square

SMALL = ["mvit_t.untrained", "hvt_t.untrained"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_moving_square(tmp_path_factory.mktemp("logic") / "square.mp4", seed=31)


# -- jobs -----------------------------------------------------------------------------------------------------------


# -- model sets -----------------------------------------------------------------------------------------------------


# -- panels and the timeline ----------------------------------------------------------------------------------------


def test_panels_say_what_they_show_and_offer_what_their_model_can_give(tmp_path, clip):
    svc = lens.Service(out_dir=tmp_path / "out")
    a = svc.analyse(clip, SMALL, ["rollout"])
    url = lambda p: f"files/{p.name}"  # noqa: E731
    controls = Controls("attention", stages=(2, None), heads=("head 2", None))
    panels = svc.render(a, controls.displays(AppState(names=tuple(SMALL))))
    mvit, hvt = (present.panel_screen(p, i, url, svc.labels(p.name)) for i, p in enumerate(panels))
    assert mvit.stage == 2 and [v for _, v in mvit.stages] == [1, 2, 3] and mvit.head == "head 2"
    assert "head 2 of 2" in mvit.html and f"files/{panels[0].frames.name}" in mvit.html
    assert hvt.heads == [] and hvt.stage == 5 and "no CLS token" in hvt.html
    assert "untrained weights" in mvit.title and mvit.klass == mvit.classes[0]
    assert mvit.download == panels[0].overlay
    rolled = present.panel_screen(svc.render(a, lens.Display("rollout"))[0], 0, url)
    assert rolled.stages == [] and rolled.heads == [], "rollout is not per stage and takes no heads"
    line = present.timeline(panels, a.clip)
    windows = sum(len(p.windows) for p in panels)
    assert windows == 4 and all(len(p.windows) == 2 for p in panels), "a 2 s clip: two windows per model"
    assert line.count("<polyline") == windows, "a line per window: none across what a model did not see"
    assert (
        line.count('class="mvt-win"') == windows and 'data-testid="timeline"' in line and "square.mp4" in line
    )
    assert 'class="mvt-timeline mvt-folded"' in line, "several windows: their rows shown, the curves folded"
    assert line.index('class="mvt-windows"') < line.index('class="mvt-fold-body"')
    assert timeline.lane_px(4) == 10 and timeline.lane_px(8) * 8 + 7 <= timeline.WINDOW_LANES_PX
    waiting = present.pending("hvt_t.untrained", 1)
    assert "mvt-pending" in waiting.html and "untrained" in waiting.title
    summary = present.summary(a, panels, svc.labels)
    shown = summary["models"][0]["shown"]
    assert {k: shown[k] for k in ("method", "stage", "class_index")} == {
        "method": "attention",
        "stage": 1,
        "class_index": a.results[0].target,
    }
    assert shown["class"] == svc.labels(SMALL[0])[a.results[0].target] and shown["class_dependent"] is False
    # every heat map has a colour bar: the colours of the overlay and the values at its ends
    assert 'class="mvt-colorbar"' in mvit.html and "percentile" in mvit.html
    lo, hi = panels[0].scale
    assert lo < hi and f'data-lo="{lo:.6g}"' in mvit.html
    assert "SynthMotion" in mvit.title, "the title names what the model knows (here: untrained, its labels)"


def test_frame_weights_are_shares_of_the_painted_explanation(tmp_path, clip):
    svc = lens.Service(out_dir=tmp_path / "out")
    r = svc.analyse(clip, SMALL[:1], ["attention"]).results[0]
    t = r.frames.shape[0]
    hot = np.zeros(r.frames.shape[:3], np.float32)
    hot[3] = 1.0
    w = timeline.frame_weights(r, lens.Volume(hot))
    assert w[3] == pytest.approx(1.0) and w.sum() == pytest.approx(1.0)
    flat = timeline.frame_weights(r, lens.Volume(np.ones(r.frames.shape[:3], np.float32)))
    np.testing.assert_allclose(flat, np.full(t, 1.0 / t))
    assert (
        timeline.sprite_grid(16) == (8, 2)
        and timeline.sprite_grid(3) == (3, 1)
        and timeline.sprite_grid(32) == (8, 4)
    )
    tiles = timeline.tile(np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3), columns=2)
    assert tiles.shape == (6, 4, 3) and (tiles[4:, 2:] == 0).all()


def test_a_class_typed_or_picked_is_understood():
    labels = ("abseiling", "air drumming", "answering questions")
    assert class_index("Air Drumming", labels) == 1
    assert class_index("class 2", labels) == 2 and class_index("0", labels) == 0
    assert class_index("juggling", labels) is None and class_index("class 9", labels) is None
    assert (
        present.class_method("attention") == "grad_rollout"
        and present.class_method("rollout") == "grad_rollout"
    )
    assert present.class_method("saliency") == "saliency" and present.class_method("occlusion") == "occlusion"


# -- uploads, examples, folders -------------------------------------------------------------------------------------


def test_a_screen_is_spelled_out_part_by_part_and_inputs_are_read_by_name(tmp_path):
    from lens.ui.screens import KEEP, Choices, PanelScreen, Screen, asked, part_names, parts

    shown = PanelScreen("m", "### m", "<div/>", stages=[("stage 1", 1)], stage=1, heads=[], download=None)
    screen = Screen(banner="broken.mp4 is not a video", panels=(shown, None), show=Choices("rollout"))
    out = parts(screen, lambda sprite: "frames")
    assert out["banner"]["visible"] and "broken.mp4" in out["banner"]["value"]
    assert out["stage_0"] == {"choices": [("stage 1", 1)], "value": 1, "visible": True}
    assert out["heads_0"]["visible"] is False, "no head choices: no control"
    assert out["column_1"] == {"visible": False} and out["title_1"] == {"value": ""}
    assert out["show"] == {"value": "rollout"} and "state" not in out, "KEEP leaves a part as it is"
    assert set(out) == {"banner", "show", *part_names("panels", 2)}
    assert Screen().changes() == {} and KEEP is Screen().state
    assert part_names("truth", 4) == ["truth", "truth_column"] and part_names("strips", 2) == [
        "strip_0",
        "strip_1",
    ]
    named = {
        "state": None,
        "show": "attention",
        "opacity": 0.5,
        "colormap": "gray",
        "stage_0": 2,
        "heads_0": "max",
    }
    named |= {"stage_1": None, "heads_1": None, "klass_1": "jumping"}
    got = asked(named)
    assert got == {
        "state": None,
        "klass": "jumping",
        "controls": Controls("attention", 0.5, "gray", (2, None), ("max", None)),
    }
    displays = got["controls"].displays(AppState(names=("a", "b"), override=((1, "saliency"),)))
    assert [(d.method, d.stage, d.head) for d in displays] == [
        ("attention", 1, "max"),
        ("saliency", None, "mean"),
    ]
    state = AppState(names=("a", "b"), show="attention", override=((1, "saliency"),))
    assert state.showing("attention") is state and state.showing("rollout").override == ()


def test_titles_name_what_each_model_knows():
    assert present.vocabulary("mvit_v2_s.k400") == "Kinetics-400 · 400 actions"
    assert present.vocabulary("mvit_t.synth") == "SynthMotion · 8 synthetic motions"
    assert present.vocabulary("hvt_s_1.in1k").startswith("ImageNet") and "per frame" in present.vocabulary(
        "hvt_s_1.in1k"
    )
    assert present.vocabulary("mvit_t.untrained").startswith("untrained")
    assert "Kinetics-400 · 400 actions" in present.pending("mvit_v2_s.k400", 0).title


def test_synthmotion_models_on_a_real_clip_say_they_know_only_eight_motions(tmp_path, clip):
    svc = lens.Service(out_dir=tmp_path / "out")
    real = svc.analyse(clip, ["mvit_t.synth"], [])
    note = present.synthetic_notice(real, "downloads 1.1 GB on first use")
    assert note is not None and "only eight synthetic motions" in note.text
    assert note.offer and "Kinetics-400" in note.offer and "1.1 GB" in note.offer
    offline = present.synthetic_notice(
        real, "unavailable here: its weights are not cached and MVT_OFFLINE is set"
    )
    assert offline.offer is None and "MVT_OFFLINE" in offline.text, "offline: says why it is not offered"
    example = next(e for e in lens.examples.available() if e.file == "synth_grow.mp4")
    assert present.synthetic_notice(svc.analyse(example.path, ["mvit_t.synth"], []), "ready") is None
    assert present.synthetic_notice(svc.analyse(clip, ["mvit_t.untrained"], []), "ready") is None, (
        "untrained models learnt nothing: the untrained label says so already"
    )


def test_a_class_explained_is_named_by_show_and_a_leftover_control_value_is_ignored():
    from lens.core.records import AnalysisRef

    ref = AnalysisRef.__new__(AnalysisRef)
    state = AppState(names=("a", "b", "c"), show="attention", override=((2, "rollout"),))
    new = state.explained(1, "grad_rollout", ref, "grow")
    assert new.show == "grad_rollout" and new.method_of(1) == "grad_rollout"
    assert new.method_of(0) == "attention" and new.method_of(2) == "rollout", (
        "the others keep what they showed"
    )
    assert new.class_of(1) == "grow" and new.class_of(0) is None
    # a stage value left over from a per-stage method, with a method that has no stages: not used, no error
    d = Controls("rollout", stages=("3", None, None), heads=("head 9", None, None)).displays(state)
    assert d[0].method == "rollout" and d[2].method == "rollout"
    assert Controls("attention", stages=("x",)).displays(AppState(names=("a",)))[0].stage is None


def test_sink_keys_are_hidden_from_attention_views_unless_asked_for(tmp_path, clip):
    svc = lens.Service(out_dir=tmp_path / "out")
    a = svc.analyse(clip, ["mvit_t.synth"], ["attention"])
    r = a.results[0]
    last = max(k.stage for k in r.volumes if k.method == "attention")
    amap = __import__("viz").stage_map(r.output, last)
    sinks = r.output.sinks_of(amap)
    assert sinks, "mvit_t.synth has a measured sink at its last stage (assets/evaluation.synth.json)"
    hidden, shown = (svc.render(a, lens.Display("attention", sinks=s))[0] for s in (False, True))
    assert hidden.sinks == shown.sinks == tuple(sinks)
    assert hidden.scale != shown.scale or hidden.frames != shown.frames, "hiding changes the picture"
    url = lambda p: p.name  # noqa: E731
    assert "hidden" in present.panel_screen(hidden, 0, url).html
    assert "Showing a sink key" in present.panel_screen(shown, 0, url).html
    assert shown.weights != hidden.weights or shown.frames != hidden.frames
