"""mvt.video: probe, read_clip (which frames, orientation, sizes, timestamps, padding), limits, errors, writing.

Every clip is generated here (tests/mvt/clips.py); each frame shows its own index, so the tests check *which*
frame came back, not just how many.
"""

from __future__ import annotations

import contextlib

import av
import numpy as np
import pytest

import mvt.video.reading as reading
from mvt.video import (
    DEFAULT_LIMITS,
    MAX_WINDOWS,
    Clip,
    VideoError,
    VideoInfo,
    VideoLimits,
    probe,
    read_clip,
    read_windows,
    window_count,
    write_video,
)
from tests.mvt.clips import frame_index, is_upright, make_broken, make_clip, pattern_frame

VFR_TIMES = [i / 30 for i in range(20)] + [20 / 30 + k / 10 for k in range(20)]  # 30 fps, then 10 fps

# name -> (file name, make_clip kwargs, expected (codec, width, height, num_frames))
FORMATS = {
    "h264_mp4": ("a.mp4", {}, ("h264", 64, 48, 30)),
    "vp9_webm": ("b.webm", {"codec": "vp9"}, ("vp9", 64, 48, 30)),
    "live_webm": ("live.webm", {"codec": "vp8", "live": True}, ("vp8", 64, 48, 30)),
    "mpeg4_avi": ("c.avi", {"codec": "mpeg4"}, ("mpeg4", 64, 48, 30)),
    "gif": ("d.gif", {"codec": "gif"}, ("gif", 64, 48, 30)),
    "h264_10bit": ("ten.mp4", {"pix_fmt": "yuv420p10le"}, ("h264", 64, 48, 30)),
    "gray_ffv1": ("gray.mkv", {"codec": "ffv1", "pix_fmt": "gray"}, ("ffv1", 64, 48, 30)),
    "odd_vp9": ("odd.webm", {"codec": "vp9", "width": 33, "height": 17}, ("vp9", 33, 17, 30)),
    "odd_h264_444": ("odd.mp4", {"width": 33, "height": 17, "pix_fmt": "yuv444p"}, ("h264", 33, 17, 30)),
    "with_audio": ("av.mp4", {"audio": True}, ("h264", 64, 48, 30)),
    "vfr_mkv": ("vfr.mkv", {"n_frames": 40, "times": VFR_TIMES}, ("h264", 64, 48, 40)),
}


@pytest.fixture(scope="module")
def clipdir(tmp_path_factory):
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def clips(clipdir):
    """All FORMATS clips, plus a few special ones, made once per module."""
    out = {name: make_clip(clipdir / fname, **kw) for name, (fname, kw, _) in FORMATS.items()}
    out["one"] = make_clip(clipdir / "one.mp4", n_frames=1)
    out["short"] = make_clip(clipdir / "short.mp4", n_frames=5)
    for deg in (90, -90, 180):
        with contextlib.suppress(AttributeError):  # old av cannot write a display matrix
            out[f"rot{deg}"] = make_clip(clipdir / f"rot{deg}.mp4", rotation=deg)
    # long and small: 900 frames (30 s), a keyframe every second, B-frames (decode order != display order)
    out["long"] = make_clip(
        clipdir / "long.mp4", n_frames=900, width=32, height=24, gop=30, bframes=3, preset="veryfast"
    )
    out["long_live"] = make_clip(
        clipdir / "long_live.webm", n_frames=450, width=32, height=24, codec="vp8", live=True
    )
    return out


@pytest.fixture
def reader_log(monkeypatch):
    """Records each _Reader made by read_clip, with the decode paths it took and the frames it decoded."""
    log = []

    class Recorder(reading._Reader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.paths, self.converted = [], 0
            log.append(self)

        def convert(self, frame):
            self.converted += 1
            return super().convert(frame)

        def seeking(self, wanted):
            try:
                result = super().seeking(wanted)
            except reading._SeekUnreliable:
                self.paths.append("seek-failed")
                raise
            self.paths.append("seek")
            return result

        def sequential(self, wanted):
            self.paths.append("sequential")
            return super().sequential(wanted)

    monkeypatch.setattr(reading, "_Reader", Recorder)
    return log


def _rotated(clips, deg: int):
    if f"rot{deg}" not in clips:
        pytest.skip("this PyAV cannot write rotated test clips")
    return clips[f"rot{deg}"]


def _upright(clip: Clip) -> list[np.ndarray]:
    k = clip.info.rotation // 90
    return [np.rot90(f, -k) for f in clip.frames]


def _assert_friendly(err: pytest.ExceptionInfo, name: str) -> None:
    """The message names the file, says what to do, and is not just FFmpeg's or IndexError's text."""
    msg = str(err.value)
    head = msg.split(" (detail:")[0]
    assert head.startswith(name + ":"), msg
    assert len(head) > len(name) + 20, msg
    for raw in ("Invalid data found", "[Errno", "list index out of range", "tuple index"):
        assert raw not in head, msg


# ------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("name", list(FORMATS))
def test_probe_and_read_every_format(clips, name):
    codec, width, height, n = FORMATS[name][2]
    info = probe(clips[name])
    assert isinstance(info, VideoInfo)
    assert (info.codec, info.width, info.height, info.num_frames) == (codec, width, height, n)
    assert info.rotation == 0 and info.size_bytes == clips[name].stat().st_size
    assert info.has_audio == (name == "with_audio")
    clip = read_clip(clips[name], num_frames=8)
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (8, height, width, 3)
    expected = np.rint(np.linspace(0, n - 1, 8)).astype(int)
    np.testing.assert_array_equal(clip.indices, expected)
    assert [frame_index(f) for f in clip.frames] == expected.tolist()
    assert all(is_upright(f, color=name != "gray_ffv1") for f in clip.frames)
    true_times = np.asarray(VFR_TIMES if name == "vfr_mkv" else np.arange(n) / 30.0)
    tol = 0.011 if name == "gif" else 0.002  # GIF stores delays in 1/100 s
    np.testing.assert_allclose(clip.times, true_times[expected], atol=tol)
    assert clip.notes == []


def test_bit_depth_and_pixel_format_are_reported(clips):
    assert probe(clips["h264_10bit"]).bit_depth == 10
    assert probe(clips["gray_ffv1"]).pix_fmt.startswith("gray")
    assert probe(clips["h264_mp4"]).bit_depth == 8


def test_live_webm_without_duration_is_counted(clips):
    path = clips["live_webm"]
    with av.open(str(path)) as c:  # the premise: the container stores neither duration nor frame count
        assert c.duration is None and c.streams.video[0].frames == 0
    info = probe(path)
    assert info.frames_counted and info.num_frames == 30
    assert info.duration_s == pytest.approx(1.0, abs=0.01) and info.fps == pytest.approx(30, rel=0.01)
    assert not probe(clips["h264_mp4"]).frames_counted


def test_vfr_is_detected_and_sampled_by_timestamp(clips):
    info = probe(clips["vfr_mkv"])
    assert info.is_vfr is True and info.frames_counted
    assert info.duration_s == pytest.approx(VFR_TIMES[-1] + 0.1, abs=0.01)
    has_index = hasattr(
        av.video.stream.VideoStream, "index_entries"
    )  # newer av: CFR measurable from the mp4 index
    assert probe(clips["h264_mp4"]).is_vfr is (False if has_index else None)
    clip = read_clip(clips["vfr_mkv"], num_frames=4, start_s=1.0)  # 1.0 s falls in the 10 fps part
    first = int(np.searchsorted(VFR_TIMES, 1.0 - 1e-6))
    assert clip.indices[0] == first and frame_index(clip.frames[0]) == first
    assert clip.times[0] == pytest.approx(VFR_TIMES[first], abs=0.002)


# ------------------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("deg", [90, -90, 180])
def test_rotation_is_applied_as_displayed(clips, deg):
    path = _rotated(clips, deg)
    info = probe(path)
    assert info.rotation == deg % 360
    clip = read_clip(path, num_frames=3)
    shape = (48, 64) if deg == 180 else (64, 48)
    assert clip.frames.shape == (3, *shape, 3) and (info.height, info.width) == shape
    # rotation is counter-clockwise (PyAV frame.rotation, FFmpeg display matrix; platform.md §3.4 checked
    # np.rot90(k=rotation/90) against the ffmpeg CLI's autorotate). The stored top-left white marker cell
    # therefore ends up bottom-left for +90, top-right for -90 and bottom-right for 180.
    first = clip.frames[0].astype(float).mean(-1)
    h, w = first.shape
    corners = {
        "tl": first[: h // 8, : w // 8],
        "bl": first[-h // 8 :, : w // 8],
        "tr": first[: h // 8, -w // 8 :],
    }
    corners["br"] = first[-h // 8 :, -w // 8 :]
    white = {90: "bl", -90: "tr", 180: "br"}[deg]
    assert corners[white].mean() > 200, {k: v.mean() for k, v in corners.items()}
    assert all(is_upright(f) for f in _upright(clip))
    assert [frame_index(f) for f in _upright(clip)] == clip.indices.tolist()


@pytest.mark.parametrize(
    ("name", "size", "shape"),
    [
        ("h264_mp4", 32, (32, 43)),
        ("rot90", 32, (43, 32)),
        ("odd_vp9", 16, (16, 31)),
        ("h264_mp4", 96, (96, 128)),
    ],
)
def test_short_side_resized_keeping_aspect(clips, name, size, shape):
    path = _rotated(clips, 90) if name == "rot90" else clips[name]
    clip = read_clip(path, num_frames=4, size=size)
    assert clip.frames.shape == (4, *shape, 3)
    assert [frame_index(f) for f in _upright(clip)] == clip.indices.tolist()


# ------------------------------------------------------------------------------------------- sampling


def test_stride_window_is_centred_by_default(clips):
    clip = read_clip(clips["h264_mp4"], num_frames=4, stride=3)  # span 10 of 30 frames -> starts at 10
    assert clip.indices.tolist() == [10, 13, 16, 19]
    assert [frame_index(f) for f in clip.frames] == [10, 13, 16, 19]
    np.testing.assert_allclose(clip.times, np.array([10, 13, 16, 19]) / 30, atol=0.002)
    assert clip.sample_fps == pytest.approx(10.0)


def test_windows_reach_both_ends_and_one_window_is_read_clips(clips, reader_log):
    # 30 frames, windows of 4 every 3rd frame (span 10): 3 tile the clip
    w = read_windows(clips["h264_mp4"], num_frames=4, stride=3, count=2)
    assert [c.indices.tolist() for c in w] == [[0, 3, 6, 9], [20, 23, 26, 29]], "first and last frame"
    assert [[frame_index(f) for f in c.frames] for c in w] == [c.indices.tolist() for c in w]
    np.testing.assert_allclose(w[1].times, np.array([20, 23, 26, 29]) / 30, atol=0.002)
    assert len(reader_log) == 1, "every window in one decode"
    every = read_windows(clips["h264_mp4"], num_frames=4, stride=3, count=None)
    assert [c.indices[0] for c in every] == [0, 10, 20] and window_count(30, 4, 3, None) == (3, 3)
    assert len(read_windows(clips["h264_mp4"], num_frames=4, stride=3, count=9)) == 3, "never more than tile"
    (one,) = read_windows(clips["h264_mp4"], num_frames=4, stride=3, count=1)
    centred = read_clip(clips["h264_mp4"], num_frames=4, stride=3)
    assert one.indices.tolist() == centred.indices.tolist() and np.array_equal(one.frames, centred.frames)
    long = read_windows(clips["long"], num_frames=4, stride=1, count=None, size=24)
    assert len(long) == MAX_WINDOWS and long[-1].indices[-1] == 899, "a long clip: evenly spaced, to its end"
    (short,) = read_windows(clips["short"], num_frames=8, stride=1)
    assert short.indices.tolist() == [0, 1, 2, 3, 4, 4, 4, 4] and "repeating the last frame" in short.notes[0]


def test_stride_from_start_s(clips):
    clip = read_clip(clips["vp9_webm"], num_frames=4, stride=3, start_s=0.5)
    assert clip.indices.tolist() == [15, 18, 21, 24]
    assert [frame_index(f) for f in clip.frames] == [15, 18, 21, 24]


def test_short_clip_padding_is_reported(clips):
    uniform = read_clip(clips["short"], num_frames=8)
    assert uniform.indices.tolist() == [0, 1, 1, 2, 2, 3, 3, 4]
    assert [frame_index(f) for f in uniform.frames] == uniform.indices.tolist()
    assert len(uniform.notes) == 1 and "5 frames" in uniform.notes[0] and "pad" in uniform.notes[0]
    strided = read_clip(clips["short"], num_frames=4, stride=2)
    assert strided.indices.tolist() == [0, 2, 4, 4]
    assert "repeating the last frame" in strided.notes[0]
    one = read_clip(clips["one"], num_frames=4, size=16)
    assert one.frames.shape == (4, 16, 21, 3) and one.indices.tolist() == [0, 0, 0, 0]
    assert "1 frame;" in one.notes[0]
    assert probe(clips["one"]).num_frames == 1


def test_start_past_end_is_a_clear_error(clips):
    with pytest.raises(VideoError, match="past the end") as err:
        read_clip(clips["h264_mp4"], num_frames=4, stride=2, start_s=5.0)
    _assert_friendly(err, "a.mp4")


def test_long_clip_is_read_by_seeking_not_by_decoding_everything(clips, reader_log):
    clip = read_clip(clips["long"], num_frames=8, size=24)
    expected = np.rint(np.linspace(0, 899, 8)).astype(int).tolist()
    assert clip.indices.tolist() == expected
    assert [frame_index(f) for f in clip.frames] == expected
    (reader,) = reader_log
    assert reader.paths == ["seek"] and reader.converted == 8


def test_long_clip_decode_count(clips, monkeypatch):
    """Seeking decodes about one GOP per wanted frame, far fewer than the 900 frames of the file."""
    decoded = []
    real = reading._Reader._frame_time

    def counting(self, frame):
        decoded.append(frame.pts)
        return real(self, frame)

    monkeypatch.setattr(reading._Reader, "_frame_time", counting)
    read_clip(clips["long"], num_frames=8)
    assert len(decoded) < 8 * 30 + 30, len(decoded)


@pytest.mark.parametrize("lie", ["overshoot", "noop"])
def test_lying_seek_falls_back_and_stays_correct(clips, reader_log, monkeypatch, lie):
    def bad_seek(container, stream, pts):
        if lie == "overshoot":  # lands 3 s after the target, as a broken index would
            container.seek(pts + int(3 / float(stream.time_base)), stream=stream, backward=False)

    monkeypatch.setattr(reading._Reader, "_seek", staticmethod(bad_seek))
    clip = read_clip(clips["long"], num_frames=6)
    expected = np.rint(np.linspace(0, 899, 6)).astype(int).tolist()
    assert [frame_index(f) for f in clip.frames] == expected
    if lie == "overshoot":
        assert reader_log[0].paths == ["seek-failed", "sequential"]


def test_long_live_webm(clips, reader_log):
    info = probe(clips["long_live"])
    assert info.frames_counted and info.num_frames == 450
    clip = read_clip(clips["long_live"], num_frames=5, stride=100)
    assert clip.indices.tolist() == [24, 124, 224, 324, 424]  # (450 - 401) // 2 = 24
    assert [frame_index(f) for f in clip.frames] == clip.indices.tolist()


def test_truncated_but_openable_mp4_uses_the_frames_that_exist(clipdir):
    good = make_clip(clipdir / "fast.mp4", n_frames=60, faststart=True)  # index first, so half still opens
    cut = clipdir / "cut.mp4"
    data = good.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    clip = read_clip(cut, num_frames=6)
    n = clip.indices.max() + 1
    assert 5 < n < 60
    assert [frame_index(f) for f in clip.frames] == clip.indices.tolist()
    assert any("truncated" in note for note in clip.notes)


def test_corrupted_middle_never_crashes(clipdir):
    good = make_clip(clipdir / "tocorrupt.mp4", n_frames=60)
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(1)
    mid = len(data) // 3
    data[mid : mid + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    bad = clipdir / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    try:
        clip = read_clip(bad, num_frames=8)
    except VideoError as e:
        assert str(e).startswith("corrupt.mp4:")
    else:
        assert clip.frames.shape == (8, 48, 64, 3)


# ------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kind", "pattern"),
    [
        ("empty", "empty"),
        ("text", "not a video"),
        ("random", "not a video|corrupt"),
        ("truncated", "truncated or corrupt"),
        ("audio_only", "only audio, no video stream"),
        ("audio_cover", "only audio, no video stream"),
        ("unknown_codec", "codec .* not supported"),
    ],
)
def test_broken_files_raise_clear_errors(tmp_path, kind, pattern):
    path = make_broken(tmp_path)[kind]
    for call in (lambda: probe(path), lambda: read_clip(path, num_frames=4)):
        with pytest.raises(VideoError, match=pattern) as err:
            call()
        assert isinstance(err.value, ValueError)
        _assert_friendly(err, path.name)


def test_text_file_named_txt_is_not_a_video(tmp_path):
    path = tmp_path / "readme.txt"
    path.write_text("FFmpeg would play this as ANSI art\n" * 40)
    with pytest.raises(VideoError, match="not a video") as err:
        probe(path)
    _assert_friendly(err, "readme.txt")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(VideoError, match="not found") as err:
        probe(tmp_path / "nope.mp4")
    _assert_friendly(err, "nope.mp4")
    folder = tmp_path / "dir.mp4"
    folder.mkdir()
    with pytest.raises(VideoError, match="not a regular file"):
        read_clip(folder, num_frames=2)


@pytest.mark.parametrize(
    ("limits", "pattern", "name"),
    [
        (VideoLimits(max_bytes=1000), "MB limit", "h264_mp4"),
        (VideoLimits(max_duration_s=0.5), "min limit", "h264_mp4"),
        (VideoLimits(max_duration_s=0.5), "min limit", "live_webm"),  # duration only known by counting
        (VideoLimits(max_pixels=32 * 32), "pixels", "h264_mp4"),
        (VideoLimits(max_decode_s=0.0), "took longer", "live_webm"),  # in the counting pass
        (VideoLimits(max_decode_s=0.0), "took longer", "h264_mp4"),  # in the decode loop
        (VideoLimits(max_clip_bytes=10_000), "GiB", "h264_mp4"),
    ],
)
def test_limits_give_clear_errors(clips, limits, pattern, name):
    with pytest.raises(VideoError, match=pattern) as err:
        read_clip(clips[name], num_frames=8, limits=limits)
    _assert_friendly(err, clips[name].name)


def test_default_limits_are_documented_values():
    assert DEFAULT_LIMITS.max_bytes == 500 * 1000 * 1000
    assert DEFAULT_LIMITS.max_duration_s == 1800
    assert DEFAULT_LIMITS.max_pixels == 4096 * 4096
    assert DEFAULT_LIMITS.max_decode_s > 0


def test_bad_arguments_are_value_errors(clips):
    for kwargs in ({"num_frames": 0}, {"num_frames": 4, "stride": 0}, {"num_frames": 4, "size": -1}):
        with pytest.raises(ValueError):
            read_clip(clips["h264_mp4"], **kwargs)


# ------------------------------------------------------------------------------------------- writing


def test_write_h264_pads_odd_sizes_and_is_faststart(tmp_path):
    frames = np.stack([pattern_frame(i, 17, 33) for i in range(12)])
    out = write_video(frames, tmp_path / "out.mp4", fps=7.5)
    assert out == str(tmp_path / "out.mp4")
    data = (tmp_path / "out.mp4").read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat"), "index must come first (+faststart)"
    info = probe(out)
    assert (info.codec, info.pix_fmt, info.width, info.height) == ("h264", "yuv420p", 34, 18)
    assert info.num_frames == 12 and info.fps == pytest.approx(7.5)
    clip = read_clip(out, num_frames=12)
    assert [frame_index(f[:17, :33]) for f in clip.frames] == list(range(12))
    np.testing.assert_array_equal(clip.frames[:, :, 33].astype(int), clip.frames[:, :, 32].astype(int))


def test_write_gif_round_trip(tmp_path):
    frames = np.stack([pattern_frame(i, 48, 64) for i in range(6)])
    out = write_video(frames, tmp_path / "out.gif", fps=10, codec="gif")
    info = probe(out)
    assert info.container == "gif" and info.num_frames == 6 and info.fps == pytest.approx(10, rel=0.05)
    clip = read_clip(out, num_frames=6)
    assert [frame_index(f) for f in clip.frames] == list(range(6))
    assert all(is_upright(f) for f in clip.frames)


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_video(np.zeros((2, 8, 8, 3), np.float32), tmp_path / "x.mp4", fps=10)
    with pytest.raises(ValueError, match="fps"):
        write_video(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "x.mp4", fps=0)
    with pytest.raises(VideoError, match="could not be written"):
        write_video(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "no" / "such" / "x.mp4", fps=10)


@pytest.mark.parametrize(
    "exc",
    [IndexError("list index out of range"), av.error.InvalidDataError(1094995529, "Invalid data found")],
)
def test_errors_during_decode_become_video_errors(clips, monkeypatch, exc):
    def broken(self, frame):
        raise exc

    monkeypatch.setattr(reading._Reader, "_frame_time", broken)
    for name in ("h264_mp4", "long"):  # sequential and seeking paths
        with pytest.raises(VideoError, match="could not be read") as err:
            read_clip(clips[name], num_frames=4)
        _assert_friendly(err, clips[name].name)


def test_still_image_is_a_one_frame_clip(tmp_path):
    from PIL import Image

    Image.fromarray(pattern_frame(5, 48, 64)).save(tmp_path / "still.png")
    clip = read_clip(tmp_path / "still.png", num_frames=3)
    assert clip.frames.shape == (3, 48, 64, 3) and clip.info.num_frames == 1
    assert [frame_index(f) for f in clip.frames] == [5, 5, 5] and clip.notes


def test_make_video_fixture_for_other_tests(make_video):
    path = make_video("f.webm", n_frames=6, codec="vp9")
    assert probe(path).num_frames == 6


def test_name_that_looks_like_a_protocol_is_read_as_a_file(make_video):
    path = make_video("rtmp:clip.mp4", n_frames=6)  # FFmpeg would otherwise try the rtmp protocol
    clip = read_clip(path, num_frames=2)
    assert [frame_index(f) for f in clip.frames] == [0, 5]
