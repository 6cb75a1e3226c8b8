"""``python app.py`` as a ZeroGPU Space runs it (``SPACES_ZERO_GPU=true``), with the ``spaces`` stand-in of
tests/zerogpu_stub on its path: every GPU call forks a worker and pickles its arguments and result both ways,
is logged with the seconds it asked for, and is refused over the quota. Driven through gradio_client on the
SynthMotion four-model set: Compare (/analyse), Explain class, faithfulness and export each succeed with at
most one GPU call, and the four-model Compare asks for at most 60 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_app import make_moving_square
from tests.test_app_exit import _wait_up

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT / "tests" / "zerogpu_stub"
SYNTH = ["mvit_t.synth", "mmvit_t.synth", "vivit_t1.synth", "hvt_t.synth"]
METHODS = ["attention", "rollout"]
COMPARE_LIMIT_S = 60
QUOTA_S = 240
"""The stand-in's quota for the whole session: four actions must fit in it."""


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(scope="module")
def zero_app(tmp_path_factory):
    """The app in its own process as on ZeroGPU; yields (url, call log), then stops it."""
    tmp = tmp_path_factory.mktemp("zerogpu-app")
    port, log = free_port(), tmp / "gpu-calls.jsonl"
    env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_SERVER_PORT": str(port), "MVT_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_NAME": "127.0.0.1", "SPACES_ZERO_GPU": "true",
           "SPACES_STUB_LOG": str(log), "SPACES_STUB_QUOTA": str(QUOTA_S),
           "PYTHONPATH": os.pathsep.join([str(STUB), str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    out = (tmp / "app.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        proc.stdout = (tmp / "app.log").open("rb")  # what _wait_up reads if the app exits
        _wait_up(f"http://127.0.0.1:{port}/", proc)
        yield f"http://127.0.0.1:{port}/", log, tmp / "app.log"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def test_the_app_imports_the_stand_in_and_every_action_is_at_most_one_gpu_call(zero_app, tmp_path):
    gradio_client = pytest.importorskip("gradio_client")
    url, log, app_log = zero_app
    client = gradio_client.Client(url, verbose=False)
    clip = gradio_client.handle_file(str(make_moving_square(tmp_path / "clip.mp4", seed=4)))
    asked: dict[str, list[dict]] = {}

    def action(name: str, **kw):
        before = len(_calls(log))
        answer = client.predict(clip=clip, **kw, api_name=f"/{name}")
        asked[name] = _calls(log)[before:]
        assert len(asked[name]) <= 1, f"{name}: {asked[name]}"
        assert all(c["ok"] for c in asked[name]), f"{name}: {asked[name]}\n{app_log.read_text()[-3000:]}"
        return answer

    compared = action("analyse", models=SYNTH, methods=METHODS)
    assert [m["name"] for m in compared["models"]] == SYNTH
    assert all(len(m["top5"]) == 5 and "rollout" in m["files"] for m in compared["models"])
    (compare,) = asked["analyse"]
    assert compare["duration"] <= COMPARE_LIMIT_S and compare["worker"]

    second = compared["models"][0]["top5"][1]["label"]
    explained = action("explain_class", model=SYNTH[0], klass=second)
    assert (
        explained["models"][0]["top5"][1]["label"] == second
        and "grad_rollout" in explained["models"][0]["files"]
    )
    assert len(asked["explain_class"]) == 1

    scores = action("faithfulness", models=SYNTH, methods=METHODS, steps=4)
    assert set(scores) == set(SYNTH) and all(
        {"rollout", "random", "center"} <= set(s) for s in scores.values()
    )
    assert len(asked["faithfulness"]) == 1, "the comparison is cached: only the scoring runs"

    with zipfile.ZipFile(action("export", models=SYNTH, methods=METHODS)) as z:
        assert {"report.json", "report.html", "timings.json"} <= set(z.namelist())
    assert asked["export"] == [], "an export of a cached comparison needs no GPU"

    seconds = {name: [c["duration"] for c in got] for name, got in asked.items()}
    print("ZeroGPU seconds asked per action:", seconds)  # the numbers README's deployment section quotes
    assert sum(sum(v) for v in seconds.values()) <= QUOTA_S
