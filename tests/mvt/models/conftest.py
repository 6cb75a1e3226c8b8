"""Fixtures shared by the model tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(cache))  # read from the env at import time
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    return cache
