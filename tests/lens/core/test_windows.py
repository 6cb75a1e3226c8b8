"""lens.core.windows: how many windows a model gets, what they cover, and how that is said ("the whole clip"
only when it is true)."""

from __future__ import annotations

import mvt
from lens.core.windows import (
    EVERY,
    WINDOW_BUDGET,
    Coverage,
    count_for,
    default_count,
    prediction_note,
    seen_note,
)


def test_the_budget_gives_small_models_several_windows_and_kinetics_models_one():
    assert WINDOW_BUDGET == 16 * 224 * 224
    assert default_count(mvt.get_spec("mvit_t.synth")) == 4
    assert {
        default_count(mvt.get_spec(n)) for n in ("mvit_v2_s.k400", "hvt_s_1.in1k", "vivit_b_16x2.k400")
    } == {1}
    spec = mvt.get_spec("hvt_t.synth")
    assert count_for(spec, None) == 4 and count_for(spec, EVERY) is None and count_for(spec, 2) == 2


def test_notes_say_whole_clip_only_when_the_windows_cover_it():
    frame = 1 / 30
    spread = Coverage(((0.0, 0.53), (3.1, 3.63), (6.37, 6.9), (9.47, 10.0)), 19, 10.0, "default", frame)
    assert not spread.whole and spread.seen_s == pytest_approx(2.12)
    assert prediction_note(spread) == "average of 4 windows over 0.00–10.00 s"
    assert seen_note(spread).startswith(
        "2.1 of 10.0 s seen in 4 evenly spaced windows; 19 windows would tile"
    )
    one = Coverage(((3.93, 6.07),), 5, 10.0, "default", frame)
    assert prediction_note(
        one
    ) == "one window, 3.93–6.07 s" and "one window is what this model affords" in seen_note(one)
    tiled = Coverage(tuple((i * 0.5, i * 0.5 + 0.53) for i in range(20)), 19, 10.0, "every", frame)
    assert tiled.whole and prediction_note(tiled).endswith("(the whole clip)") and seen_note(tiled) == ""
    short = Coverage(((0.0, 2.0),), 1, 2.0, "default", 0.125)
    assert short.whole and prediction_note(short) == "one window, 0.00–2.00 s (the whole clip)"
    start = Coverage(((2.0, 2.53),), 19, 10.0, "start", frame)
    assert "from the start time" in seen_note(start) and "whole clip" not in prediction_note(start)


def pytest_approx(v):
    import pytest

    return pytest.approx(v, abs=0.01)
