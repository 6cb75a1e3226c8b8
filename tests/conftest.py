"""Shared test settings: no telemetry, no network, caches in temporary directories."""

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def make_video(tmp_path):
    """Factory for synthetic clips whose frames show their own index (see tests/mvt/clips.py).

    ``make_video("c.webm", n_frames=20, codec="vp9")`` -> Path in this test's tmp dir.
    """
    from tests.mvt.clips import make_clip

    def make(name: str = "clip.mp4", **kwargs):
        return make_clip(tmp_path / name, **kwargs)

    return make
