"""Soak the app: N simulated visitors through ``gradio_client`` for a fixed time, then a table of what happened.

    python bench/soak.py [--users 8] [--minutes 10] [--url http://127.0.0.1:7860/ | --launch] [--seed 0]

Phase 1 of issue 31 (this file): the traffic generator and the measurements, independent of the app's
internals — a corpus of clips (codecs, sizes, lengths, broken files; each knows whether it must fail), visitor
threads that each pick a random action from :data:`ACTIONS` until their time or request budget is spent,
a watcher sampling the server process (RSS, open files, threads) and the table. The actions call the app's
public API by name (``/compare``, ``/figures``, ``/export``, ``/faithfulness``); phase 2 (after the app's
restructure) adds explain-class, the Kinetics set on the loopback mirror, the fair-sharing checks, and the CI
run. Requests go to 127.0.0.1 only: a non-loopback ``--url`` is refused.

The table: requests by kind, expected errors (a broken clip said so) and unexpected ones, p50 / p95 / max
latency per kind, queue rejections, peak and final RSS, open files and threads of the server, and the bytes
left in its output folder (``--out-dir``, with ``--launch`` the one it was given) after the visitors leave.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# -- the clips -----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SoakClip:
    path: Path
    fails: bool
    """A broken file: Compare must refuse it with a sentence (an expected error)."""


def _write(path: Path, frames: int, size: tuple[int, int], fps: int, codec: str, seed: int) -> Path:
    import av

    rng = np.random.default_rng(seed)
    h, w = size
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for t in range(frames):
            rgb = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
            x = int(t * (w - h // 4) / max(1, frames - 1))
            rgb[h // 3 : h // 3 + h // 4, x : x + h // 4] = (255, 200, 40)  # a square moving right
            for packet in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return path


def make_corpus(folder: Path, seed: int = 0) -> list[SoakClip]:
    """Clips of varied codecs, sizes and lengths, and a few broken files, written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    good = [
        ("short.mp4", 24, (96, 128), 12, "libx264"),
        ("vga.mp4", 90, (480, 640), 30, "libx264"),
        ("long_small.mp4", 600, (120, 160), 25, "libx264"),
        ("clip.webm", 48, (144, 176), 24, "libvpx-vp9"),
        ("phone_hevc.mkv", 40, (180, 320), 30, "libx265"),
    ]
    clips = [
        SoakClip(_write(folder / n, f, sz, fps, c, seed + i), False)
        for i, (n, f, sz, fps, c) in enumerate(good)
    ]
    text = folder / "not_a_video.mp4"
    text.write_text("this is not a video\n")
    cut = folder / "truncated.mp4"
    cut.write_bytes(clips[1].path.read_bytes()[:4096])
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    return clips + [SoakClip(p, True) for p in (text, cut, empty)]


# -- the visitors --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Record:
    kind: str
    seconds: float
    outcome: str
    """``ok``, ``expected`` (a refusal that was due), ``rejected`` (the queue was full) or ``unexpected``."""
    message: str = ""


@dataclasses.dataclass
class Visit:
    """One visitor's session: its client and what it has on screen."""

    client: object
    rng: random.Random
    compared: bool = False


SYNTH = ["mvit_t.synth", "mmvit_t.synth", "vivit_t1.synth", "hvt_t.synth"]


def _compare(visit: Visit, clips: list[SoakClip]) -> bool:
    """Compare on a random clip with the SynthMotion set; True when the refusal (if any) was due."""
    from gradio_client import handle_file

    clip = visit.rng.choice(clips)
    try:
        visit.client.predict(
            handle_file(str(clip.path)),
            SYNTH,
            "",
            ["rollout"],
            "attention",
            0.8,
            "inferno",
            api_name="/compare",
        )
    except Exception:
        if clip.fails:
            visit.compared = False  # a refused clip clears the results on screen (and the session's state)
            return True
        raise
    if clip.fails:
        raise AssertionError(f"{clip.path.name} is broken but Compare accepted it")
    visit.compared = True
    return False


def _after_compare(api: str, *args) -> Callable[[Visit, list[SoakClip]], bool]:
    def act(visit: Visit, clips: list[SoakClip]) -> bool:
        if not visit.compared:
            return _compare(visit, clips)
        visit.client.predict(*args, api_name=api)
        return False

    return act


ACTIONS: dict[str, tuple[float, Callable[[Visit, list[SoakClip]], bool]]] = {
    "compare": (0.5, _compare),
    "figures": (0.2, _after_compare("/figures", "attention", 0.8, "inferno")),
    "export": (0.15, _after_compare("/export", "attention", 0.8, "inferno")),
    "faithfulness": (0.15, _after_compare("/faithfulness", 4)),
}
"""Kind → (weight, action). An action returns True when the error it met was the expected one."""


def _outcome(error: BaseException) -> str:
    text = str(error).lower()
    return "rejected" if "queue is full" in text or "too many" in text else "unexpected"


def visitor(url: str, clips: list[SoakClip], end: float, budget: int, seed: int, out: list[Record]) -> None:
    """One visitor: random actions until ``end`` (monotonic) or ``budget`` requests; records each."""
    from gradio_client import Client

    rng = random.Random(seed)
    visit = Visit(Client(url, verbose=False), rng)
    kinds = list(ACTIONS)
    weights = [ACTIONS[k][0] for k in kinds]
    for _ in range(budget):
        if time.monotonic() >= end:
            break
        kind = rng.choices(kinds, weights)[0]
        t0 = time.monotonic()
        try:
            expected = ACTIONS[kind][1](visit, clips)
            out.append(Record(kind, time.monotonic() - t0, "expected" if expected else "ok"))
        except Exception as e:  # noqa: BLE001 - every failure is counted and named
            out.append(
                Record(kind, time.monotonic() - t0, _outcome(e), f"{type(e).__name__}: {str(e)[:200]}")
            )
    visit.client.close()


# -- the server process --------------------------------------------------------------------------------------


class Watch(threading.Thread):
    """Samples a process every ``every`` seconds from /proc: RSS, open files, threads (Linux)."""

    def __init__(self, pid: int, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int, int, int]] = []
        self._halt = threading.Event()

    def sample(self) -> tuple[float, int, int, int]:
        status = Path(f"/proc/{self.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rss = int(fields["VmRSS"].split()[0]) * 1024
        threads = int(fields["Threads"])
        files = len(os.listdir(f"/proc/{self.pid}/fd"))
        return time.monotonic(), rss, files, threads

    def run(self) -> None:
        while not self._halt.wait(self.every):
            try:
                self.samples.append(self.sample())
            except (OSError, KeyError, ValueError):
                return

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


# -- running and reporting -----------------------------------------------------------------------------------


def check_loopback(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        ok = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise SystemExit(f"refusing {url}: the soak only talks to 127.0.0.1")


def launch(out_dir: Path) -> tuple[subprocess.Popen, str]:
    """``python app.py`` on a free loopback port, its files in ``out_dir``, its log beside it; returns (process,
    url)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "TMPDIR": str(out_dir),
    }
    log = open(out_dir.parent / "app.log", "w")  # noqa: SIM115 - the child writes it until it ends
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("the app exited before it listened") from None
            time.sleep(1)
    proc.kill()
    raise SystemExit("the app did not listen within 300 s")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def table(records: list[Record], watch: Watch | None, left: int | None) -> str:
    lines = [
        "| kind | requests | ok | expected errors | rejected | unexpected | p50 (s) | p95 (s) | max (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ACTIONS:
        rs = [r for r in records if r.kind == kind]
        times = [r.seconds for r in rs if r.outcome in ("ok", "expected")]
        count = {o: sum(r.outcome == o for r in rs) for o in ("ok", "expected", "rejected", "unexpected")}
        lines.append(
            f"| {kind} | {len(rs)} | {count['ok']} | {count['expected']} | {count['rejected']} | "
            f"{count['unexpected']} | {_pct(times, 50):.2f} | {_pct(times, 95):.2f} | "
            f"{max(times, default=float('nan')):.2f} |"
        )
    if watch is not None and watch.samples:
        rss = [s[1] for s in watch.samples]
        lines.append(
            f"\nserver: peak RSS {max(rss) / 2**30:.2f} GiB, final {rss[-1] / 2**30:.2f} GiB; open files "
            f"{watch.samples[-1][2]} (peak {max(s[2] for s in watch.samples)}); threads {watch.samples[-1][3]} "
            f"(peak {max(s[3] for s in watch.samples)})"
        )
    if left is not None:
        lines.append(f"bytes left in the output folder after the visitors left: {left:,}")
    unexpected = [r for r in records if r.outcome == "unexpected"]
    for r in unexpected[:10]:
        lines.append(f"unexpected: {r.kind}: {r.message}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--requests", type=int, default=10_000, help="most requests per visitor")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", help="a running app on 127.0.0.1")
    where.add_argument("--launch", action="store_true", help="start python app.py for the soak (default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="mvt-soak-"))
    clips = make_corpus(work / "clips", args.seed)
    proc, url, out_dir = None, args.url, None
    if url is None:
        out_dir = work / "app-tmp"
        out_dir.mkdir()
        proc, url = launch(out_dir)
    try:
        return _soak(args, url, clips, proc, out_dir)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)


def _soak(args, url: str, clips: list[SoakClip], proc, out_dir: Path | None) -> int:
    from bench.machine import machine_line

    check_loopback(url)
    watch = Watch(proc.pid) if proc is not None else None
    if watch is not None:
        watch.start()
    records: list[Record] = []
    end = time.monotonic() + 60 * args.minutes
    threads = [
        threading.Thread(target=visitor, args=(url, clips, end, args.requests, args.seed + i, records))
        for i in range(args.users)
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    time.sleep(2)  # sessions end (unload) and their folders go
    if watch is not None:
        watch.stop()
    left = None
    if out_dir is not None:
        left = sum(folder_bytes(d) for d in out_dir.glob("mvt-lens-*"))
    print(f"{args.users} visitors, {took / 60:.1f} min, {len(records)} requests, url {url}")
    print(table(records, watch, left))
    print(machine_line())
    return 1 if any(r.outcome == "unexpected" for r in records) else 0


if __name__ == "__main__":
    raise SystemExit(main())
