"""Decompression bombs and slow clips against mvt.video's limits: a tiny file declaring a huge picture or a
million frames is refused before FFmpeg allocates or counts them, a stream that turns huge midway stops
there, and a clip that decodes for longer than ``max_decode_s`` is stopped with a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mvt.video import DEFAULT_LIMITS, VideoError, VideoLimits, probe, read_clip, write_video
from tests.mvt.bombs import h264_declaring, mp4_declaring_frames

ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
import json, resource, sys, time
from mvt.video import VideoError, probe, read_clip
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.monotonic()
out = {}
try:
    clip = read_clip(sys.argv[1], num_frames=4) if sys.argv[2] == "read" else probe(sys.argv[1])
    out["indices"] = [int(i) for i in getattr(clip, "indices", [])]
    out["notes"] = list(getattr(clip, "notes", []))
except VideoError as e:
    out["error"] = str(e)
out["seconds"] = time.monotonic() - t0
out["grew_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(out))
"""


def _in_a_child(path: Path, what: str) -> dict:
    """``probe`` or ``read_clip`` of ``path`` in a fresh process; what it said and how much its peak memory
    grew (a fresh process, so the bomb's allocations are not hidden by an earlier peak)."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), what], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_tiny_file_declaring_a_16000_square_picture_is_refused_before_any_is_allocated(tmp_path):
    """Without the decoders' ``max_pixels``, opening this 1 kB file made FFmpeg's stream probe decode
    16000×16000 pictures: 17 s and 1.2 GB of peak memory, before any limit of ours could look."""
    bomb = h264_declaring(tmp_path / "bomb.h264", 16000, 16000)
    assert bomb.stat().st_size < 4096
    for what in ("probe", "read"):
        got = _in_a_child(bomb, what)
        assert "16000x16000, more than the limit" in got.get("error", ""), got
        assert got["grew_mb"] < 300, f"{what}: peak memory grew by {got['grew_mb']:.0f} MB"


def test_a_stream_that_declares_a_huge_picture_midway_stops_there(tmp_path):
    """Eight honest 32×32 frames, then a new SPS declaring 16000×16000: the decoder refuses the big pictures
    (``max_pixels``), so the clip is sampled from the frames before, and says so."""
    bomb = h264_declaring(tmp_path / "switch.h264", 16000, 16000, then_frames=8)
    got = _in_a_child(bomb, "read")
    assert "error" not in got and max(got["indices"]) <= 7, got
    assert any("damaged after that point" in n for n in got["notes"]), got["notes"]
    assert got["grew_mb"] < 300, f"peak memory grew by {got['grew_mb']:.0f} MB"


def test_a_tiny_file_declaring_a_million_frames_is_refused_before_they_are_counted(tmp_path):
    bomb = mp4_declaring_frames(tmp_path / "million.mp4")  # 1000 s at 1000 fps: within the duration limit
    assert bomb.stat().st_size < 4096
    for call in (lambda: probe(bomb), lambda: read_clip(bomb, num_frames=8)):
        with pytest.raises(VideoError, match=r"at least 1,000,000 frames, more than the limit of 250,000"):
            call()
    assert DEFAULT_LIMITS.max_frames == 250_000


def test_the_counting_pass_stops_at_the_frame_limit(tmp_path):
    """A raw stream stores no frame count, so probe counts its packets; it stops once past ``max_frames``."""
    stream = h264_declaring(tmp_path / "many.h264", 32, 32, frames=1100)  # the honest size: 1100 frames
    assert probe(stream).num_frames == 1100
    with pytest.raises(VideoError, match=r"at least 1,025 frames, more than the limit of 600"):
        probe(stream, VideoLimits(max_frames=600))  # checked every 512 packets: stopped at the third check


def test_a_clip_that_decodes_for_longer_than_the_limit_is_stopped_with_a_clear_error(tmp_path):
    """300 frames decoded one after another (no seeking for a clip this short); with a budget of a quarter
    of what the whole decode takes here, the call stops soon after the budget, saying why."""
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, size=(300, 240, 320, 3), dtype=np.uint8)  # noise: every frame costs
    path = write_video(video, tmp_path / "slow.mp4", fps=25)
    t0 = time.monotonic()
    read_clip(path, num_frames=300, limits=VideoLimits(max_decode_s=600))
    whole = time.monotonic() - t0
    budget = whole / 4
    t0 = time.monotonic()
    with pytest.raises(
        VideoError, match=rf"took longer than the {budget:g} s limit \(VideoLimits.max_decode_s\)"
    ):
        read_clip(path, num_frames=300, limits=VideoLimits(max_decode_s=budget))
    stopped = time.monotonic() - t0
    assert stopped < whole * 0.75, (
        f"stopped after {stopped:.2f} s of a {whole:.2f} s decode (budget {budget:.2f} s)"
    )
