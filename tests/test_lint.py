"""The code base stays ruff clean (lint + format), checked as part of the test suite."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> list[str]:
    exe = shutil.which("ruff")
    if exe:
        return [exe]
    return [sys.executable, "-m", "ruff"]


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_clean(args):
    proc = subprocess.run(_ruff() + args, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _functions(path: Path) -> dict[str, int]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_the_house_keeps_its_sizes():
    """Files under ~600 lines (lens, viz); app.py thin: at most 350 lines, no function over 25 (every event
    handler is one call of lens.ui.actions; the layout is split by part of the page)."""
    long = {
        str(p.relative_to(ROOT)): n
        for pkg in ("lens", "viz")
        for p in (ROOT / pkg).rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600
    }
    assert not long, long
    app = ROOT / "app.py"
    assert len(app.read_text(encoding="utf-8").splitlines()) <= 350
    assert {name: n for name, n in _functions(app).items() if n > 25} == {}
