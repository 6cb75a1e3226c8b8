"""What a run writes: the weights as safetensors with string metadata, and the lineage of runs behind them."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from .config import TrainConfig

MAX_FILE_BYTES = 10 * 1024 * 1024


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def save_checkpoint(model: nn.Module, path: Path, metadata: dict[str, str]) -> Path:
    """Write the state dict as safetensors (fp32, or fp16 when fp32 would exceed 10 MB)."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    fp32_bytes = sum(v.numel() * v.element_size() for v in state.values())
    if fp32_bytes > MAX_FILE_BYTES:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
        metadata = {**metadata, "dtype": "float16"}
    else:
        metadata = {**metadata, "dtype": "float32"}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size / 2**20:.1f} MB, over the 10 MB limit")
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (header only; the tensors are not read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


LINEAGE_KEYS = (
    "arch",
    "config",
    "accuracy",
    "shuffled_accuracy",
    "steps",
    "cpu_minutes",
    "minutes",
    "commit",
)


def lineage(cfg: TrainConfig) -> list[dict]:
    """The runs this one starts from, oldest first: for each checkpoint named by ``cfg.start.init`` or
    ``cfg.start.warm_start`` (and, recursively, by theirs) its role, file name, SHA-256 and training metadata
    (:data:`LINEAGE_KEYS`, ``config`` parsed). Stored in the checkpoint, so a shipped file records every run
    that made it even when the intermediate files are gone. A parent without ``lineage`` metadata (older
    runs) ends its branch."""
    chain: list[dict] = []
    for role in ("warm_start", "init"):
        src = getattr(cfg.start, role)
        if src is None:
            continue
        path = Path(src)
        meta = read_metadata(path)
        chain.extend(json.loads(meta.get("lineage", "[]")))
        entry = {"role": role, "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        for key in LINEAGE_KEYS:
            if key in meta:
                entry[key] = json.loads(meta[key]) if key == "config" else meta[key]
        chain.append(entry)
    return chain
