"""What goes up to a Hugging Face Space, per hardware profile, defined once; and the upload itself.

    python -m deploy.space --hardware cpu-basic --dry-run            # writes build/space-cpu-basic/, no upload
    python -m deploy.space --hardware zero-gpu USER/mvt-lens         # the same files, uploaded

``ALLOW`` and ``IGNORE`` pick the Space's files from this checkout (the app, ``mvt``, ``viz``, ``lens`` with the
shipped weights and examples inside ``mvt/assets``, the UI assets, README, LICENSE). :data:`PROFILES` says what
differs per hardware: the ``requirements.txt`` a Space installs (which torch build, from which index) and the
README front matter (``suggested_hardware``, ``python_version``). :func:`stage` writes exactly the files a Space
gets into a folder; the upload sends that folder through the hub's upload API, which stores binaries as the hub
requires (LFS / Xet) — no git, no LFS setup here. The repository's own ``requirements.txt`` keeps ranges and no
index lines, so it installs offline here (and anywhere pip's configured index has torch).

``pyproject.toml`` is not uploaded: a Space runs ``app.py`` from the uploaded files, without ``pip install .``,
and the version reaches reports from ``mvt.__version__`` (which ``pyproject.toml`` reads) instead.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ALLOW = [
    "app.py",
    "README.md",
    "LICENSE",
    "requirements.txt",
    ".gitattributes",
    "mvt/*",
    "viz/*",
    "lens/*",
    "assets/*",
]
"""The app and what it imports and shows; patterns as huggingface_hub matches them (fnmatch on the path relative
to the folder, ``*`` crossing ``/``). Tests, benchmarks, CI, caches and virtual environments are not in it."""

IGNORE = ["*__pycache__*", "*.pyc", "*.egg-info*", "*.DS_Store"]
"""Removed from what ``ALLOW`` selects (huggingface_hub adds ``.git`` and ``.cache/huggingface`` itself)."""

DELETE = "*"
"""Remote files the upload removes unless it sends them again: the Space ends up holding exactly the staged set
(files that moved or went away, e.g. the old top-level ``assets/weights``, do not linger there)."""

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
"""PyTorch's CPU-only wheels (``torch==X+cpu``): no CUDA libraries, no triton."""

TESTED_TORCH = ("2.14.1", "0.29.1")
"""torch / torchvision the test suite ran with; the CPU and GPU Space profiles pin them."""

ZERO_GPU_TORCH = ("2.8.0", "0.23.0")
"""The newest torch in ZeroGPU's list of supported versions (2.1.0, 2.1.1, 2.1.2, 2.2.0, 2.2.2, 2.4.0, 2.5.1, 2.6.0,
2.7.1, 2.8.0; Python 3.10.13) — hub-docs ``docs/hub/spaces-zerogpu.md``, "Supported Versions"
(https://huggingface.co/docs/hub/spaces-zerogpu, read at hub-docs commit 4c248ce) — and the torchvision
released with it."""


@dataclass(frozen=True)
class Profile:
    """One Space hardware: the flavour for ``suggested_hardware`` (a ``huggingface_hub.SpaceHardware`` value), the
    torch requirement lines, an extra index they come from, and the Python the Space runs."""

    hardware: str
    torch: tuple[str, ...]
    extra_index: str | None = None
    python_version: str = "3.12"
    note: str = ""


def _cpu(flavour: str) -> Profile:
    torch, vision = TESTED_TORCH
    return Profile(
        flavour,
        (f"torch=={torch}+cpu", f"torchvision=={vision}+cpu"),
        CPU_INDEX,
        note="CPU-only torch from PyTorch's CPU index: no nvidia-* packages, no triton",
    )


def _gpu(flavour: str) -> Profile:
    torch, vision = TESTED_TORCH
    return Profile(
        flavour,
        (f"torch=={torch}", f"torchvision=={vision}"),
        note="the default (CUDA) torch wheels from PyPI",
    )


PROFILES: dict[str, Profile] = {
    "cpu-basic": _cpu("cpu-basic"),
    "cpu-upgrade": _cpu("cpu-upgrade"),
    "zero-gpu": Profile(
        "zero-a10g",  # huggingface_hub's SpaceHardware name for ZeroGPU (the cards are H200 slices now)
        (f"torch=={ZERO_GPU_TORCH[0]}", f"torchvision=={ZERO_GPU_TORCH[1]}"),
        python_version="3.10.13",
        note="a torch ZeroGPU lists as supported, on the Python it lists; `spaces` is preinstalled there",
    ),
    **{f: _gpu(f) for f in ("t4-small", "t4-medium", "l4x1", "a10g-small", "a10g-large", "a100-large")},
}
"""Every hardware ``--hardware`` accepts. The repository's README front matter is the ``cpu-basic`` profile's."""

_TORCH_LINE = re.compile(r"^(torch|torchvision)\s*([<>=!~;\[]|$)")


def requirements(hardware: str, source: str | None = None) -> str:
    """The ``requirements.txt`` a Space on ``hardware`` installs: this repository's requirements with the
    torch / torchvision lines replaced by the profile's (and its extra index first), comments dropped."""
    profile = PROFILES[hardware]
    text = (ROOT / "requirements.txt").read_text() if source is None else source
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    rest = [ln for ln in lines if ln and not _TORCH_LINE.match(ln)]
    if len(rest) != len([ln for ln in lines if ln]) - 2:
        raise ValueError("requirements.txt must name torch and torchvision once each")
    head = [
        f"# Generated by `python -m deploy.space --hardware {hardware}` from requirements.txt: {profile.note}."
    ]
    if profile.extra_index:
        head.append(f"--extra-index-url {profile.extra_index}")
    return "\n".join(head + list(profile.torch) + rest) + "\n"


def readme(hardware: str, source: str | None = None) -> str:
    """The README a Space on ``hardware`` gets: this one with ``suggested_hardware`` and ``python_version`` set."""
    profile = PROFILES[hardware]
    text = (ROOT / "README.md").read_text() if source is None else source
    if not text.startswith("---\n"):
        raise ValueError("README.md must start with the Space's front matter")
    _, front, body = text.split("---\n", 2)
    for key, value in (
        ("suggested_hardware", profile.hardware),
        ("python_version", f'"{profile.python_version}"'),
    ):
        front, n = re.subn(rf"^{key}:.*$", f"{key}: {value}", front, flags=re.M)
        if n != 1:
            raise ValueError(f"README front matter must have one {key} line")
    return f"---\n{front}---\n{body}"


def upload_set(folder: str | Path = ROOT) -> list[str]:
    """The files (paths relative to ``folder``) picked from ``folder`` for a Space, computed exactly as
    ``HfApi.upload_folder`` filters them."""
    from huggingface_hub.utils import filter_repo_objects
    from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS

    folder = Path(folder).resolve()
    files = sorted(p.relative_to(folder).as_posix() for p in folder.glob("**/*") if p.is_file())
    return list(
        filter_repo_objects(files, allow_patterns=ALLOW, ignore_patterns=IGNORE + DEFAULT_IGNORE_PATTERNS)
    )


def stage(hardware: str, out: str | Path, folder: str | Path = ROOT) -> list[str]:
    """Write the files a Space on ``hardware`` gets into ``out`` (emptied first): :func:`upload_set` of
    ``folder``, with ``requirements.txt`` and ``README.md`` generated for the profile. Returns their paths."""
    if hardware not in PROFILES:
        raise ValueError(f"unknown hardware {hardware!r}; known: {', '.join(PROFILES)}")
    folder, out = Path(folder).resolve(), Path(out).resolve()
    if out == folder or folder.is_relative_to(out):
        raise ValueError(f"{out} would overwrite the checkout")
    if out.exists():
        shutil.rmtree(out)
    files = upload_set(folder)
    for f in files:
        (out / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / f, out / f)
    (out / "requirements.txt").write_text(requirements(hardware, (folder / "requirements.txt").read_text()))
    (out / "README.md").write_text(readme(hardware, (folder / "README.md").read_text()))
    return files


def staging_dir(hardware: str) -> Path:
    return ROOT / "build" / f"space-{hardware}"


def hf_upload_command(hardware: str = "cpu-basic", repo_id: str = "<user>/mvt-lens") -> str:
    """The README's ``hf upload`` command: the staged folder, as :func:`upload` sends it."""
    folder = staging_dir(hardware).relative_to(ROOT).as_posix()
    return f'hf upload {repo_id} {folder} . --repo-type space --delete "{DELETE}"'


def upload(repo_id: str, hardware: str, folder: str | Path = ROOT) -> str:
    """Create the Space if needed, stage ``folder``'s Space files for ``hardware`` and upload them; returns the
    commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage(hardware, Path(tmp) / "space", folder)
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type="space",
            folder_path=str(Path(tmp) / "space"),
            delete_patterns=[DELETE],
            commit_message=f"Upload mvt-lens ({hardware})",
        )
    return str(info)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.space", description=__doc__.split("\n\n")[0])
    p.add_argument("repo_id", nargs="?", help="USER/SPACE_NAME to upload to (needs `hf auth login` first)")
    p.add_argument("--hardware", choices=sorted(PROFILES), default="cpu-basic")
    p.add_argument("--dry-run", action="store_true", help="write the files a Space gets; upload nothing")
    p.add_argument(
        "--out", type=Path, default=None, help="where --dry-run writes them (build/space-HARDWARE)"
    )
    args = p.parse_args(argv)
    if args.dry_run:
        out = args.out or staging_dir(args.hardware)
        files = stage(args.hardware, out)
        print(f"wrote {len(files)} files for a {args.hardware} Space to {out}")
        print(f"--- requirements.txt\n{(out / 'requirements.txt').read_text()}", end="")
        front = (out / "README.md").read_text().split("---\n", 2)[1]
        print(f"--- README.md front matter\n{front}", end="")
        return 0
    if not args.repo_id or "/" not in args.repo_id:
        p.error("give USER/SPACE_NAME, or --dry-run")
    print(upload(args.repo_id, args.hardware))
    return 0


if __name__ == "__main__":
    sys.exit(main())
