"""Runs in every Ray worker of tests/lens/test_dataset_ray.py (Ray's ``worker_process_setup_hook``): the model
actor that is handed a clip whose file name contains :data:`KILLER` kills its own process (SIGKILL), every
time it is to run the models on it — as a crash in a kernel or the OOM killer would. Each attempt first leaves a file in
``<clip>.attempts/``, so the test can count them. Every other clip runs as usual."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

KILLER = "kills_its_worker"


def attempts(path: Path) -> int:
    """How many times a worker took the clip at ``path``."""
    folder = Path(f"{path}.attempts")
    return len(list(folder.iterdir())) if folder.is_dir() else 0


def install() -> None:
    from lens.dataset import engines

    real = engines.clip_rows

    def clip_rows(models, ref, decoded, cfg, device="cpu"):
        if decoded.error is None and ref.path and KILLER in os.path.basename(ref.path):
            folder = Path(f"{ref.path}.attempts")
            folder.mkdir(exist_ok=True)
            (folder / uuid.uuid4().hex).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(models, ref, decoded, cfg, device)

    engines.clip_rows = clip_rows
