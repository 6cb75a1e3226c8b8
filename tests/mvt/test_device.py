"""Device selection on ZeroGPU, with a stand-in ``spaces`` package that makes CUDA appear when imported (as the
real one does), run in subprocesses so nothing leaks into this one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_SPACES = '''
"""Stand-in for the spaces package: importing it makes CUDA available; GPU(duration=...) tags the function."""
import torch

torch.cuda.is_available = lambda: True


def GPU(task=None, *, duration=None, size=None):
    def wrap(fn):
        def inner(*args, **kwargs):
            return {"ran_under_gpu": duration, "value": fn(*args, **kwargs)}

        return inner

    return wrap(task) if callable(task) else wrap
'''

PROBE = """
import json, sys
import torch
before = torch.cuda.is_available()
from mvt.device import gpu, select_device
device = select_device()
out = gpu(duration=90)(lambda: 7)()
print(json.dumps({"before": before, "device": device, "out": out, "spaces": "spaces" in sys.modules}))
"""


def _run(tmp_path: Path, value: str | None) -> dict:
    pkg = tmp_path / "fake" / "spaces"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(FAKE_SPACES)
    env = {k: v for k, v in os.environ.items() if k != "SPACES_ZERO_GPU"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "fake"), str(ROOT)])
    if value is not None:
        env["SPACES_ZERO_GPU"] = value
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "1", "t"])
def test_zero_gpu_imports_spaces_first_and_then_finds_cuda(tmp_path, value):
    got = _run(tmp_path, value)
    assert got["before"] is False  # CUDA is not there until spaces is imported...
    assert got["spaces"] and got["device"] == "cuda"  # ...which select_device does first
    assert got["out"] == {"ran_under_gpu": 90, "value": 7}


@pytest.mark.parametrize("value", [None, "", "false", "0", "yes", "on"])  # spaces reads only 1/t/true as true
def test_elsewhere_spaces_is_not_imported_and_gpu_is_the_identity(tmp_path, value):
    got = _run(tmp_path, value)
    assert got == {"before": False, "device": "cpu", "out": 7, "spaces": False}


def test_zero_gpu_without_the_package_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    from mvt import device

    assert device.select_device() in ("cpu", "cuda")
    fn = lambda: 3  # noqa: E731
    assert device.gpu(duration=5)(fn) is fn
