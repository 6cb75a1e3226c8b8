"""Where weights come from, and how they are loaded safely.

Sources (``WeightsSource.kind``):

* ``"url"``: a torchvision-style URL. The file lives in the torch hub cache,
  ``$TORCH_HOME/hub/checkpoints/<basename of url>`` (``torch.hub.get_dir()``), exactly where
  ``torch.hub.load_state_dict_from_url`` puts it, so a file torchvision already downloaded is reused.
* ``"hf"``: a file in a Hugging Face model repo, read through ``huggingface_hub`` (so the HF cache and
  ``HF_HUB_OFFLINE`` apply).
* ``"file"``: a file shipped in this repository (``assets/weights``), path relative to the repo root.
* ``"none"``: untrained; the model keeps its initialisation.

Checkpoints load only through safetensors or ``torch.load(weights_only=True)``; a pickle that would run
code is refused with a :class:`WeightsError`.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


class WeightsError(RuntimeError):
    """Weights could not be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class WeightsSource:
    kind: str = "none"
    url: str | None = None
    repo_id: str | None = None
    filename: str | None = None
    revision: str | None = None
    path: str | None = None
    state_key: str | None = None
    """Sub-dict that holds the state dict (e.g. ``"model"`` for HVT's release files)."""

    def describe_location(self) -> str:
        if self.kind == "url":
            return str(hub_cache_path(self))
        if self.kind == "hf":
            return f"{self.repo_id}/{self.filename} in the Hugging Face cache"
        if self.kind == "file":
            return str(REPO_ROOT / (self.path or ""))
        return "(no weights)"


def hub_cache_path(source: WeightsSource) -> Path:
    """The torch hub cache file for a ``"url"`` source (``$TORCH_HOME/hub/checkpoints/<basename>``)."""
    assert source.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(source.url)


def is_available(source: WeightsSource) -> bool:
    """True when the weights can be loaded without any network access."""
    if source.kind == "none":
        return True
    if source.kind == "url":
        return hub_cache_path(source).is_file()
    if source.kind == "file":
        return (REPO_ROOT / (source.path or "")).is_file()
    if source.kind == "hf":
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return False
        found = try_to_load_from_cache(source.repo_id, source.filename, revision=source.revision)
        return isinstance(found, str) and os.path.isfile(found)
    raise WeightsError(f"unknown weights source kind {source.kind!r}")


def resolve(source: WeightsSource, *, download: bool = True) -> Path:
    """Return a local file for ``source``, downloading it first if allowed and needed."""
    if source.kind == "url":
        path = hub_cache_path(source)
        if path.is_file():
            return path
        if not download or _offline():
            raise WeightsError(_missing_message(source, path))
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            from torch.hub import HASH_REGEX, download_url_to_file

            match = HASH_REGEX.search(os.path.basename(source.url or ""))
            download_url_to_file(source.url, str(path), match.group(1) if match else None, progress=False)
        except Exception as e:  # network errors come in many types (URLError, OSError, RuntimeError)
            raise WeightsError(_missing_message(source, path) + f" (download failed: {e})") from None
        return path
    if source.kind == "hf":
        try:
            from huggingface_hub import hf_hub_download
        except ImportError as e:
            raise WeightsError("huggingface_hub is not installed: pip install huggingface_hub") from e
        try:
            return Path(
                hf_hub_download(
                    source.repo_id, source.filename, revision=source.revision, local_files_only=not download
                )
            )
        except Exception as e:  # LocalEntryNotFoundError, OfflineModeIsEnabled, HTTP errors
            raise WeightsError(
                f"Weights {source.repo_id}/{source.filename} are not in the Hugging Face cache and could not "
                f"be downloaded ({type(e).__name__}). On a machine with internet run: "
                f"huggingface-cli download {source.repo_id} {source.filename} "
                f'(or python -c "from huggingface_hub import hf_hub_download; '
                f"hf_hub_download('{source.repo_id}', '{source.filename}')\"), then copy the cache "
                f"(~/.cache/huggingface/hub) here."
            ) from None
    if source.kind == "file":
        path = REPO_ROOT / (source.path or "")
        if not path.is_file():
            raise WeightsError(
                f"Shipped weights {path} are missing; reinstall from a full clone of the repo."
            )
        return path
    raise WeightsError(f"weights source of kind {source.kind!r} has no file")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False") or os.environ.get(
        "MVT_OFFLINE", "0"
    ) not in ("", "0", "false", "False")


def _missing_message(source: WeightsSource, path: Path) -> str:
    return (
        f"Weights file {path.name} is not cached. Download {source.url} on a machine with internet and place "
        f"it at {path} (the torch hub cache, $TORCH_HOME/hub/checkpoints)."
    )


def load_file(path: str | os.PathLike, *, state_key: str | None = None) -> dict[str, torch.Tensor]:
    """Load a checkpoint file as a flat ``{name: tensor}`` dict, safely.

    ``.safetensors`` files go through safetensors; anything else through ``torch.load(weights_only=True)``,
    which refuses pickles that would import or call arbitrary code.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Checkpoint {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file as st_load

        try:
            sd = st_load(str(path), device="cpu")
        except Exception as e:
            raise WeightsError(f"{path.name} is not a valid safetensors file ({e}).") from None
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise WeightsError(
                f"Refused to load {path.name}: it is not a plain tensor checkpoint (loading it would run code "
                f"from the file). Convert it to safetensors on a trusted machine. Detail: {str(e)[:200]}"
            ) from None
        except (RuntimeError, EOFError, OSError, ValueError) as e:
            raise WeightsError(f"{path.name} is not a readable PyTorch checkpoint ({e}).") from None
    if state_key is not None:
        if not isinstance(sd, dict) or state_key not in sd:
            keys = list(sd)[:5] if isinstance(sd, dict) else type(sd).__name__
            raise WeightsError(f"{path.name} has no '{state_key}' entry (top-level keys: {keys}).")
        sd = sd[state_key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path.name} does not hold a flat state dict of tensors.")
    return sd


def load(source: WeightsSource, *, download: bool = True) -> dict[str, torch.Tensor]:
    """Resolve and load the state dict of ``source``."""
    return load_file(resolve(source, download=download), state_key=source.state_key)
