"""Time asking a point in the browser (issue 32): a click on a panel → every panel's picture changed, with the
point marked, in Debian's Chromium against the real app (SynthMotion set, four models).

    python -m bench.query_browser [--clicks 8] [--width 1366 --height 768]

The app runs in this process (``app.demo`` launched on a loopback port, its :meth:`Actions.ask` wrapped to
time the server's part); the page is driven by Playwright through ``/usr/bin/chromium``. The clip is the
move-left example padded to 352×224 (as ``tests/test_browser_query.py`` does). Per click: total (from the
click's handler in the page to the frame on which every panel shows the new point), split into *to the
server* (the page's event through Gradio's queue to the action starting), *ask* (the action: rows, sprites,
screens) and *back and drawn* (Gradio's answer to the page and its drawing). The first click computes the
stage maps' deferred matrices (once); the target (≤ 0.3 s on two cores) is for the clicks after it. The
last column says whether the deferred maps Compare computes in the background (:meth:`lens.Service.warm`)
were still being computed when the click came (``--wait-maps``: click only once they are done). The machine
line (threads, load average, GEMM GFLOP/s) is printed under the table.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ["mvit_t.synth", "mmvit_t.synth", "vivit_t1.synth", "hvt_t.synth"]
TARGET_S = 0.3
DONE = """([before]) => {
  const frames = [...document.querySelectorAll('[id^=slot-] .mvt-view .mvt-frame')];
  const done = frames.length === before.length && frames.every((f, i) => f.style.backgroundImage !== before[i]
    && f.querySelector('[data-testid=query-mark], [data-testid=query-unseen]'));
  if (done && !window.mvtLens.answered) window.mvtLens.answered = performance.now();
  return done;
}"""
PICTURES = "() => [...document.querySelectorAll('[id^=slot-] .mvt-view .mvt-frame')].map(f => f.style.backgroundImage)"


def wide_clip(folder: Path) -> Path:
    import numpy as np

    import mvt
    from lens.ui.examples import EXAMPLES_DIR

    clip = mvt.read_clip(EXAMPLES_DIR / "synth_move_left.mp4", num_frames=16, stride=1)
    frames = np.pad(clip.frames, ((0, 0), (0, 0), (64, 64), (0, 0)), constant_values=90)
    return mvt.write_video(frames, folder / "wide_move_left.mp4", fps=clip.fps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clicks", type=int, default=8, help="clicks after the first")
    p.add_argument("--width", type=int, default=1366)
    p.add_argument("--height", type=int, default=768)
    p.add_argument(
        "--wait-maps", action="store_true",
        help="click only once Compare's background maps are done (default: as soon as the panels are out)",
    )  # fmt: skip
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    import app
    from bench.machine import machine_line
    from tests.test_browser import _choose_models, _compare, _open, _settled, _upload

    asks: list[tuple[float, float]] = []
    ask = app.ACTIONS.ask

    def timed_ask(**kw):
        t0 = time.time()
        try:
            return ask(**kw)
        finally:
            asks.append((t0, time.time()))

    app.ACTIONS.ask = timed_ask
    warming: list = []  # the background computations of deferred maps Compare started (Service.warm)
    warm = app.SERVICE.warm

    def recorded_warm(results):
        future = warm(results)
        warming.append(future)
        return future

    app.SERVICE.warm = recorded_warm
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.demo.launch(**{**app.LAUNCH, "server_name": "127.0.0.1", "server_port": port, "prevent_thread_lock": True,
                       "quiet": True})  # fmt: skip
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = _open(browser, f"http://127.0.0.1:{port}/", {"width": args.width, "height": args.height})
            _upload(page, wide_clip(Path(tmp)))
            _choose_models(page, MODELS)
            _compare(page, len(MODELS))
            _settled(page)
            if args.wait_maps:
                for future in warming:
                    future.result()
            for k in range(args.clicks + 1):
                busy = any(not f.done() for f in warming)
                before = page.evaluate(PICTURES)
                frame = page.locator(f"#slot-{k % len(MODELS)} .mvt-frame").first
                frame.evaluate("e => e.scrollIntoView({block: 'end'})")
                box = frame.bounding_box()
                page.evaluate("() => { window.mvtLens.answered = null; window.mvtLens.asked = null; }")
                n = len(asks)
                u, v = 0.15 + 0.7 * ((k * 0.37) % 1), 0.15 + 0.7 * ((k * 0.61) % 1)
                page.mouse.click(box["x"] + u * box["width"], box["y"] + v * box["height"])
                page.wait_for_function(DONE, arg=[before], timeout=120_000, polling="raf")
                click, done = (x / 1000 for x in page.evaluate(
                    "() => [performance.timeOrigin + window.mvtLens.asked, performance.timeOrigin + window.mvtLens.answered]"
                ))  # fmt: skip
                a0, a1 = asks[n]
                rows.append((done - click, a0 - click, a1 - a0, done - a1, "busy" if busy else "done"))
                page.wait_for_timeout(300)
            browser.close()
    finally:
        app.demo.close()
    print(
        "| click | total (s) | to the server (s) | ask (s) | back and drawn (s) | background maps at the click |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for k, r in enumerate(rows):
        print(
            f"| {'first' if k == 0 else k + 1} | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.3f} | {r[4]} |"
        )
    after = [r[0] for r in rows[1:]]
    if after:
        med, worst = statistics.median(after), max(after)
        print(
            f"\nafter the first click: median {med:.3f} s, max {worst:.3f} s; target ≤ {TARGET_S} s: "
            f"median / target {med / TARGET_S:.2f}, max / target {worst / TARGET_S:.2f}"
        )
    print(f"{args.width}×{args.height}, four SynthMotion models; {machine_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
