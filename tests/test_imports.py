"""Imports go one way (mvt <- viz <- app): the library packages must not pull in the UI or plotting stack."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HEAVY_UI = ("gradio", "plotly")


@pytest.mark.parametrize("package", ["mvt", "viz"])
def test_import_does_not_load_ui_libraries(package):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} does not exist yet")
    code = (
        f"import sys, {package}\n"
        f"loaded = [m for m in {HEAVY_UI!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
