"""Sampled decode (mvt.read_clip) vs. a naive full decode, on a long small clip and a short larger one.

Run by hand:  python bench/decode.py [--reps 5] [--cache /tmp/mvt-bench]

The clips are made once into the cache dir (libx264 ultrafast, a keyframe every 2 s — one 10-minute clip
every 10 s —, a moving square over noise). Each repetition times every method on every clip, interleaved,
so machine load hits all alike; the table shows medians and each method's time as a fraction of the full
decode's. Targets: 16 frames from the 10-minute clip in <= 10% of a full decode (DESIGN.md); with
``keyframes=True`` (uniform samples snapped to the keyframe before each) <= 5% on the 10 s GOP clip
(issue #21).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine_line  # noqa: E402
from mvt.video import probe, read_clip  # noqa: E402

CLIPS = {  # name -> (seconds, width, height, fps, container, keyframe interval in seconds)
    "10 min 160x120 mp4": (600, 160, 120, 30, "mp4", 2),
    "same, remuxed to mkv": (600, 160, 120, 30, "mkv", 2),  # Matroska stores no frame count: probe demuxes
    "10 min 160x120 mp4, 10 s GOPs": (600, 160, 120, 30, "mp4", 10),
    "10 s 640x360 mp4": (10, 640, 360, 30, "mp4", 2),
}


def make_clip(path: Path, seconds: int, width: int, height: int, fps: int, gop_s: int = 2) -> None:
    """A square moving over low-amplitude noise: real inter-frame work for the decoder."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 40, size=(8, height, width, 3), dtype=np.uint8)
    side = height // 4
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop_s * fps
        for i in range(seconds * fps):
            img = noise[i % len(noise)].copy()
            x = (i * 3) % (width - side)
            y = (i * 2) % (height - side)
            img[y : y + side, x : x + side] = (230, 180, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    os.replace(tmp, path)


def remux(src: Path, dst: Path) -> None:
    """Copy the packets into another container (no re-encoding)."""
    tmp = dst.with_suffix(".part" + dst.suffix)
    with av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)
    os.replace(tmp, dst)


def full_decode(path: Path) -> int:
    """The naive way: decode every frame and convert it to RGB (with the same threading as read_clip)."""
    n = 0
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in c.decode(stream):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n


METHODS = {
    "full decode": full_decode,
    "read_clip 16 uniform": lambda p: read_clip(p, num_frames=16).frames.shape[0],
    "read_clip 16 stride 4": lambda p: read_clip(p, num_frames=16, stride=4).frames.shape[0],
    "read_clip 16 uniform, keyframes": lambda p: read_clip(p, num_frames=16, keyframes=True).frames.shape[0],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mvt-bench"))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (seconds, w, h, fps, ext, gop_s) in CLIPS.items():
        gop = "" if gop_s == 2 else f"_gop{gop_s}s"
        path = args.cache / f"decode_{seconds}s_{w}x{h}{gop}.{ext}"
        if not path.exists():
            t0 = time.perf_counter()
            mp4 = path.with_suffix(".mp4")
            if not mp4.exists():
                make_clip(mp4, seconds, w, h, fps, gop_s)
            if ext != "mp4":
                remux(mp4, path)
            print(f"made {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        paths[name] = path

    times: dict[tuple[str, str], list[float]] = {(c, m): [] for c in CLIPS for m in METHODS}
    for _ in range(args.reps):
        for clip in CLIPS:
            for method, fn in METHODS.items():
                t0 = time.perf_counter()
                fn(paths[clip])
                times[clip, method].append(time.perf_counter() - t0)

    print(f"av {av.__version__} (FFmpeg {av.ffmpeg_version_info}), {os.cpu_count()} cores, ", end="")
    print(f"{args.reps} interleaved repetitions, medians")
    print(machine_line())
    print()
    print("| clip | frames | method | median s | vs full decode |")
    print("|---|---:|---|---:|---:|")
    for clip in CLIPS:
        info = probe(paths[clip])
        full = statistics.median(times[clip, "full decode"])
        for method in METHODS:
            med = statistics.median(times[clip, method])
            print(f"| {clip} | {info.num_frames} | {method} | {med:.3f} | {med / full:.1%} |")


if __name__ == "__main__":
    main()
