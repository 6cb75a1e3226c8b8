"""Packaging and deployment: LFS attributes for every binary, the Space's upload set, the wheel, the licence,
the front matter and the requirements."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def tracked() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (e.g. an unpacked sdist): there are no tracked files to check")
    return [f for f in _git("ls-files", "-z").split("\0") if f]


def _is_binary(path: Path) -> bool:
    """git's rule: a NUL byte in the first 8000 bytes."""
    with open(path, "rb") as f:
        return b"\0" in f.read(8000)


def _lfs_marked(paths: list[str]) -> dict[str, bool]:
    out = subprocess.run(
        ["git", "check-attr", "filter", "--stdin", "-z"], cwd=ROOT, input="\0".join(paths), capture_output=True,
        text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    triples = [out[i : i + 3] for i in range(0, len(out) - 2, 3)]
    return {path: value == "lfs" for path, _, value in triples}


def test_every_tracked_binary_is_marked_for_lfs(tracked):
    binaries = [f for f in tracked if (ROOT / f).is_file() and _is_binary(ROOT / f)]
    assert any(f.endswith(".safetensors") for f in binaries) and any(f.endswith(".mp4") for f in binaries)
    marked = _lfs_marked(binaries)
    assert [f for f in binaries if not marked[f]] == [], "add their types to .gitattributes"


def test_lfs_filters_are_not_switched_on_here(tracked):
    local = subprocess.run(
        ["git", "config", "--local", "--get-regexp", r"^filter\.lfs"], cwd=ROOT, capture_output=True
    )
    assert local.stdout == b"", "this repository must not run LFS filters (a clone would get pointer files)"
    for f in tracked:
        if f.endswith((".safetensors", ".mp4", ".png")):
            assert not (ROOT / f).read_bytes().startswith(LFS_POINTER), f"{f} is an LFS pointer, not the file"


# -- the Space ----------------------------------------------------------------------------------------------


def test_space_upload_set_of_this_checkout():
    from deploy.space import upload_set

    files = upload_set(ROOT)
    for needed in (
        "app.py",
        "README.md",
        "LICENSE",
        "requirements.txt",
        "mvt/weights/__init__.py",
        "viz/__init__.py",
    ):
        assert needed in files
    shipped = sorted(
        p.relative_to(ROOT).as_posix()
        for d in ("assets", "mvt/assets")
        for p in (ROOT / d).rglob("*")
        if p.is_file()
    )
    assert set(f for f in shipped if "__pycache__" not in f) <= set(files)
    assert (
        "mvt/assets/weights/mvit_t.synth.safetensors" in files and "mvt/assets/evaluation.synth.json" in files
    )
    assert "pyproject.toml" not in files, "a Space runs app.py from the files; the version is mvt.__version__"
    for f in files:
        assert not f.startswith(("tests/", "bench/", ".git/", ".ci/", "deploy/", ".venv/", "venv/", "build/"))
        assert "__pycache__" not in f and not f.endswith(".pyc") and ".pytest_cache" not in f
    binaries = [f for f in files if _is_binary(ROOT / f)]
    if (ROOT / ".git").exists():
        marked = _lfs_marked(binaries)
        assert [f for f in binaries if not marked[f]] == []


def test_space_upload_set_leaves_out_caches_outputs_and_environments(tmp_path):
    from deploy.space import upload_set

    keep = ["app.py", "README.md", "mvt/zoo.py", "mvt/weights/fetch.py", "viz/render.py", "lens/service.py",
            "mvt/assets/weights/hvt_t.synth.safetensors", "mvt/assets/examples/a.mp4", "assets/ui/app.css"]  # fmt: skip
    junk = ["tests/test_x.py", "tests/.cache/hf/blob", ".pytest_cache/v/cache/lastfailed", "bench/out/app.json",
            "bench/app.py", ".venv/lib/python3.12/site-packages/torch/__init__.py", "venv/bin/python", ".git/config",
            "mvt/__pycache__/zoo.cpython-311.pyc", "viz/render.pyc", "out/report.html", ".gradio/flagged/x.mp4",
            "mvt_lens.egg-info/PKG-INFO", "build/lib/mvt/zoo.py", ".cache/huggingface/x", "notes.txt"]  # fmt: skip
    for f in keep + junk:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"x")
    assert sorted(upload_set(tmp_path)) == sorted(keep)


def test_readme_commands_stage_and_upload_what_the_deploy_module_defines(monkeypatch, tmp_path):
    """The README's two deploy lines: `python -m deploy.space ... --dry-run` (stages the Space's files) and an
    `hf upload` of that folder. Run the second through huggingface_hub's own CLI with the network calls replaced,
    and compare what it would pass to `upload_folder` with deploy/space.py's definition."""
    import shlex

    from click.testing import CliRunner
    from huggingface_hub import HfApi
    from huggingface_hub.cli.hf import app

    import deploy.space

    readme = (ROOT / "README.md").read_text()
    assert "python -m deploy.space --hardware cpu-basic --dry-run" in readme
    lines = [ln for ln in readme.splitlines() if ln.startswith("hf upload ")]
    assert lines == [deploy.space.hf_upload_command("cpu-basic")], (
        "README's upload command and deploy/space.py differ"
    )
    seen = {}

    def fake_upload_folder(self, **kwargs):
        seen.update(kwargs)
        return "https://huggingface.co/spaces/u/mvt-lens/commit/0"

    class _Url(str):
        repo_id = "u/mvt-lens"

    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    monkeypatch.setattr(
        HfApi, "create_repo", lambda self, *a, **k: _Url("https://huggingface.co/spaces/u/mvt-lens")
    )
    staged = tmp_path / "build" / "space-cpu-basic"
    deploy.space.stage("cpu-basic", staged)
    monkeypatch.chdir(tmp_path)
    args = shlex.split(lines[0].replace("<user>/mvt-lens", "u/mvt-lens"))[1:]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen["repo_type"] == "space" and seen["path_in_repo"] in (".", "", None)
    assert Path(seen["folder_path"]).resolve() == staged.resolve()
    assert seen["delete_patterns"] == [deploy.space.DELETE]
    assert not seen.get("allow_patterns") and not seen.get("ignore_patterns")

    calls = {}
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.update(kw, files=sorted(
        p.relative_to(kw["folder_path"]).as_posix() for p in Path(kw["folder_path"]).rglob("*") if p.is_file())))  # fmt: skip
    deploy.space.upload("u/mvt-lens", "cpu-basic")
    assert calls["files"] == sorted(
        p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()
    )
    assert calls["delete_patterns"] == seen["delete_patterns"] and calls["repo_type"] == "space"


# -- Space profiles -----------------------------------------------------------------------------------------


def _req_lines(text: str) -> list[str]:
    return [ln.split("#", 1)[0].strip() for ln in text.splitlines() if ln.split("#", 1)[0].strip()]


def test_every_profile_generates_requirements_and_front_matter_from_one_definition(tmp_path):
    from huggingface_hub import SpaceHardware

    from deploy.space import CPU_INDEX, PROFILES, ZERO_GPU_TORCH, main, readme, requirements

    own = _req_lines((ROOT / "requirements.txt").read_text())
    assert not [ln for ln in own if ln.startswith("-")], (
        "the repository's requirements stay index-free (offline)"
    )
    assert "einops" not in _requirement_names(ROOT / "requirements.txt")
    rest = [ln for ln in own if not re.match(r"(torch|torchvision)\b", ln)]
    flavours = {h.value for h in SpaceHardware}
    for name, profile in PROFILES.items():
        assert main(["--hardware", name, "--dry-run", "--out", str(tmp_path / name)]) == 0
        req = (tmp_path / name / "requirements.txt").read_text()
        assert req == requirements(name)
        lines = _req_lines(req)
        assert [ln for ln in lines if not ln.startswith("-") and ln not in profile.torch] == rest
        torch_lines = [ln for ln in lines if re.match(r"(torch|torchvision)\b", ln)]
        assert len(torch_lines) == 2 and all(
            re.fullmatch(r"torch(vision)?==[0-9.]+(\+cpu)?", t) for t in torch_lines
        )
        front = (tmp_path / name / "README.md").read_text().split("---\n", 2)[1]
        assert f"suggested_hardware: {profile.hardware}\n" in front and profile.hardware in flavours
        assert f'python_version: "{profile.python_version}"\n' in front
        assert (tmp_path / name / "README.md").read_text() == readme(name)
        assert (tmp_path / name / "app.py").read_bytes() == (ROOT / "app.py").read_bytes()

    cpu = requirements("cpu-basic")
    assert _req_lines(cpu)[0] == f"--extra-index-url {CPU_INDEX}"
    assert "torch==" in cpu and all(t.endswith("+cpu") for t in PROFILES["cpu-basic"].torch)
    assert not re.search(r"nvidia|triton|cuda", cpu.split("\n", 1)[1], re.I)

    zero = requirements("zero-gpu")
    # hub-docs docs/hub/spaces-zerogpu.md, "Supported Versions" (the full list) and its Python
    supported = {"2.1.0", "2.1.1", "2.1.2", "2.2.0", "2.2.2", "2.4.0", "2.5.1", "2.6.0", "2.7.1", "2.8.0"}
    assert f"torch=={ZERO_GPU_TORCH[0]}" in _req_lines(zero) and ZERO_GPU_TORCH[0] in supported
    assert PROFILES["zero-gpu"].hardware == "zero-a10g" and PROFILES["zero-gpu"].python_version == "3.10.13"
    assert "--extra-index-url" not in zero

    # the repository's README is the cpu-basic profile's: one definition of the front matter
    assert readme("cpu-basic") == (ROOT / "README.md").read_text()


def test_profiles_reject_what_they_cannot_generate(tmp_path):
    from deploy.space import readme, requirements, stage

    with pytest.raises(ValueError, match="torch and torchvision"):
        requirements("cpu-basic", "numpy\n")
    with pytest.raises(ValueError, match="suggested_hardware"):
        readme("zero-gpu", "---\ntitle: x\npython_version: 3.12\n---\nbody\n")
    with pytest.raises(ValueError, match="unknown hardware"):
        stage("h100-huge", tmp_path / "x")
    with pytest.raises(ValueError, match="overwrite the checkout"):
        stage("cpu-basic", ROOT)


def _front_matter() -> str:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n")
    return text.split("---\n", 2)[1]


def test_front_matter_preloads_the_pinned_hub_files():
    from mvt import get_spec

    src = get_spec("vivit_b_16x2.k400").weights
    entry = f"  - {src.repo_id} {src.filename},{src.config_file} {src.revision}"
    assert entry in _front_matter().splitlines()


def test_license_file_matches_the_front_matter():
    assert re.search(r"^license: apache-2.0$", _front_matter(), re.M)
    text = (ROOT / "LICENSE").read_text()
    assert (
        "Apache License" in text
        and "Version 2.0, January 2004" in text
        and "END OF TERMS AND CONDITIONS" in text
    )


# -- the package --------------------------------------------------------------------------------------------


def _third_party_imports(paths: list[Path]) -> set[str]:
    mods: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    local = {"mvt", "viz", "lens", "app", "deploy", "tests"}
    return {m for m in mods if m not in local and m not in sys.stdlib_module_names and m != "spaces"}


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


SCALE = ROOT / "lens" / "dataset"
"""lens.dataset may also import what requirements-scale.txt installs (Ray Data, pyarrow); nothing else may."""


def _missing(paths: list[Path], required: set[str]) -> dict[str, list[str]]:
    dists = importlib.metadata.packages_distributions()
    missing = {}
    for mod in _third_party_imports(paths):
        names = {d.lower().replace("_", "-") for d in dists.get(mod, [mod])}
        if not names & required:
            missing[mod] = sorted(names)
    return missing


def test_requirements_name_every_third_party_import_of_the_app():
    """A fresh environment gets everything the app imports (scipy was once only there by accident)."""
    files = [ROOT / "app.py", *(p for pkg in ("mvt", "viz", "lens") for p in (ROOT / pkg).rglob("*.py"))]
    paths = [p for p in files if SCALE not in p.parents]
    required = _requirement_names(ROOT / "requirements.txt")
    missing = _missing(paths, required)
    assert missing == {}, f"imported but not in requirements.txt: {missing}"
    scale = _requirement_names(ROOT / "requirements-scale.txt")
    assert scale == {"ray", "pyarrow"} and not scale & required, "Ray stays out of the Space's requirements"
    missing = _missing(sorted(SCALE.rglob("*.py")), required | scale)
    assert missing == {}, f"imported by lens.dataset but in neither requirements file: {missing}"
    assert "-r requirements-scale.txt" in (ROOT / "requirements-dev.txt").read_text(), "tests and CI run Ray"
    assert {"scipy", "tqdm", "gradio", "huggingface-hub"} <= required
    assert re.search(r"^gradio>=6", (ROOT / "requirements.txt").read_text(), re.M)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, tracked) -> Path:
    """`pip wheel . --no-deps` on a copy of the tracked files (building in place would litter the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for f in tracked:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp)],
        cwd=src, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = tmp.glob("mvt_lens-*.whl")
    return built


def test_wheel_declares_the_packages_the_console_script_and_the_shipped_files(wheel):
    import mvt
    from mvt import assets

    names = zipfile.ZipFile(wheel).namelist()
    for module in ("mvt/__init__.py", "mvt/weights/fetch.py", "mvt/models/mvit.py", "mvt/video/reading.py",
                   "viz/__init__.py", "viz/rollout.py", "mvt/assets/__init__.py"):  # fmt: skip
        assert module in names
    packages = {n.split("/")[0] for n in names if n.endswith(".py")}
    assert packages <= {"mvt", "viz", "lens"}, packages
    shipped = sorted(p.relative_to(ROOT).as_posix() for p in assets.DIR.rglob("*") if p.is_file())
    shipped = [f for f in shipped if "__pycache__" not in f]
    assert len([f for f in shipped if f.endswith(".synth.safetensors")]) == 7
    assert "mvt/assets/evaluation.synth.json" in shipped and "mvt/assets/examples/labels.json" in shipped
    assert [f for f in shipped if f not in names] == [], "package data missing from the wheel"
    assert not any(n.startswith("assets/") for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "mvt-lens = mvt.__main__:main" in zipfile.ZipFile(wheel).read(meta).decode()
    metadata = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    )
    assert "Requires-Dist: scipy" in metadata and "License-Expression: Apache-2.0" in metadata
    assert f"\nVersion: {mvt.__version__}\n" in metadata


def test_the_wheel_alone_lists_and_runs_the_shipped_models_and_examples(wheel, tmp_path):
    """A fresh virtual environment with the built wheel and nothing from this checkout: the seven SynthMotion
    models are listed as shipped and `mvt-lens explain` runs on an example clip that came with the wheel.

    The environment sees the system's site-packages (torch and the other requirements are installed there; this
    machine cannot download them), and installs the wheel with ``--no-deps``; every command runs from a folder
    outside the checkout, without ``PYTHONPATH``, and the test asserts that ``mvt`` is imported from the venv."""
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120
    )
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(MVT_OFFLINE="1", HF_HUB_OFFLINE="1", PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            list(args), cwd=elsewhere, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-3000:])
        return result.stdout

    run(str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel))
    where = run(
        str(bin_dir / "python"), "-c",
        "import mvt, lens, viz, mvt.assets as a; print(mvt.__file__); print(lens.__file__); print(a.EXAMPLES)",
    ).split()  # fmt: skip
    site = (venv / "lib").resolve()
    for path in where:
        assert Path(path).resolve().is_relative_to(site), f"{path} is not the installed copy"
        assert not Path(path).resolve().is_relative_to(ROOT.resolve())

    listed = run(str(bin_dir / "mvt-lens"), "list", "*.synth").splitlines()
    assert len(listed) == 7, listed
    assert not [line for line in listed if "unavailable" in line or "download" in line or "untrained" in line]
    assert sorted(line.split()[0] for line in listed) == sorted(
        [
            "mvit_t.synth",
            "mmvit_t.synth",
            "vivit_t1.synth",
            "vivit_t2.synth",
            "vivit_t3.synth",
            "vivit_t4.synth",
            "hvt_t.synth",
        ]  # fmt: skip
    )

    clip = Path(where[2]) / "synth_rotate_cw.mp4"
    out = tmp_path / "out"
    printed = run(
        str(bin_dir / "mvt-lens"), "explain", str(clip), "--models", "mvit_t.synth", "hvt_t.synth",
        "--methods", "attention", "rollout", "--out", str(out),
    )  # fmt: skip
    assert all(
        f"\n{n} (" in f"\n{printed}" and "rotate_cw" in printed for n in ("mvit_t.synth", "hvt_t.synth")
    )
    report = json.loads((out / "report.json").read_text())
    import mvt

    assert report["versions"]["mvt-lens"] == mvt.__version__ != "unknown"
    for model in report["models"]:
        assert "error" not in model, model
        source = model["weights"]["source"]
        assert source["kind"] == "file" and len(source["sha256"]) == 64


# -- licences -----------------------------------------------------------------------------------------------


def test_every_downloaded_or_shipped_weight_states_its_licence_in_its_label_and_the_readme():
    import mvt
    from lens.ui.defaults import model_label
    from mvt import licences

    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Licences\n", 1)[1].split("\n## ", 1)[0]
    stated = {licences.TORCHVISION_K400, licences.VIVIT_HUB, licences.HVT_RELEASE, licences.SYNTHMOTION}
    stated |= set(licences.PYSLOWFAST.values())
    seen = set()
    for name in mvt.list_models():
        spec = mvt.get_spec(name)
        if (
            spec.checkpoint is not None
        ):  # a user's checkpoint another test registered: its licence is the user's
            continue
        if spec.weights.kind == "none":
            assert spec.weights.licence == "" and not spec.trained
            continue
        assert spec.weights.licence in stated, name
        assert spec.weights.licence in model_label(name, "cached"), name
        seen.add(spec.weights.licence)
        assert f"`{name}`" in section or f"`{spec.arch}" in section or name.endswith(".synth"), name
    assert seen == stated
    assert "einops" not in (ROOT / "requirements.txt").read_text()
    for needed in ("https://huggingface.co/google/vivit-b-16x2-kinetics400", "https://github.com/zhuang-group/HVT",
                   "https://github.com/pytorch/vision#pre-trained-model-license", "https://www.image-net.org/download.php",
                   "https://www.deepmind.com/open-source/kinetics", "**MIT**", "**Apache-2.0**", "**unstated.**"):  # fmt: skip
        assert needed in section, needed


def test_sizes_leave_cuda_out_of_the_cpu_profile_when_the_cpu_index_is_out_of_reach(monkeypatch):
    """deploy/sizes.py's CPU fallback: resolve the same torch from PyPI, then drop the CUDA-only packages and leave
    the +cpu wheels unmeasured (said in the note), never count them."""
    import deploy.sizes as sizes

    seen = {}

    def resolve(text, python_version, extra_index=None):
        seen.update(text=text, python=python_version, index=extra_index)
        names = ["torch", "torchvision", "nvidia-cublas", "cuda-bindings", "triton", "numpy", "gradio"]
        return [sizes.Item(n, "1", f"https://files.example/{n}.whl") for n in names]

    monkeypatch.setattr(sizes, "reachable", lambda url, timeout=10.0: False)
    monkeypatch.setattr(sizes, "resolve", resolve)
    monkeypatch.setattr(sizes, "content_length", lambda url: 2**20)
    row = sizes.measure("cpu-basic")
    assert "+cpu" not in seen["text"] and "--extra-index-url" not in seen["text"] and seen["index"] is None
    assert seen["python"] == "3.12" and row["cuda_packages"] == [] and row["torch_mib"] is None
    assert row["rest_mib"] == 2.0 and "not reachable" in row["note"] and row["packages"] == 4

    monkeypatch.setattr(sizes, "reachable", lambda url, timeout=10.0: True)
    row = sizes.measure("zero-gpu")
    assert "torch==2.8.0" in seen["text"] and seen["python"] == "3.10.13"
    assert (
        row["cuda_packages"] == ["cuda-bindings==1", "nvidia-cublas==1", "triton==1"]
        and row["torch_mib"] == 2.0
    )
