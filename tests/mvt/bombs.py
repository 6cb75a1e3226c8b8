"""Decompression bombs for the video limits, made in the test, a few kB each: real streams whose headers
declare far more than their bytes hold.

* :func:`h264_declaring` — a raw H.264 stream (libx264, baseline) whose sequence parameter set is rewritten
  to declare another picture size (``then_frames``: the same stream appended with the new size, so the
  switch happens after frames that decode fine). A decoder that believes a 16000×16000 SPS allocates
  384 MB per picture and conceals a million missing macroblocks in each.
* :func:`mp4_declaring_frames` — an MP4 whose sample tables (constant sample size, one chunk) declare a
  million frames, with two in the file.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import av
import numpy as np

# -- H.264: rewrite the SPS ------------------------------------------------------------------------------------


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.u(zeros)


class _BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, v: int) -> None:
        self.bits += [(v >> (n - 1 - i)) & 1 for i in range(n)]

    def ue(self, v: int) -> None:
        v += 1
        self.u(v.bit_length() - 1, 0)
        self.u(v.bit_length(), v)

    def bytes(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def _unescape(b: bytes) -> bytes:
    """NAL payload → RBSP (drop the emulation-prevention 0x03 after two zero bytes)."""
    out, zeros = bytearray(), 0
    for x in b:
        if zeros >= 2 and x == 3:
            zeros = 0
            continue
        out.append(x)
        zeros = zeros + 1 if x == 0 else 0
    return bytes(out)


def _escape(b: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for x in b:
        if zeros >= 2 and x <= 3:
            out.append(3)
            zeros = 0
        out.append(x)
        zeros = zeros + 1 if x == 0 else 0
    return bytes(out)


def _sps_with_size(nal: bytes, width_mbs: int, height_mbs: int) -> bytes:
    """A baseline-profile SPS NAL (header byte first) with ``pic_width_in_mbs`` / ``pic_height_in_map_units``
    replaced; every other field copied bit for bit."""
    rbsp = _unescape(nal[1:])
    r, w = _BitReader(rbsp), _BitWriter()
    profile = r.u(8)
    assert profile == 66, "baseline profile expected (no chroma/scaling fields)"
    w.u(8, profile)
    w.u(8, r.u(8))  # constraint flags
    w.u(8, r.u(8))  # level
    w.ue(r.ue())  # seq_parameter_set_id
    w.ue(r.ue())  # log2_max_frame_num_minus4
    poc = r.ue()
    w.ue(poc)
    assert poc in (0, 2), "x264 baseline writes POC type 0 or 2"
    if poc == 0:
        w.ue(r.ue())  # log2_max_pic_order_cnt_lsb_minus4
    w.ue(r.ue())  # max_num_ref_frames
    w.u(1, r.u(1))  # gaps_in_frame_num_value_allowed_flag
    r.ue(), r.ue()
    w.ue(width_mbs - 1)
    w.ue(height_mbs - 1)
    for _ in range(len(rbsp) * 8 - r.pos):  # frame_mbs_only, cropping, VUI, trailing bits
        w.u(1, r.u(1))
    return nal[:1] + _escape(w.bytes())


def _h264(frames: int, side: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as out:
        s = out.add_stream("libx264", rate=25)
        s.width = s.height = side
        s.pix_fmt = "yuv420p"
        s.options = {"profile": "baseline", "preset": "ultrafast", "tune": "zerolatency"}
        for i in range(frames):
            rgb = np.full((side, side, 3), (40 * i) % 256, np.uint8)
            for packet in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return buf.getvalue()


START = b"\x00\x00\x00\x01"


def h264_declaring(path: Path, width: int, height: int, *, then_frames: int = 0, frames: int = 8) -> Path:
    """Write a raw ``.h264`` of ``frames`` 32×32 frames whose SPS says ``width``×``height`` (multiples of
    16); with ``then_frames``, that many honest 32×32 frames come first."""
    data = _h264(frames, 32)
    parts = [
        _sps_with_size(p, width // 16, height // 16) if p and (p[0] & 0x1F) == 7 else p
        for p in data.split(START)
    ]
    bomb = START.join(parts)
    path.write_bytes((_h264(then_frames, 32) if then_frames else b"") + bomb)
    return path


# -- MP4: declare a million samples ----------------------------------------------------------------------------

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


def _boxes(data: bytes) -> list[list]:
    """[[type, payload or children], ...] (containers parsed recursively)."""
    out, i = [], 0
    while i < len(data):
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        body = data[i + 8 : i + size]
        out.append([kind, _boxes(body) if kind in _CONTAINERS else body])
        i += size
    return out


def _pack(boxes: list[list]) -> bytes:
    out = b""
    for kind, body in boxes:
        payload = _pack(body) if isinstance(body, list) else body
        out += struct.pack(">I4s", 8 + len(payload), kind) + payload
    return out


def _walk(boxes: list[list]):
    for box in boxes:
        yield box
        if isinstance(box[1], list):
            yield from _walk(box[1])


def mp4_declaring_frames(path: Path, frames: int = 1_000_000, fps: int = 1000) -> Path:
    """Write an MP4 holding two 32×32 H.264 frames whose sample tables declare ``frames`` frames at ``fps``
    (a constant sample size, so the tables stay a few bytes). With the defaults: a million frames, 1000 s
    (within the duration limit)."""
    src = path.with_suffix(".src.mp4")
    with av.open(str(src), "w") as out:  # moov after mdat: chunk offsets stay valid when moov grows
        s = out.add_stream("libx264", rate=fps)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        s.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i in range(2):
            rgb = np.full((32, 32, 3), 90 * i, np.uint8)
            for packet in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    boxes = _boxes(src.read_bytes())
    src.unlink()
    by_kind = {b[0]: b for b in _walk(boxes)}
    timescale = struct.unpack(">I", by_kind[b"mdhd"][1][12:16])[0]  # version 0: flags, ctime, mtime, scale
    delta = timescale // fps
    first_size = struct.unpack(">I", by_kind[b"stsz"][1][12:16])[0]  # the first entry of the size table
    offset = struct.unpack(">I", by_kind[b"stco"][1][8:12])[0]
    by_kind[b"stts"][1] = struct.pack(">4xIII", 1, frames, delta)
    by_kind[b"stsz"][1] = struct.pack(">4xII", first_size, frames)  # every sample this size: no table
    by_kind[b"stsc"][1] = struct.pack(">4xIIII", 1, 1, frames, 1)  # one chunk holds them all
    by_kind[b"stco"][1] = struct.pack(">4xII", 1, offset)
    by_kind[b"stss"][1] = struct.pack(">4xII", 1, 1)
    for kind, at in ((b"mdhd", 16), (b"mvhd", 16), (b"tkhd", 20)):  # durations (version 0 boxes)
        body = bytearray(by_kind[kind][1])
        scale = timescale if kind == b"mdhd" else struct.unpack(">I", bytes(body[12:16]))[0]
        struct.pack_into(">I", body, at, frames * scale // fps)
        by_kind[kind][1] = bytes(body)
    for box in _walk(boxes):  # no edit list: it would cut the declared duration back
        if box[0] == b"edts":
            box[1] = []
    path.write_bytes(_pack([b for b in boxes if b[0] != b"edts"]))
    return path
