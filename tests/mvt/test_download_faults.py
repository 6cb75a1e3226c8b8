"""Downloads killed halfway (tests/mirror.py drops the connection, or the downloading process is SIGKILLed):
nothing partial is ever taken from the cache or left in it, and the next request downloads the file whole."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import mvt
from mvt import weights
from mvt.models.vivit import HF_REPO, HF_REVISION
from mvt.weights import WeightsSource
from mvt.weights.fetch import remove_dead_partials
from tests.mirror import vivit_hub_config

HUB = WeightsSource(
    kind="hf", repo_id=HF_REPO, filename="pytorch_model.bin", revision=HF_REVISION, config_file="config.json"
)


def _files(root: Path) -> list[str]:
    """Every file under ``root`` (hidden ones too), relative."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _partials(root: Path) -> list[str]:
    return [f for f in _files(root) if f.endswith((".partial", ".incomplete"))]


def _url_source(mirror) -> tuple[WeightsSource, str, Path]:
    """A URL file whose name carries its own SHA-256 prefix (torch hub's rule), real size (a few MB)."""
    url, path, served = mirror.standard.serve_with_own_hash(mirror, "mvit_t", real_size=True)
    return WeightsSource(kind="url", url=url), path, served


def _hub_source(mirror) -> tuple[str, Path]:
    """The hub file (vivit_t1 stand-in under the real repo's names); its cdn path and the served file."""
    labels = mvt.get_spec("vivit_t1.untrained").labels
    mirror.add_hf(HF_REPO, "config.json", json.dumps(vivit_hub_config("vivit_t1", labels)).encode())
    _, blob = mirror.hf_paths(HF_REPO, "pytorch_model.bin")
    return blob, mirror.standard.vivit("vivit_t1")()


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def test_a_url_download_cut_halfway_fails_leaves_nothing_and_the_next_request_succeeds(weights_mirror):
    m = weights_mirror
    source, path, served = _url_source(m)
    m.set_mode("cut", path)
    with pytest.raises(weights.SizeMismatch, match="incomplete") as err:
        weights.resolve(source)
    assert 0 < err.value.actual < err.value.expected == served.stat().st_size
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    assert _files(checkpoints) == [] and weights.cached_path(source) is None, "nothing partial kept"
    got = weights.resolve(source)  # the mirror serves the next request whole
    assert _same_bytes(got, served) and _files(checkpoints) == [got.name]
    assert m.count(path, "GET") == 2


def test_a_hub_download_cut_halfway_is_resumed_and_checked(weights_mirror):
    """huggingface_hub resumes a dropped transfer with a Range request; the SHA-256 check (the LFS ETag) then
    proves the two halves make the file."""
    m = weights_mirror
    blob, served = _hub_source(m)
    m.set_mode("cut", blob)
    got = weights.resolve(HUB)
    assert _same_bytes(got, served)
    assert m.count(blob, "GET") == 2, "the cut transfer, then the rest of the file"
    assert _partials(weights.hf_cache_dir()) == []


def _download_in_a_child(source: WeightsSource) -> subprocess.Popen:
    """A separate Python process downloading ``source`` (the environment points it at the mirror)."""
    code = (
        "import sys, json; from mvt import weights; from mvt.weights import WeightsSource; "
        "weights.resolve(WeightsSource(**json.loads(sys.argv[1])))"
    )
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(asdict(source))], env=dict(os.environ))


def _kill_when(child: subprocess.Popen, root: Path, name: str, min_bytes: int) -> Path:
    """SIGKILL ``child`` once a partial file of ``name`` (a prefix) of at least ``min_bytes`` exists under
    ``root`` (0: half a second after it appeared, mid-transfer; huggingface_hub writes in 10 MB chunks)."""
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            assert child.poll() is None, "the child finished before it could be killed"
            found = [root / f for f in _partials(root) if Path(f).name.startswith(name)]
            if found and found[0].stat().st_size >= min_bytes:
                if not min_bytes:
                    time.sleep(0.5)
                assert child.poll() is None, "the child finished before it could be killed"
                child.send_signal(signal.SIGKILL)
                child.wait(10)
                return found[0]
            time.sleep(0.02)
        raise AssertionError("no partial file appeared")
    finally:
        child.kill()
        child.wait(10)


@pytest.mark.parametrize("kind", ["url", "hub"])
def test_a_process_killed_mid_download_leaves_no_partial_file_for_long(weights_mirror, kind):
    """A Space restarted (or a CLI killed) mid-download leaves a partial file its process can no longer
    remove. It is never taken as the file, and the next download — another process — removes it (nobody
    holds its lock any more) and fetches the whole file."""
    m = weights_mirror
    if kind == "url":
        source, path, served = _url_source(m)
        root = Path(torch.hub.get_dir()) / "checkpoints"
    else:
        path, served = _hub_source(m)
        source, root = HUB, weights.hf_cache_dir()
    m.set_mode("slow", path)  # 64 KiB every 20 ms: seconds for a few MB
    if kind == "url":
        left = _kill_when(_download_in_a_child(source), root, f".{Path(path).name}.", 256 * 1024)
    else:
        sha = hashlib.sha256(served.read_bytes()).hexdigest()  # the blob's name: its LFS ETag
        left = _kill_when(_download_in_a_child(source), root, f"{sha}.", 0)
    assert left.is_file() and left.stat().st_size < served.stat().st_size
    assert weights.cached_path(source) is None, "a partial file is never the file"
    m.set_mode("normal", path)
    time.sleep(
        2.1
    )  # fetch.py leaves partial files younger than 2 s alone (their creator may not hold the lock yet)
    got = weights.resolve(source)
    assert _same_bytes(got, served)
    assert _partials(root) == [], "the dead process's partial file was removed"


def test_a_live_download_in_another_process_keeps_its_partial_file(weights_mirror, monkeypatch):
    """The clean-up only takes partial files nobody holds: a download alive in another process — here
    waiting on a server that sends nothing, so its file is old — keeps its file, and removes it itself when
    it gives up."""
    m = weights_mirror
    source, path, _ = _url_source(m)
    root = Path(torch.hub.get_dir()) / "checkpoints"
    m.set_mode("stalled", path)
    monkeypatch.setenv("MVT_DOWNLOAD_TIMEOUT", "3")  # the child's
    child = _download_in_a_child(source)
    try:
        end = time.monotonic() + 60
        while not _partials(root) and time.monotonic() < end:
            time.sleep(0.02)
        time.sleep(2.1)  # old enough to be removed, were it not locked
        remove_dead_partials(weights.hub_cache_path(source))
        assert len(_partials(root)) == 1, "the live download's file stays"
        assert child.wait(60) != 0, "the child gave up (MVT_DOWNLOAD_TIMEOUT)"
    finally:
        child.kill()
        child.wait(10)
    assert _partials(root) == [] and weights.cached_path(source) is None
