"""lens.uploads under hostile clips: a preview never encodes more than PREVIEW_FPS frames a second."""

from __future__ import annotations

import av
import numpy as np

import mvt
from lens.ui import uploads


def test_a_high_frame_rate_upload_gets_a_preview_of_at_most_30_frames_a_second(tmp_path):
    """480 frames at 240 fps in Matroska (browsers do not play it, so a preview is made): the preview spans
    the same 2 s with 30 frames a second, not 480 frames to encode."""
    fast = tmp_path / "fast.mkv"
    with av.open(str(fast), "w", format="matroska") as out:
        s = out.add_stream("libx264", rate=240)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for i in range(480):
            rgb = np.full((32, 32, 3), i % 256, np.uint8)
            for packet in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    up = uploads.prepare(fast, tmp_path)
    assert up.preview is not None and up.original == str(fast)
    assert mvt.probe(fast).num_frames == 480
    shown = mvt.probe(up.preview)
    assert shown.num_frames <= 2 * uploads.PREVIEW_FPS + 1, shown.summary()
    assert abs(shown.duration_s - 2.0) < 0.1, shown.summary()
