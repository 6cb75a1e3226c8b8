"""Shared test settings: no telemetry, no network, caches in temporary directories."""

import os
import shutil
from pathlib import Path

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


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (one per test module)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed (apt-get install -y chromium); .ci/run installs it")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


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
        **app.LAUNCH,
    )
    yield url
    app.demo.close()


@pytest.fixture(scope="session")
def _mirror_server(tmp_path_factory):
    """One loopback mirror for the session (tests/mirror.py); its files are built lazily and kept."""
    from tests.mirror import Files, Mirror, Standard

    mirror = Mirror()
    mirror.standard = Standard(Files(tmp_path_factory.mktemp("mirror-files")))
    yield mirror
    mirror.close()


@pytest.fixture
def weights_mirror(_mirror_server, tmp_path, monkeypatch):
    """The mirror with its standard files, every path ``normal`` and counts at zero, and this process pointed
    at it: ``MVT_WEIGHTS_MIRROR`` and ``HF_ENDPOINT`` = ``mirror.url``, empty ``TORCH_HOME`` / ``HF_HOME`` in
    ``tmp_path``, downloads allowed, ``MVT_DOWNLOAD_TIMEOUT=5``. See tests/mirror.py for its API."""
    from mvt import weights

    m = _mirror_server
    m.reset()
    m.clear_files()
    m.standard.install(m)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "MVT_OFFLINE",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MVT_WEIGHTS_MIRROR", m.url)
    monkeypatch.setenv("HF_ENDPOINT", m.url)
    monkeypatch.setenv("MVT_DOWNLOAD_TIMEOUT", "5")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(
        hub_constants, "HF_HUB_OFFLINE", False
    )  # read once at import; tests must not depend on it
    weights.forget_probes()
    yield m
    m.reset()  # stalled connections closed: a download a test gave up on ends (or retries) now, not in the next test
    _downloads_ended(timeout=20.0)
    weights.forget_probes()


def _downloads_ended(timeout: float) -> None:
    """Until no download worker thread (``mvt-download …``) is alive, at most ``timeout`` seconds: a worker whose
    callers gave up (a stalled server) stops at its next chunk or request, and must not reach the mirror
    during the next test (huggingface_hub retries a request whose connection was closed)."""
    import threading
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(t.name.startswith("mvt-download") and t.is_alive() for t in threading.enumerate()):
            return
        time.sleep(0.05)
