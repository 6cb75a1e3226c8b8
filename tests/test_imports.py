"""Imports go one way — ``mvt`` <- ``viz`` <- ``lens`` <- app / CLI — and no project module imports itself
back through a cycle. Read from the source with ``ast`` (every import, also those inside functions; only
``if TYPE_CHECKING:`` blocks are exempt), so a lazy import cannot hide a wrong-way dependency.
``importlib.import_module("a.b")`` with a literal name counts as an import; a computed name cannot be seen.

Layers (a module may import its own layer and the ones below it):

* ``mvt`` (models, video, training): imports neither ``viz`` nor ``lens``;
* ``viz`` (pure pictures): from ``mvt`` only the records of ``mvt.outputs``;
* ``lens`` (the analysis service): ``mvt`` and ``viz``;
* top: ``app`` (the UI), ``lens.cli`` (the command line), ``lens.selftest`` (``python -m mvt selftest``, which
  reaches every floor: the service, the model sets, the examples) and ``mvt.__main__`` (``python -m mvt``, which only
  forwards to ``lens.cli.main``: the one documented exception to "mvt imports no lens"). Top modules may
  import anything; nothing but a top module imports one.

Inside ``lens`` the packages are floors too (:data:`LENS_FLOORS`): a module may import its own package and the
ones below it, so ``core`` (records, request, caches) never reaches up to the service that uses it. And no
cycle anywhere, not even one an ``if TYPE_CHECKING:`` import would close (a circle in all but imports).
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = ("mvt", "viz", "lens")
LAYER = {"mvt": 0, "viz": 1, "lens": 2}
TOP = {"app", "lens.cli", "lens.selftest", "mvt.__main__"}
VIZ_FROM_MVT = {"mvt.outputs"}
KNOWN_CYCLES: set[frozenset[str]] = set()

HEAVY_UI = ("gradio", "plotly")
LENS_FLOORS = ("core", "explain", "render", "files", "service", "dataset", "ui")
"""lens's packages, bottom up: each may import the ones before it (``lens/__init__.py``, the public face, and
``lens.cli``, the top, import any)."""


# -- the checker ---------------------------------------------------------------------------------------------


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted name → file of every module of the project (``app.py`` and the packages' ``.py`` files)."""
    mods = {"app": root / "app.py"} if (root / "app.py").is_file() else {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST, type_checking: bool = False) -> Iterable[ast.AST]:
    """Every node, skipping the bodies of ``if TYPE_CHECKING:`` blocks (unless ``type_checking``)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not type_checking:
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _is_import_module(node: ast.Call) -> bool:
    f = node.func
    named = (isinstance(f, ast.Name) and f.id == "import_module") or (
        isinstance(f, ast.Attribute) and f.attr == "import_module"
    )
    return (
        named
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The longest project module that ``name`` is or lies in (``mvt.outputs.Footprint`` → ``mvt.outputs``)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def imports_of(
    name: str, path: Path, modules: dict[str, Path], type_checking: bool = False
) -> list[tuple[str, int]]:
    """(project module imported, line) for every import statement of module ``name`` (``type_checking``: those
    under ``if TYPE_CHECKING:`` too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8"), str(path)), type_checking):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and _is_import_module(node):
            targets = [node.args[0].value]  # importlib.import_module("a.b") with a literal name
        for t in targets:
            owner = _owner(t, modules)
            if owner is not None and owner != name:
                found.append((owner, node.lineno))
    return found


def _layer(module: str) -> str:
    return module.split(".")[0]


def wrong_way(modules: dict[str, Path]) -> list[str]:
    """Every import that breaks the layering, as ``"file:line: a imports b (why)"``."""
    out = []
    for name, path in modules.items():
        if name in TOP:
            continue
        for target, line in imports_of(name, path, modules):
            where = f"{path}:{line}"
            if target in TOP:
                out.append(f"{where}: {name} imports {target} (only the top imports the app and the CLI)")
            elif LAYER[_layer(target)] > LAYER[_layer(name)]:
                out.append(f"{where}: {name} imports {target} ({_layer(name)} is below {_layer(target)})")
            elif _layer(name) == "viz" and _layer(target) == "mvt" and target not in VIZ_FROM_MVT:
                out.append(f"{where}: {name} imports {target} (viz reads only {sorted(VIZ_FROM_MVT)})")
    return out


def lens_floor(module: str) -> int | None:
    """The floor of a module of ``lens`` (:data:`LENS_FLOORS`); ``None`` for the face and the top."""
    parts = module.split(".")
    if parts[0] != "lens" or len(parts) < 2 or module in TOP:
        return None
    return LENS_FLOORS.index(parts[1]) if parts[1] in LENS_FLOORS else -1


def upstairs(modules: dict[str, Path]) -> list[str]:
    """Every import inside ``lens`` from a package to one above it, or to the face (``lens``), as
    ``"file:line: a imports b"``; a module of no package of :data:`LENS_FLOORS` is named too."""
    out = []
    for name, path in modules.items():
        mine = lens_floor(name)
        if mine is None:
            continue
        if mine < 0:
            out.append(f"{path}: {name} is in no package of LENS_FLOORS")
            continue
        for target, line in imports_of(name, path, modules, type_checking=True):
            theirs = lens_floor(target)
            if target == "lens" or (theirs is not None and theirs > mine) or target == "lens.cli":
                out.append(f"{path}:{line}: {name} imports {target} (a floor above {LENS_FLOORS[mine]})")
    return out


def cycles(modules: dict[str, Path], type_checking: bool = False) -> list[frozenset[str]]:
    """Strongly connected sets of more than one module in the import graph (Tarjan); ``type_checking``: with
    the imports under ``if TYPE_CHECKING:`` (a cycle they close is a circle in all but imports)."""
    graph = {n: sorted({t for t, _ in imports_of(n, p, modules, type_checking)}) for n, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(frozenset(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


# -- the project ------------------------------------------------------------------------------------------------


def test_imports_go_one_way():
    modules = project_modules(ROOT)
    assert {"app", "mvt", "viz", "lens", "lens.cli", "mvt.__main__"} <= set(modules)
    assert not wrong_way(modules), "\n".join(wrong_way(modules))


def test_no_import_cycles():
    found = [c for c in cycles(project_modules(ROOT)) if c not in KNOWN_CYCLES]
    assert not found, [sorted(c) for c in found]


def test_no_circle_in_all_but_imports():
    """Not even a type annotation closes a loop (``jobs`` once named ``Service`` under TYPE_CHECKING)."""
    found = cycles(project_modules(ROOT), type_checking=True)
    assert not found, [sorted(c) for c in found]


def test_lens_packages_import_only_the_floors_below():
    modules = project_modules(ROOT)
    assert {f"lens.{p}" for p in LENS_FLOORS} <= set(modules)
    assert not upstairs(modules), "\n".join(upstairs(modules))


def test_mvt_main_only_forwards_to_the_cli():
    modules = project_modules(ROOT)
    targets = {t for t, _ in imports_of("mvt.__main__", modules["mvt.__main__"], modules)}
    assert targets == {"lens.cli"}


@pytest.mark.parametrize("package", ["mvt", "viz", "lens"])
def test_import_does_not_load_ui_libraries(package):
    if importlib.util.find_spec(package) is None:
        pytest.fail(f"{package} is not importable from {ROOT}")
    code = (
        f"import sys, {package}\n"
        f"loaded = [m for m in {HEAVY_UI!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]


# -- the checker itself, on a fabricated project -------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return project_modules(root)


GOOD = {
    "app.py": "import lens\nimport viz\nimport mvt\n",
    "mvt/__init__.py": "from .outputs import Record\n",
    "mvt/outputs.py": "X = 1\n",
    "mvt/zoo.py": "from . import outputs\n",
    "mvt/__main__.py": "from lens.cli import main\n",
    "viz/__init__.py": "from .render import draw\n",
    "viz/render.py": "from mvt.outputs import Record\n\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mvt.zoo\n",
    "lens/__init__.py": "from .service import Service\n",
    "lens/service.py": "import mvt\nimport viz\nfrom viz.render import draw\n",
    "lens/cli.py": "from .service import Service\nimport app\n",
}


def test_the_checker_accepts_a_clean_project(tmp_path):
    modules = _write(tmp_path, GOOD)
    assert wrong_way(modules) == [] and cycles(modules) == []


@pytest.mark.parametrize(
    "rel, text, needle",
    [
        ("mvt/zoo.py", "def f():\n    import viz\n", "mvt.zoo imports viz (mvt is below viz)"),  # even lazy
        (
            "mvt/zoo.py",
            "import importlib\nimportlib.import_module('viz.render')\n",
            "mvt.zoo imports viz.render",
        ),
        ("mvt/zoo.py", "from lens import service\n", "mvt.zoo imports lens.service (mvt is below lens)"),
        ("viz/render.py", "from mvt import zoo\n", "viz.render imports mvt.zoo (viz reads only"),
        ("viz/render.py", "import mvt\n", "viz.render imports mvt (viz reads only"),
        ("viz/render.py", "from lens.service import Service\n", "(viz is below lens)"),
        ("lens/service.py", "import app\n", "lens.service imports app (only the top imports"),
        ("mvt/outputs.py", "from ..lens import cli\n", "mvt.outputs imports lens.cli"),
    ],
)
def test_the_checker_finds_a_wrong_way_import(tmp_path, rel, text, needle):
    modules = _write(tmp_path, {**GOOD, rel: text})
    found = wrong_way(modules)
    assert any(needle in v for v in found), found


def test_the_checker_finds_a_cycle(tmp_path):
    modules = _write(
        tmp_path,
        {
            **GOOD,
            "lens/a.py": "from . import b\n",
            "lens/b.py": "def f():\n    from .c import g\n",
            "lens/c.py": "from lens.a import x\n",
        },
    )
    assert cycles(modules) == [frozenset({"lens.a", "lens.b", "lens.c"})]
    # a TYPE_CHECKING-only import makes no import cycle, but a circle in all but imports
    modules = _write(
        tmp_path, {"lens/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lens.a\n"}
    )
    assert cycles(modules) == []
    assert cycles(modules, type_checking=True) == [frozenset({"lens.a", "lens.b", "lens.c"})]


def test_the_checker_finds_an_import_up_the_lens_floors(tmp_path):
    files = {
        **GOOD,
        "lens/core/__init__.py": "",
        "lens/core/records.py": "X = 1\n",
        "lens/service/__init__.py": "",
        "lens/service/run.py": "from ..core.records import X\n",
    }
    modules = _write(tmp_path, files)
    assert [v for v in upstairs(modules) if "lens.core" in v or "lens.service" in v] == []
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..service.run import Y\n"
    modules = _write(tmp_path, {"lens/core/records.py": typed, "lens/core/face.py": "import lens\n"})
    found = upstairs(modules)
    assert any("lens.core.records imports lens.service.run" in v for v in found), found
    assert any("lens.core.face imports lens (a floor above core)" in v for v in found), found
    assert any("lens.stray is in no package" in v for v in upstairs(_write(tmp_path, {"lens/stray.py": ""})))
