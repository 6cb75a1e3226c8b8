"""Fair sharing in the service: every model-running path takes its turn in the one compute slot
(lens.core.slot), a full queue is a sentence naming how many are ahead, never a timeout.

The slot is held by a ticket of "another visitor" and released by the test; the work is fake (a recorded call),
so nothing here depends on timing."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import lens
from lens.core.request import ClipInfo, Request
from lens.core.slot import Busy
from lens.service import service as service_module
from lens.ui.actions import Actions
from lens.ui.screens import Controls
from tests.test_app import make_moving_square

CLIP = ClipInfo("c.mp4", "0" * 64, 1.0, 8.0, 4, 4)


def made_up(name: str) -> lens.ModelResult:
    return lens.ModelResult(
        name, "made up", False, np.zeros((2, 4, 4, 3), np.uint8), np.zeros(2), 1.0, [], 0, None
    )


def _until(condition, what: str) -> None:
    done = threading.Event()
    for _ in range(2000):
        if condition():
            return
        done.wait(0.005)
    raise AssertionError(f"never: {what}")


def test_faithfulness_waits_its_turn_behind_another_visitor(tmp_path, monkeypatch):
    svc = lens.Service(out_dir=tmp_path / "out")
    scored: list[str] = []
    monkeypatch.setattr(service_module, "score_result", lambda model, r, **kw: scored.append(r.name) or {})
    monkeypatch.setattr(svc.models, "get", lambda name, precision="fp32": object())
    said: list[str] = []
    other = svc.compute_slot.enter("another visitor")  # a Compare running
    analysis = lens.Analysis(Request(CLIP, ("a", "b")), [made_up("a"), made_up("b")])
    t = threading.Thread(target=svc.faithfulness, args=(analysis,), kwargs={"progress": lambda f, w: said.append(w), "who": "me"})  # fmt: skip
    t.start()
    _until(lambda: said, "faithfulness said it waits")
    assert scored == [] and "a: waiting for the compute slot, 1 ahead of you" in said[0]
    svc.compute_slot.leave(other)
    t.join(10)
    assert scored == ["a", "b"] and svc.compute_slot.held() == 0


def test_deferred_maps_wait_until_no_visitor_waits(tmp_path):
    svc = lens.Service(out_dir=tmp_path / "out")
    done: list[str] = []

    class Pending:
        ready, name = False, "deferred"

        def materialise(self):
            done.append("maps")

    other = svc.compute_slot.enter("a visitor")
    future = svc.warm([Pending()])
    _until(lambda: svc.compute_slot.order() == ["deferred maps"], "the deferred maps queued")
    waiting = svc.compute_slot.enter("a second visitor")  # arrives later, served first
    assert svc.compute_slot.order() == ["a second visitor", "deferred maps"]
    svc.compute_slot.leave(other)
    assert waiting.granted.is_set() and done == []
    svc.compute_slot.leave(waiting)
    future.result(10)
    assert done == ["maps"]
    svc.close()


def test_a_full_queue_is_a_sentence_with_the_count_ahead(tmp_path):
    svc = lens.Service(out_dir=tmp_path / "out", max_waiting=1)
    held, queued = svc.compute_slot.enter("x"), svc.compute_slot.enter("y")
    with pytest.raises(Busy, match="busy, 2 ahead of you"):
        svc.run(Request(CLIP, ()), [], lambda f, w: None, who="me")
    clip = make_moving_square(tmp_path / "c.mp4", seed=3)
    actions = Actions(svc, str)
    screens = list(
        actions.compare(clip=str(clip), models=["hvt_t.untrained"], controls=Controls(), session="me")
    )
    assert "The server is busy, 2 ahead of you" in screens[-1].banner, screens[-1].banner
    assert "Traceback" not in screens[-1].banner
    svc.compute_slot.leave(queued), svc.compute_slot.leave(held)
    svc.close()
