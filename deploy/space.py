"""What goes up to a Hugging Face Space, defined once, and the upload itself.

``ALLOW`` and ``IGNORE`` are the only definition of the Space's files: ``python -m deploy.space USER/mvt-lens``
passes them to ``HfApi.upload_folder``, and the README's ``hf upload`` command repeats them as ``--include`` /
``--exclude`` (tests/test_packaging.py checks both agree and what the set contains). Binaries go up through
the hub's upload API, which stores them as the hub requires (LFS / Xet) — no git, no LFS setup here.
"""

from __future__ import annotations

import sys
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


def upload_set(folder: str | Path = ROOT) -> list[str]:
    """The files (paths relative to ``folder``) an upload of ``folder`` would send, computed exactly as
    ``HfApi.upload_folder`` filters them."""
    from huggingface_hub.utils import filter_repo_objects
    from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS

    folder = Path(folder).resolve()
    files = sorted(p.relative_to(folder).as_posix() for p in folder.glob("**/*") if p.is_file())
    return list(
        filter_repo_objects(files, allow_patterns=ALLOW, ignore_patterns=IGNORE + DEFAULT_IGNORE_PATTERNS)
    )


def hf_upload_command(repo_id: str = "<user>/mvt-lens") -> str:
    """The one ``hf upload`` command (README) that sends the same set as :func:`upload`."""
    parts = [f"hf upload {repo_id} . --repo-type space"]
    parts += [f'--include "{p}"' for p in ALLOW]
    parts += [f'--exclude "{p}"' for p in IGNORE]
    return " ".join(parts)


def upload(repo_id: str, folder: str | Path = ROOT) -> str:
    """Create the Space if needed and upload ``folder``'s Space files; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        repo_type="space",
        folder_path=str(folder),
        allow_patterns=ALLOW,
        ignore_patterns=IGNORE,
        commit_message="Upload mvt-lens",
    )
    return str(info)


if __name__ == "__main__":
    if len(sys.argv) != 2 or "/" not in sys.argv[1]:
        sys.exit("usage: python -m deploy.space USER/SPACE_NAME   (needs `hf auth login` first)")
    print(upload(sys.argv[1]))
