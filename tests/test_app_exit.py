"""``python app.py`` as a Space runs it: stopped with SIGTERM (or Ctrl-C), it cleans up as at a normal exit — the
service's folder, every session's files in it, is deleted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_app import make_moving_square

ROOT = Path(__file__).resolve().parent.parent


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited with {proc.returncode}: {proc.stdout.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1.0)
    pytest.fail(f"app.py did not answer at {url} within {timeout:.0f} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_leaves_no_session_folder(tmp_path, sig):
    gradio_client = pytest.importorskip("gradio_client")
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "GRADIO_SERVER_PORT": str(port), "MVT_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_NAME": "127.0.0.1"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_up(url, proc)
        clip = make_moving_square(tmp_path / "clip.mp4", seed=2)
        client = gradio_client.Client(url, verbose=False)
        client.predict(
            clip=gradio_client.handle_file(str(clip)),
            models=["mvit_t.untrained"],
            methods=["attention"],
            api_name="/analyse",
        )
        sessions = list(tmp_path.glob("mvt-lens-*/session-*"))
        assert sessions, f"the request made a session folder: {list(tmp_path.iterdir())}"
        proc.send_signal(sig)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not list(tmp_path.glob("mvt-lens-*")), "the service's folder (and every session in it) is deleted"
