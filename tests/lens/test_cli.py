"""``python -m mvt list|probe|predict|explain|evaluate``: same flags and outputs, through lens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lens.cli import main
from tests.test_app import make_moving_square

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_moving_square(tmp_path_factory.mktemp("cli") / "clip.mp4", seed=9)


def test_python_m_mvt_is_the_lens_cli(clip):
    proc = subprocess.run(
        [sys.executable, "-m", "mvt", "probe", str(clip)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["num_frames"] == 24


def test_predict_prints_the_top5(clip, capsys):
    assert main(["predict", str(clip), "--models", "mvit_t.untrained"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mvit_t.untrained (untrained") and len(lines) == 6
    probs = [float(line.split()[0]) for line in lines[1:]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-3


def test_explain_writes_the_report_with_faithfulness(clip, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["explain", str(clip), "--models", "hvt_t.untrained", "--methods", "rollout", "--faithfulness"]
    assert main([*args, "--steps", "2", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    scores = report["faithfulness"]["hvt_t.untrained"]
    assert {"rollout", "random", "center", "attention_0"} <= set(scores)
    assert 0.0 <= scores["rollout"]["deletion_auc"] <= 1.0 and scores["rollout"]["pointing_game"] is None
    assert "deletion AUC" in (out / "report.html").read_text(encoding="utf-8")
    assert "total" in json.loads((out / "timings.json").read_text())["hvt_t.untrained"]


def test_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"no video here" * 40)
    assert main(["predict", str(bad), "--models", "mvit_t.untrained"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert main(["predict", str(bad), "--models", "nope_t.untrained"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_evaluate_is_forwarded(capsys):
    assert (
        main(["evaluate", "--models", "hvt_t.untrained", "--n", "1", "--faithfulness-n", "0", "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)["hvt_t.untrained"]
    assert result["n"] == 1 and "last_stage" in result["pointing_game"]
