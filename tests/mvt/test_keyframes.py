"""read_clip(..., keyframes=True): uniform samples of a long clip snapped to keyframes, times reported truthfully.

The clip's frames show their own index (tests/mvt/clips.py), so each test checks which frame came back and
that ``Clip.times`` / ``Clip.indices`` are that frame's own time and index.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

import mvt.video.reading as reading
from mvt.video import read_clip
from tests.mvt.clips import frame_index, make_clip

FPS, GOP, N = 30, 150, 900  # 30 s at 30 fps, a keyframe every 5 s


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory):
    path = tmp_path_factory.mktemp("kf") / "long_gop.mp4"
    return make_clip(path, n_frames=N, width=32, height=24, gop=GOP, bframes=2, preset="veryfast")


@pytest.fixture
def decoded(monkeypatch):
    """Every frame the reader decodes (its pts), in order."""
    seen: list[int] = []
    real = reading._Reader._frame_time

    def counting(self, frame):
        seen.append(frame.pts)
        return real(self, frame)

    monkeypatch.setattr(reading._Reader, "_frame_time", counting)
    return seen


def _uniform(n: int) -> np.ndarray:
    return np.rint(np.linspace(0, N - 1, n)).astype(int)


def _keyframes(path) -> list[int]:
    """Indices of the keyframes (x264 adds some at scene cuts besides every GOP-th frame)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        pts = sorted((p.pts, p.is_keyframe) for p in c.demux(stream) if p.pts is not None)
    return [i for i, (_, key) in enumerate(pts) if key]


def _key_before(keys: list[int], i: int) -> int:
    return max(k for k in keys if k <= i)


def test_snapped_frames_are_keyframes_and_times_are_their_own(long_gop, decoded):
    clip = read_clip(long_gop, num_frames=6, keyframes=True)
    got = [frame_index(f) for f in clip.frames]
    assert clip.indices.tolist() == got, "indices name the frames returned"
    np.testing.assert_allclose(clip.times, np.asarray(got) / FPS, atol=1e-6)  # the decoded frames' times
    keys = _keyframes(long_gop)
    assert got == [_key_before(keys, int(u)) for u in _uniform(6)], "each the keyframe before its sample"
    assert (clip.indices <= _uniform(6)).all() and (np.diff(clip.indices) > 0).all()
    assert any("snapped to keyframes" in n for n in clip.notes)
    assert len(decoded) <= 6 * 4, f"about one decode per frame, not a GOP each ({len(decoded)})"


def test_exact_sampling_decodes_far_more(long_gop, decoded):
    clip = read_clip(long_gop, num_frames=6)
    assert [frame_index(f) for f in clip.frames] == _uniform(6).tolist()
    assert len(decoded) > 6 * 20


def test_samples_sharing_a_keyframe_are_decoded_exactly_never_twice(long_gop):
    clip = read_clip(long_gop, num_frames=16, keyframes=True)  # ~60 frames apart: several per 150-frame GOP
    got = [frame_index(f) for f in clip.frames]
    assert clip.indices.tolist() == got and len(set(got)) == 16 and (np.diff(got) > 0).all()
    keys, exact = _keyframes(long_gop), 0
    for g, u in zip(got, _uniform(16).tolist()):
        assert g == _key_before(keys, u) or g == u, (g, u)
        exact += g == u and g not in keys
    assert exact > 0, "some samples shared a keyframe and were decoded exactly"
    np.testing.assert_allclose(clip.times, np.asarray(got) / FPS, atol=1e-6)


def test_strided_and_short_reads_ignore_the_option(long_gop, tmp_path):
    a = read_clip(long_gop, num_frames=8, stride=4, keyframes=True)
    b = read_clip(long_gop, num_frames=8, stride=4)
    assert a.indices.tolist() == b.indices.tolist() and np.array_equal(a.frames, b.frames)
    short = make_clip(tmp_path / "short.mp4", n_frames=60, width=32, height=24, gop=30)
    c = read_clip(short, num_frames=5, keyframes=True)
    assert [frame_index(f) for f in c.frames] == np.rint(np.linspace(0, 59, 5)).astype(int).tolist()
