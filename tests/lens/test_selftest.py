"""``python -m mvt selftest``: the CPU run CI does (bf16 autocast vs fp32 through the app's service), and a
disagreement failing it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mvt
from lens import selftest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = mvt.list_models("*.synth")


def test_the_cpu_selftest_passes_on_every_shipped_model(tmp_path):
    """The exact command of CI, with its defaults: the seven shipped models (every family, ViViT's four
    factorisations), logits on 8 clips, one explanation method per kind of computation, the SynthMotion Compare."""
    out = tmp_path / "selftest.json"
    done = subprocess.run(
        [sys.executable, "-m", "mvt", "selftest", "--device", "cpu", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=3600,  # ~1 min on 2 quiet cores; 20 at load 14
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    assert (
        "Fidelity: PASS" in done.stdout and "GEMM: fp32" in done.stdout and "Compare, 4 models" in done.stdout
    )
    report = json.loads(out.read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert sorted(checks) == sorted(SHIPPED) and len(SHIPPED) == 7
    assert {mvt.get_spec(n).family for n in checks} == {"mvit", "mmvit", "vivit", "hvt"}
    assert report["methods"] == list(selftest.CHEAP_METHODS)
    for name, c in checks.items():
        assert c["held"] == "top-1 and maps" and c["clips"] == 8 and not c["failures"], (name, c)
        assert c["top1_agreement"] >= selftest.TOP1_MIN
        assert 0 < c["logit_max_abs"] < 1, "bf16 ran (logits differ) and stayed close"
        slugs = set(c["maps"])
        for method in selftest.CHEAP_METHODS:
            assert any(s == method or s.startswith(f"{method}_") for s in slugs), (name, method, slugs)
        assert min(c["maps"].values()) >= selftest.MAP_R_MIN
        assert c["ms_fp32"] > 0 and c["ms_bf16"] > 0
        assert f"- {name}: attention_0 " in done.stdout
    assert report["gemm_fp32"] > 0 and report["gemm_bf16"] > 0
    assert set(report["compare_s"]) == {"bf16 every panel", "bf16 + deferred maps", "fp32 every panel",
                                        "fp32 + deferred maps"}  # fmt: skip
    assert len(report["compare_models"]) == 4


def _flip_logits_under_autocast(monkeypatch) -> None:
    """Every model's fast path negates its logits under bf16 autocast: a precision bug the check must catch."""
    real = mvt.create_model

    def create(name, *args, **kwargs):
        model = real(name, *args, **kwargs)
        fast = model.forward

        def forward(x):
            y = fast(x)
            return -y if torch.is_autocast_enabled("cpu") else y

        model.forward = forward
        return model

    monkeypatch.setattr(mvt, "create_model", create)


def test_a_bf16_disagreement_fails_the_check_and_the_command(monkeypatch, capsys):
    _flip_logits_under_autocast(monkeypatch)
    args = [
        "--device",
        "cpu",
        "--models",
        "mvit_t.synth",
        "--clips",
        "4",
        "--methods",
        "attention",
        "--no-compare",
    ]
    assert selftest.main(args) == 1
    out = capsys.readouterr().out
    assert "Fidelity: FAIL" in out and "mvit_t.synth: bf16 top-1 agreement 0.000 < 0.99" in out
    assert "| mvit_t.synth | trained | top-1 and maps | 4 | 0.000 |" in out


def test_a_map_below_the_bar_fails_only_held_models(monkeypatch, capsys):
    monkeypatch.setattr(selftest, "correlation", lambda a, b: 0.5)
    report = selftest.run(
        "cpu", models=["hvt_t.synth", "hvt_t.untrained"], clips=2, methods=["attention"], compare=False,
        log=lambda m: None,
    )  # fmt: skip
    trained, untrained = report.checks
    assert trained.failures and all("r 0.5000 < 0.99" in f for f in trained.failures)
    assert not untrained.failures and untrained.held == "" and untrained.maps
    assert "| hvt_t.untrained | untrained | not held |" in selftest.render(report)


def test_no_cuda_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert selftest.main(["--device", "cuda", "--models", "hvt_t.synth"]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err


def test_correlation():
    rng = np.random.default_rng(0)
    a = rng.random((4, 5, 5))
    assert selftest.correlation(a, a) == pytest.approx(1.0)
    assert selftest.correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert selftest.correlation(a, -a) == pytest.approx(-1.0)
    assert selftest.correlation(np.ones(6), np.ones(6)) == 1.0
    assert selftest.correlation(np.ones(6), np.arange(6.0)) == 0.0
    assert np.isnan(selftest.correlation(np.ones(6), np.ones(7)))
