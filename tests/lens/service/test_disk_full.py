"""The output folder full (a real ``ENOSPC`` from a 32 MB tmpfs, filled): each panel says so in place, no
half-written file is left where the app would serve it, the export fails with the same sentence, and once
there is room again the same request succeeds (the error was not cached)."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

import lens
import mvt
from lens.ui import present
from tests.test_app import make_moving_square

MODELS = ["hvt_t.untrained", "mvit_t.untrained"]


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MB tmpfs at ``tmp_path/disk`` (mounting needs root: CI runs as root; elsewhere this is skipped and
    says why)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Write a file until the disk is full; returns it."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return filler


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_full_disk_is_said_in_each_panel_leaves_no_half_file_and_passes(small_disk, tmp_path):
    clip = make_moving_square(tmp_path / "clip.mp4", frames=16, size=64, seed=8)  # on the ordinary disk
    svc = lens.Service(out_dir=small_disk / "out")
    analysis = svc.analyse(clip, MODELS, ["rollout"])
    session = svc.session_dir("visitor")
    filler = _fill(small_disk)

    panels = svc.render(analysis, lens.Display("attention"), folder=session)
    url = lambda p: f"gradio_api/file={p}"  # noqa: E731
    for i, p in enumerate(panels):
        assert p.error and "disk is full" in p.error and p.frames is None, p.error
        slot = present.panel_screen(p, i, url, svc.labels(p.name))
        assert 'data-error="1"' in slot.html and "The server&#x27;s disk is full" in slot.html
    assert _files(small_disk) == ["filler"], "no file, whole or partial, was left to serve"

    with pytest.raises(lens.LensError, match="disk is full, so the export could not be written"):
        svc.export(analysis, folder=session)
    assert _files(small_disk) == ["filler"] and not list(session.glob("export-*"))

    filler.unlink()  # room again: the same request succeeds
    panels = svc.render(analysis, lens.Display("attention"), folder=session)
    assert all(p.error is None and p.frames.is_file() for p in panels), [p.error for p in panels]
    for p in panels:
        assert mvt.probe(p.overlay).num_frames == len(p.times), "a whole video"
    assert svc.export(analysis, folder=session).is_file()
