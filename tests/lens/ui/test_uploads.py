"""lens.ui.uploads and lens.ui.examples: previews for what browsers cannot play, the examples' ground truth."""

from __future__ import annotations

import numpy as np
import pytest

import lens
import mvt
from lens import examples, uploads
from tests.test_app import make_moving_square


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_moving_square(tmp_path_factory.mktemp("uploads") / "square.mp4", seed=31)


def test_only_files_browsers_play_are_shown_as_they_are(tmp_path, clip):
    assert uploads.playable(mvt.probe(clip))
    info = mvt.probe(clip)
    from dataclasses import replace

    assert not uploads.playable(replace(info, codec="hevc"))
    assert not uploads.playable(replace(info, pix_fmt="yuv420p10le"))
    assert not uploads.playable(replace(info, codec="gif", container="gif"))
    up = uploads.prepare(clip, tmp_path)
    assert up.preview is None and up.shown == str(clip) and not list(tmp_path.glob("preview-*"))
    assert (
        uploads.original(str(clip), {"sha": lens.clips.file_sha256(clip), "original": "/x/orig.mkv"})
        == "/x/orig.mkv"
    )
    assert uploads.original(str(clip), {"sha": "other", "original": "/x/orig.mkv"}) == str(clip)


def test_the_synthmotion_examples_know_where_the_actor_is():
    shipped = {e.file: e for e in examples.available()}
    assert {"sports2d_backflip.mp4", "synth_move_left.mp4", "synth_10s.mp4"} <= set(shipped)
    path = shipped["synth_move_left.mp4"].path
    truth = examples.ground_truth(lens.clips.file_sha256(path))
    assert truth is not None and truth.masks.shape == (16, 112, 112) and truth.fps == 8.0
    decoded = mvt.read_clip(path, num_frames=16, stride=1, size=112).frames.astype(np.float32)
    assert np.abs(decoded - truth.frames).mean() < 12.0  # the same clip (H.264 and resize aside)
    # the actor moves left: the mask's centre goes left over time
    xs = [np.nonzero(m)[1].mean() for m in truth.at([0.0, 1.9])]
    assert xs[1] < xs[0] - 10
    assert truth.index([0.0, 0.124, 0.125, 99.0]).tolist() == [0, 0, 1, 15]
    pic = truth.picture([0.5])
    assert pic.shape == (1, 112, 112, 3) and pic.dtype == np.uint8
    assert examples.ground_truth(lens.clips.file_sha256(shipped["sports2d_backflip.mp4"].path)) is None
    long = examples.ground_truth(lens.clips.file_sha256(shipped["synth_10s.mp4"].path))
    assert long.masks.shape[0] == 256 and long.fps == 25.0
