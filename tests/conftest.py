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


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
"""Flags for Debian's Chromium here: no sandbox as root, and no background connections (there is no network)."""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    """The app launched in this process on a free port (module-scoped); closed afterwards."""
    import app

    _, url, _ = app.demo.launch(
        prevent_thread_lock=True,
        server_name="127.0.0.1",
        server_port=free_port(),
        ssr_mode=False,
        quiet=True,
        max_file_size=app.MAX_UPLOAD,
        allowed_paths=[str(app.OUT_DIR)],
    )
    yield url
    app.demo.close()
