"""lens.core.request: the request values once, its result keys derived from it, both plain and picklable; a
model's result crosses a process boundary whole (what a ZeroGPU worker sends back)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import lens
from lens.core.request import ClipInfo, LensError, Request, ResultKey, class_index, start_time
from tests.test_app import make_moving_square


def test_a_request_holds_its_values_once_and_derives_its_keys():
    clip = ClipInfo("c.mp4", "ab" * 32, 2.0, 12.0, 96, 96, path="/tmp/c.mp4")
    options = {"rollout": {"view": 0}, "saliency": {"abs": True}}
    r = Request.of(clip, ["a.x", "b.y"], ("attention", "rollout"), start_s=0.5, target=3, options=options)
    assert r.key("a.x") == ResultKey("ab" * 32, "a.x", 0.5, ("attention", "rollout"), 3, r.options, "fp32")
    assert r.keys == (r.key("a.x"), r.key("b.y")) and r.option_map == options
    assert Request.of(clip, ["a.x"], options=dict(reversed(options.items()))).options == r.options, "sorted"
    assert r.only("b.y").models == ("b.y",) and r.only("b.y").key("b.y") == r.key("b.y")
    assert pickle.loads(pickle.dumps(r)) == r and hash(r.key("a.x")) == hash(
        pickle.loads(pickle.dumps(r.key("a.x")))
    )
    assert ClipInfo("c.mp4", "ab" * 32, 2.0, 12.0, 96, 96, path="elsewhere") == clip, (
        "the path is not identity"
    )


def test_a_persons_text_becomes_request_values():
    assert start_time("") is None and start_time(None) is None and start_time("0") is None
    assert start_time("1.5") == 1.5 and start_time(2) == 2.0
    with pytest.raises(LensError, match="not a number of seconds"):
        start_time("soon")
    labels = ("abseiling", "air drumming")
    assert class_index("AIR drumming", labels) == 1 and class_index("class 0", labels) == 0
    assert class_index("", labels) is None and class_index("5", labels) is None


def test_an_eager_result_pickles_whole(tmp_path):
    svc = lens.Service(out_dir=tmp_path / "out", defer=False)  # as under ZeroGPU: nothing left pending
    clip = make_moving_square(tmp_path / "p.mp4", seed=2)
    (r,) = svc.analyse(clip, ["hvt_t.untrained"], ["attention", "rollout"]).results
    back = pickle.loads(pickle.dumps(r))
    assert back.top5 == r.top5 and back.target == r.target and list(back.volumes) == list(r.volumes)
    for k in r.volumes:
        np.testing.assert_array_equal(back.volumes[k].values, r.volumes[k].values)
    back._add_timing("later", 1.0)  # its lock came back too
    assert back.timings["later"] == 1.0 and back.ready
    svc.close()
