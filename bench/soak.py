"""Soak the app: N simulated visitors through ``gradio_client`` for a fixed time, then a table of what happened.

    python bench/soak.py [--users 8] [--minutes 10] [--url http://127.0.0.1:7860/] [--seed 0] [--no-kinetics]

Starts ``python app.py`` on a free loopback port (or uses ``--url``, a running app on 127.0.0.1; nothing else is
ever contacted), writes a corpus of clips (codecs, sizes, lengths, shipped examples, a few broken files; each
knows whether it must be refused), then:

1. one visitor alone does every kind of request once (models built, first-call costs paid) and Compare on
   three new clips: the single-user Compare time, and the server's RSS, open files and threads after warm-up;
2. ``--users`` visitors, each a ``gradio_client`` session, pick random actions from :data:`ACTIONS` until the
   time (or ``--requests`` each) is spent: Compare (``/analyse`` with the SynthMotion set), change the view
   (``/query``: a point asked at a stage, read from the kept maps), explain a class, faithfulness, export,
   Compare on the Kinetics-400 set (a few visitors ask for the real-size models) and closing the session (a new
   one opens);
3. every session ends (clients closed; the server notices by their heartbeats) and what is left is measured.

The table: requests by kind, expected errors (a broken clip refused with a sentence), rejections (the server
said it is busy, N ahead), unexpected failures, p50 / p95 / max latency per kind, the p95 Compare time against
the single visitor's, RSS after warm-up / peak / after the visitors left, open files and threads, and the bytes
left in the service's folder — with the load average and GEMM line (:mod:`bench.machine`). The CI variant is
``tests/test_soak.py`` (:func:`soak` with 3 visitors for 75 s, SynthMotion only).

The Kinetics-400 set (unless ``--no-kinetics``) comes from the tests' loopback mirror (``tests/mirror.py``) at
the real sizes and in the real formats, random values, through the app's own download clients
(``MVT_WEIGHTS_MIRROR``, ``HF_ENDPOINT``) into empty caches, as on a fresh Space: the app starts with the
network up, so it fetches and warms that set itself. torchvision's file names carry a hash random weights cannot
match, so the soak's app (``--serve-app``) registers ``mvit_v2_s.k400`` and ``mmvit_s.k400init`` on a URL with
the served file's own hash (as ``bench/app.py --mirror`` does); the rest of the app is ``app.py`` as shipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import random
import shutil
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
        if codec == "libx265":
            s.options = {"x265-params": "log-level=error"}
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
    shipped = sorted((ROOT / "mvt" / "assets" / "examples").glob("synth_*.mp4"))[:3]
    clips += [SoakClip(path, False) for path in shipped]  # the examples a visitor clicks
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
    """``ok``, ``expected`` (a refusal that was due), ``rejected`` (the server said it is busy, or its queue is
    full) or ``unexpected``."""
    message: str = ""


@dataclasses.dataclass
class Visit:
    """One visitor: its client (a browser session) and the clip it last compared. The files an answer names
    are fetched as a browser fetches what it shows (each GET read to the end, nothing kept): gradio_client's own
    downloads also hash and write every file, which on this machine cost the visitors more CPU than the server
    (measured: 737 s of the visitors' against 430 s of the server's in a 10-minute soak)."""

    url: str
    rng: random.Random
    client: object = None
    http: object = None
    shown: SoakClip | None = None
    sessions: int = 0
    fetched: int = 0
    """Bytes of the files fetched so far."""

    def open(self) -> None:
        import httpx
        from gradio_client import Client

        self.client, self.shown = Client(self.url, verbose=False, download_files=False), None
        self.http = httpx.Client(timeout=REQUEST_TIMEOUT_S)
        self.sessions += 1

    def fetch(self, answer: object) -> None:
        """GET every file ``answer`` names from the server (read, not kept)."""
        from gradio_client import utils

        paths: list[str] = []
        utils.traverse(answer, lambda f: paths.append(f["path"]) or f, utils.is_file_obj_with_meta)
        for path in paths:
            url = f"{self.client.src_prefixed}file={utils.encode_file_path(path)}"
            with self.http.stream("GET", url) as response:
                response.raise_for_status()
                self.fetched += sum(len(chunk) for chunk in response.iter_raw())

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.http.close()
        self.client, self.http, self.shown = None, None, None


REQUEST_TIMEOUT_S = 600
"""A request not answered by then counts as an unexpected failure (the loops are bounded in time)."""
SYNTH = ["mvit_t.synth", "mmvit_t.synth", "vivit_t1.synth", "hvt_t.synth"]
KINETICS = ["mvit_v2_s.k400", "mmvit_s.k400init", "vivit_b_16x2.k400", "hvt_s_1.in1k"]
METHODS = ["attention", "rollout"]


def _call(visit: Visit, clip: SoakClip, api: str, **kw) -> object:
    """``api`` on ``clip``; a broken clip must be refused with a sentence (True: the refusal that was due)."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    try:
        job = visit.client.submit(clip=handle_file(str(clip.path)), api_name=api, **kw)
        answer = job.result(timeout=REQUEST_TIMEOUT_S)
    except AppError as e:
        if clip.fails and "not enabled verbose error" not in str(e) and not _busy(e):
            return True  # a sentence saying why, as due
        raise
    if clip.fails:
        raise AssertionError(f"{clip.path.name} is broken but {api} accepted it")
    visit.fetch(answer)
    return answer


def _compare(visit: Visit, clips: list[SoakClip]) -> bool:
    """/analyse on a random clip with the SynthMotion set (what Compare runs)."""
    clip = visit.rng.choice(clips)
    answer = _call(visit, clip, "/analyse", models=SYNTH, methods=METHODS)
    if answer is True:
        return True
    if not all(isinstance(m.get("top5"), list) for m in answer["models"]):
        raise AssertionError(f"a model without predictions: {answer['models']}")
    visit.shown = clip
    return False


def _examples(clips: list[SoakClip]) -> list[SoakClip]:
    """The clips the crowd asks the Kinetics-400 set of: the first shipped example (else the first good clip).
    One: a Kinetics-400 comparison's results take ~0.9 GB of the results cache (2 GiB), so the warm-up's
    comparison of it stays cached beside the SynthMotion set's — the crowd's Kinetics Compares are visitors
    clicking an example the Space already compared; a new clip on that set is a minute of both cores
    (bench/README.md: the run where two examples were not compared in the warm-up)."""
    shipped = [c for c in clips if c.path.name.startswith("synth_")] or [c for c in clips if not c.fails]
    return shipped[:1]


def _compare_kinetics(visit: Visit, clips: list[SoakClip]) -> bool:
    """/analyse with the Kinetics-400 set (real-size models, weights from the loopback mirror) on the example
    the warm-up compared on it (:func:`_examples`: answered from the cache unless evicted since). What is on
    screen stays (the other actions use the SynthMotion set)."""
    answer = _call(visit, visit.rng.choice(_examples(clips)), "/analyse", models=KINETICS, methods=METHODS)
    failed = [m for m in answer["models"] if not isinstance(m.get("top5"), list)]
    if failed:
        raise AssertionError(f"a Kinetics-400 model without predictions: {failed}")
    return False


def _on_shown(act: Callable[[Visit, SoakClip], object]) -> Callable[[Visit, list[SoakClip]], bool]:
    """An action on the clip on screen (a Compare first when there is none)."""

    def run(visit: Visit, clips: list[SoakClip]) -> bool:
        if visit.shown is None:
            return _compare(visit, clips)
        return act(visit, visit.shown) is True

    return run


def _view(visit: Visit, clip: SoakClip) -> object:
    """Change the view: ask a point of the clip at a random stage (read from the kept maps)."""
    return _call(visit, clip, "/query", models=SYNTH, t=0.3, x=20.0, y=20.0, stage=visit.rng.randint(1, 2))


def _explain(visit: Visit, clip: SoakClip) -> object:
    model = visit.rng.choice(SYNTH)
    return _call(visit, clip, "/explain_class", model=model, klass=f"class {visit.rng.randint(0, 3)}")


def _faithfulness(visit: Visit, clip: SoakClip) -> object:
    return _call(visit, clip, "/faithfulness", models=[visit.rng.choice(SYNTH)], methods=METHODS, steps=4)


def _export(visit: Visit, clip: SoakClip) -> object:
    return _call(visit, clip, "/export", models=SYNTH, methods=METHODS)


def _close(visit: Visit, clips: list[SoakClip]) -> bool:
    """Leave (the session ends: its files go) and come back as a new session."""
    visit.close()
    visit.open()
    return False


ACTIONS: dict[str, tuple[float, Callable[[Visit, list[SoakClip]], bool]]] = {
    "compare": (0.35, _compare),
    "view": (0.15, _on_shown(_view)),
    "explain": (0.15, _on_shown(_explain)),
    "faithfulness": (0.1, _on_shown(_faithfulness)),
    "export": (0.1, _on_shown(_export)),
    "compare kinetics": (0.03, _compare_kinetics),
    "close session": (0.15, _close),
}
"""Kind → (weight, action). An action returns True when the error it met was the expected one."""
SYNTH_KINDS = tuple(k for k in ACTIONS if k != "compare kinetics")
"""The kinds with the SynthMotion set only (the CI soak's, and ``--no-kinetics``)."""
ON_SHOWN = ("view", "explain", "faithfulness", "export")
"""Kinds that act on the clip on screen."""


def _busy(error: BaseException) -> bool:
    text = str(error).lower()
    return "busy" in text and "ahead of you" in text or "queue is full" in text


def _outcome(error: BaseException) -> str:
    return "rejected" if _busy(error) else "unexpected"


def visitor(
    url: str,
    clips: list[SoakClip],
    end: float,
    budget: int,
    seed: int,
    out: list[Record],
    think: tuple[float, float] = (0.0, 0.0),
    kinds: tuple[str, ...] = tuple(ACTIONS),
) -> None:
    """One visitor: random actions of ``kinds`` until ``end`` (monotonic) or ``budget`` requests; records each.
    Between two actions the visitor looks at the page for a time drawn uniformly from ``think`` seconds (a person
    reads the result before the next click; ``(0, 0)``: clicks again at once, a crowd of scripts)."""
    visit = Visit(url, random.Random(seed))
    visit.open()
    kinds = list(kinds)
    weights = [ACTIONS[k][0] for k in kinds]
    for _ in range(budget):
        if time.monotonic() >= end:
            break
        kind = visit.rng.choices(kinds, weights)[0]
        if kind in ON_SHOWN and visit.shown is None:
            kind = "compare"  # nothing on screen yet: the visitor compares first
        out.append(timed(kind, lambda kind=kind: ACTIONS[kind][1](visit, clips)))
        time.sleep(max(0.0, min(visit.rng.uniform(*think), end - time.monotonic())))
    visit.close()


def timed(kind: str, act: Callable[[], bool]) -> Record:
    t0 = time.monotonic()
    try:
        expected = act()
        return Record(kind, time.monotonic() - t0, "expected" if expected else "ok")
    except Exception as e:  # noqa: BLE001 - every failure is counted and named
        return Record(kind, time.monotonic() - t0, _outcome(e), f"{type(e).__name__}: {str(e)[:200]}")


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


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


def launch(out_dir: Path, command: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    """``python app.py`` (or ``command``) on a free loopback port, its files in ``out_dir``, its log beside it;
    returns (process, url)."""
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
        command or [sys.executable, str(ROOT / "app.py")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
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


@dataclasses.dataclass
class Summary:
    """What a soak measured (:func:`soak`)."""

    users: int
    seconds: float
    records: list[Record]
    single_compare_s: float
    """Median uncached /analyse time of the SynthMotion set with one visitor (before the crowd)."""
    warm: tuple[float, int, int, int] | None = None
    """The server's (time, RSS, open files, threads) after the single visitor's warm-up."""
    watch: Watch | None = None
    final: tuple[float, int, int, int] | None = None
    """The same once every visitor left and their sessions ended."""
    left_bytes: int | None = None
    """Bytes left in the service's folder after every session ended."""
    caches: tuple[str | None, str | None] = (None, None)
    """What the server's caches held after warm-up and after the visitors left (its log's last "caches after a
    session ended" line: :meth:`lens.Service.holding`), to tell their filling from a leak."""
    cpu: tuple[float, float] | None = None
    """CPU seconds while the visitors acted: the server's, and the visitors' own (this process: their clients
    share the machine's cores with the server)."""

    @property
    def unexpected(self) -> list[Record]:
        return [r for r in self.records if r.outcome == "unexpected"]

    @property
    def peak_rss(self) -> int:
        return max((s[1] for s in self.watch.samples), default=0) if self.watch else 0

    @property
    def rss_growth(self) -> float:
        """RSS at the end over RSS after warm-up, minus 1."""
        return self.final[1] / self.warm[1] - 1 if self.final and self.warm else float("nan")

    def p95(self, kind: str) -> float:
        return _pct([r.seconds for r in self.records if r.kind == kind and r.outcome == "ok"], 95)


def table(summary: Summary) -> str:
    records = summary.records
    lines = [
        "| kind | requests | ok | expected errors | rejected (busy) | unexpected | p50 (s) | p95 (s) | max (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ACTIONS:
        rs = [r for r in records if r.kind == kind]
        if not rs and kind not in SYNTH_KINDS:
            continue
        times = [r.seconds for r in rs if r.outcome in ("ok", "expected")]
        count = {o: sum(r.outcome == o for r in rs) for o in ("ok", "expected", "rejected", "unexpected")}
        lines.append(
            f"| {kind} | {len(rs)} | {count['ok']} | {count['expected']} | {count['rejected']} | "
            f"{count['unexpected']} | {_pct(times, 50):.2f} | {_pct(times, 95):.2f} | "
            f"{max(times, default=float('nan')):.2f} |"
        )
    ratio = summary.p95("compare") / summary.single_compare_s
    lines.append(
        f"\nCompare (SynthMotion set, /analyse): one visitor alone {summary.single_compare_s:.2f} s (median over "
        f"the clips, uncached); p95 under the crowd {summary.p95('compare'):.2f} s = {ratio:.1f}× (target ≤ 4×)"
    )
    gib = 2**30
    if summary.watch is not None and summary.watch.samples and summary.warm and summary.final:
        w, f, samples = summary.warm, summary.final, summary.watch.samples
        lines.append(
            f"server RSS: after warm-up {w[1] / gib:.2f} GiB, peak {summary.peak_rss / gib:.2f} GiB, after the "
            f"visitors left {f[1] / gib:.2f} GiB ({100 * summary.rss_growth:+.1f} % vs warm-up); open files "
            f"{w[2]} → {f[2]} (peak {max(s[2] for s in samples)}); threads {w[3]} → {f[3]} (peak "
            f"{max(s[3] for s in samples)})"
        )
    if any(summary.caches):
        before, after = summary.caches
        lines.append(f"server caches: after warm-up {before or '?'}; after the visitors left {after or '?'}")
    if summary.cpu is not None:
        server, visitors = summary.cpu
        lines.append(
            f"CPU while the visitors acted: server {server:.0f} s, the visitors' clients {visitors:.0f} s, of "
            f"{(os.cpu_count() or 1) * summary.seconds:.0f} core-seconds"
        )
    if summary.left_bytes is not None:
        lines.append(f"bytes left in the service's folder after every session ended: {summary.left_bytes:,}")
    for r in summary.unexpected[:10]:
        lines.append(f"unexpected: {r.kind} after {r.seconds:.1f} s: {r.message}")
    return "\n".join(lines)


def single_visitor(url: str, clips: list[SoakClip], kinds: tuple[str, ...] = ()) -> float:
    """One visitor alone: every kind once (models built, first-call costs paid; the Kinetics-400 set on the
    clips the crowd will ask it of), then Compare on every other
    good clip, and a point asked of it (the caches hold what the crowd will ask for, the deferred matrices of
    every comparison included: growth past this is not their filling); the median seconds of those Compares
    (uncached)."""
    visit = Visit(url, random.Random(0))
    visit.open()
    good = [c for c in clips if not c.fails]
    for kind in kinds or SYNTH_KINDS:
        act = ACTIONS[kind][1]
        on = (
            good if kind == "compare kinetics" else good[:1]
        )  # it picks the crowd's clip (_examples) from all
        record = timed(kind, lambda act=act, on=on: act(visit, on))
        if record.outcome != "ok":
            raise SystemExit(f"the single visitor's {kind} failed: {record.message}")
    times = []
    for clip in good[1:]:
        record = timed("compare", lambda clip=clip: _compare(visit, [clip]))
        if record.outcome != "ok":
            raise SystemExit(f"the single visitor's Compare failed: {record.message}")
        times.append(record.seconds)
        _view(visit, clip)  # its stage maps' matrices computed, as the crowd's first point will

    visit.close()
    return float(np.median(times))


CACHES_LINE = "caches after a session ended: "


def last_caches_line(log: Path) -> str | None:
    """The app log's last account of its caches (written when a session ends), if any."""
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if CACHES_LINE in ln]
    except OSError:
        return None
    return lines[-1].split(CACHES_LINE, 1)[1] if lines else None


def sessions_ended(out_dir: Path, timeout: float = 90.0) -> int:
    """Wait (up to ``timeout`` s: a closed client's heartbeat is noticed within ~15-30 s) until no session
    folder is left in the service's folder under ``out_dir``; returns the bytes left in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(out_dir.glob("mvt-lens-*/session-*")):
        time.sleep(1)
    return sum(folder_bytes(d) for d in out_dir.glob("mvt-lens-*"))


def soak(
    users: int,
    minutes: float,
    *,
    url: str | None = None,
    seed: int = 0,
    requests: int = 10_000,
    good: int | None = None,
    think: tuple[float, float] = (0.0, 0.0),
    kinetics: bool = False,
) -> Summary:
    """Start the app (unless ``url``), warm it up with one visitor, let ``users`` visitors act for ``minutes``,
    wait for their sessions to end; the measurements. ``think``: each visitor's pause between actions (seconds,
    uniform between the two). ``good``: use only that many of the corpus's good clips
    (a shorter warm-up). ``kinetics``: the Kinetics-400 set in the mix, its weights from the loopback mirror
    (the app started here with the network up: module docstring). Talks to 127.0.0.1 only."""
    work = Path(tempfile.mkdtemp(prefix="mvt-soak-"))
    # gradio_client leaves an empty folder in the temporary directory per file it downloads: there, in ours
    scratch, tempfile.tempdir = tempfile.tempdir, str(work)
    clips = make_corpus(work / "clips", seed)
    if good is not None:
        clips = [c for c in clips if not c.fails][:good] + [c for c in clips if c.fails]
    proc, out_dir, command, mirror = None, None, None, None
    kinds = tuple(ACTIONS) if kinetics else SYNTH_KINDS
    if kinetics and url is None:
        mirror, registered = serve_kinetics(work)
        command = [sys.executable, str(Path(__file__).resolve()), "--serve-app", registered]
    if url is None:
        out_dir = work / "app-tmp"
        out_dir.mkdir()
        proc, url = launch(out_dir, command)
    try:
        check_loopback(url)
        watch = Watch(proc.pid) if proc is not None else None
        single = single_visitor(url, clips, kinds)
        summary = Summary(users, 0.0, [], single, watch=watch)
        if out_dir is not None:  # the warm-up visitor's session ended too, as every session will at the end
            sessions_ended(out_dir)
        if watch is not None:
            time.sleep(2)
            summary.warm = watch.sample()
            summary.caches = (last_caches_line(out_dir.parent / "app.log"), None)
            watch.start()
        end = time.monotonic() + 60 * minutes
        threads = [
            threading.Thread(
                target=visitor,
                args=(url, clips, end, requests, seed + i, summary.records, think, kinds),
            )
            for i in range(users)
        ]
        t0, cpu0 = time.monotonic(), (cpu_seconds(proc.pid) if proc is not None else 0.0, _own_cpu())
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        summary.seconds = time.monotonic() - t0
        if proc is not None:
            summary.cpu = (cpu_seconds(proc.pid) - cpu0[0], _own_cpu() - cpu0[1])
        if out_dir is not None:
            summary.left_bytes = sessions_ended(out_dir)
        if watch is not None:
            watch.stop()
            summary.final = watch.sample()
            summary.caches = (summary.caches[0], last_caches_line(out_dir.parent / "app.log"))
        return summary
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if mirror is not None:
            mirror.close()
        tempfile.tempdir = scratch
        for sub in work.iterdir():  # all but the app's log
            if sub.is_dir():
                shutil.rmtree(sub, ignore_errors=True)


MIRROR_FILES = Path(tempfile.gettempdir()) / "mvt-bench" / "mirror-files"
"""The mirror's real-size random checkpoints, built once and kept between soaks (~1 GB)."""


def serve_kinetics(work: Path) -> tuple[object, str]:
    """The loopback mirror up in this process (its threads end with it), serving the Kinetics-400 set at real
    size, and this process's environment pointed at it with empty weight caches in ``work`` (the app inherits
    both); returns (the mirror: close it when the app has ended, the URL ``--serve-app`` registers
    torchvision's two on: module docstring)."""
    sys.path.insert(0, str(ROOT))
    from bench.app import TORCHVISION_WEIGHTS, serve_kinetics_from_mirror
    from mvt import zoo

    MIRROR_FILES.parent.mkdir(parents=True, exist_ok=True)
    mirror, _ = serve_kinetics_from_mirror(MIRROR_FILES.parent)
    os.environ.update(TORCH_HOME=str(work / "torch"), HF_HOME=str(work / "hf"))
    return mirror, zoo.get_spec(TORCHVISION_WEIGHTS[0]).weights.url


def serve_app(url: str) -> None:
    """``app.py`` as ``__main__``, with ``mvit_v2_s.k400`` and ``mmvit_s.k400init`` registered on ``url`` (the
    mirror's file under its own hash): the soak's app when the Kinetics-400 set is in the mix."""
    import runpy

    sys.path.insert(0, str(ROOT))
    from bench.app import register_torchvision_weights

    register_torchvision_weights(url)
    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--requests", type=int, default=10_000, help="most requests per visitor")
    p.add_argument("--url", help="a running app on 127.0.0.1 (default: start python app.py for the soak)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--think",
        type=float,
        nargs=2,
        default=(0.0, 0.0),
        metavar=("MIN", "MAX"),
        help="seconds each visitor looks at the page between actions (uniform; default 0 0: no pause)",
    )
    p.add_argument("--no-kinetics", action="store_true", help="the SynthMotion set only (no mirror)")
    p.add_argument("--serve-app", metavar="URL", help=argparse.SUPPRESS)  # the soak's own app (serve_app)
    args = p.parse_args(argv)
    if args.serve_app:
        serve_app(args.serve_app)
        return 0
    sys.path.insert(0, str(ROOT))
    from bench.machine import machine_line

    summary = soak(
        args.users,
        args.minutes,
        url=args.url,
        seed=args.seed,
        requests=args.requests,
        think=tuple(args.think),
        kinetics=not args.no_kinetics and args.url is None,
    )
    pause = f", {args.think[0]:g}–{args.think[1]:g} s between actions" if any(args.think) else ", no pause"
    print(f"{args.users} visitors{pause}, {summary.seconds / 60:.1f} min, {len(summary.records)} requests")
    print(table(summary))
    print(machine_line())
    return 1 if summary.unexpected else 0


if __name__ == "__main__":
    raise SystemExit(main())
