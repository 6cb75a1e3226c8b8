"""Screenshots of a newcomer's first minutes (issue 27), taken the same way of any checkout of the app.

    python docs/screens/before_after.py CHECKOUT LABEL [--out docs/screens]

starts ``python app.py`` of ``CHECKOUT`` on a loopback port (offline: the Kinetics-400 weights cannot be
fetched here), then in Debian's Chromium at 1366×768 and 390×844: a broken clip and Compare; the first example
(a real clip, Kinetics-400 set) and Compare; a real clip with the SynthMotion set (the panels as they first show, the
sticky timeline over them); a label typed into a panel's class box that is not a class; Play. Each step is one
JPEG ``LABEL-STEP-WxH.jpg`` in ``--out``; what was measured (Gradio's red status pills and toasts, how far Play
moved the slider in one second, the sticky timeline's height) goes to ``LABEL.json`` beside them. A step the
checkout cannot do is recorded as such, not retried.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

VIEWPORTS = [{"width": 1366, "height": 768}, {"width": 390, "height": 844}]
PILLS = (
    "() => [...document.querySelectorAll('[data-testid=status-tracker] .error, [data-testid=toast-body]')]"
    ".map(e => e.innerText.trim().slice(0, 80))"
)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def launch(checkout: Path, tmp: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "TMPDIR": str(tmp),
    }
    log = open(tmp / "app.log", "w")  # noqa: SIM115 - the child writes it until it ends
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=checkout, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(600):
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"{checkout}/app.py did not answer: see {tmp / 'app.log'}")


def steps(page, url: str, clips: dict[str, Path], shot, record: dict) -> None:
    def fresh():
        page.goto(url, wait_until="domcontentloaded")
        page.locator("#compare").wait_for(state="visible", timeout=120_000)
        time.sleep(2)

    def settle(seconds: float) -> None:
        time.sleep(seconds)
        page.wait_for_function("() => !document.querySelector('.wrap.generating, .eta-bar')", timeout=300_000)

    fresh()
    shot("first-screen")
    # a broken clip, then Compare
    page.locator("#clip input[type=file]").set_input_files(str(clips["broken"]))
    time.sleep(3)
    page.locator("#compare").click()
    settle(5)
    page.evaluate("() => window.scrollTo(0, 0)")
    record["broken clip + Compare: pills"] = page.evaluate(PILLS)
    shot("broken-clip")
    # the first example: a real clip with the Kinetics-400 set (offline here)
    fresh()
    page.locator("#examples button, #examples .gallery-item").first.click()
    time.sleep(5)
    page.locator("#compare").click()  # what a newcomer does next
    settle(15)
    page.evaluate("() => window.scrollTo(0, 0)")
    record["first example offline: pills"] = page.evaluate(PILLS)
    shot("kinetics-example-offline")
    # a real clip with the SynthMotion set
    fresh()
    page.locator("#model-set label", has_text="SynthMotion").first.click()
    time.sleep(2)
    page.locator("#clip input[type=file]").set_input_files(str(clips["real"]))
    page.wait_for_function("() => { const v = document.querySelector('#clip video'); return v && v.readyState >= 2; }",
                           timeout=120_000)  # fmt: skip
    page.locator("#compare").click()
    page.wait_for_function(
        "() => document.querySelectorAll('[id^=slot-] .mvt-frame').length >= 4", timeout=600_000
    )
    settle(10)
    tl = page.locator("#timeline")
    record["timeline height (px)"] = tl.bounding_box()["height"] if tl.count() else None
    page.locator("#slot-0").scroll_into_view_if_needed()
    page.evaluate("() => window.scrollBy(0, -40)")
    shot("real-clip-synthmotion-set")
    # Play: how far the slider moves in one second
    play = page.locator(".mvt-play").first
    if play.count():
        before = float(page.locator(".mvt-slider").first.input_value())
        play.click()
        time.sleep(1.0)
        after = float(page.locator(".mvt-slider").first.input_value())
        record["Play: slider seconds moved in 1 s"] = round(after - before, 3)
        if page.locator(".mvt-play[aria-pressed=true]").count():
            play.click()
    # a label typed into the first panel's class box that is not one of its classes
    box = page.locator("#class-0 input").first
    if box.count():
        box.scroll_into_view_if_needed()
        box.fill("juggling penguins")
        box.press("Enter")
        settle(8)
        record["typed non-class label: pills"] = page.evaluate(PILLS)
        note = page.locator("#slot-0 .mvt-note-panel")  # where the app says it (since issue 27)
        if note.count():
            record["typed non-class label: said"] = note.first.inner_text()[:200]
            note.first.scroll_into_view_if_needed()
            page.evaluate("() => window.scrollBy(0, 200)")
        shot("typed-label")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkout", type=Path)
    p.add_argument("label")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="mvt-shots-"))
    broken = tmp / "broken.mp4"
    broken.write_bytes(b"not a video at all " * 500)
    clips = {"broken": broken, "real": args.checkout.resolve() / "mvt/assets/examples/sports2d_backflip.mp4"}
    if not clips["real"].exists():
        clips["real"] = args.checkout.resolve() / "assets/examples/sports2d_backflip.mp4"
    proc, url = launch(args.checkout.resolve(), tmp)
    records: dict = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            for vp in VIEWPORTS:
                page = browser.new_page(viewport=vp)
                size = f"{vp['width']}x{vp['height']}"
                record = records.setdefault(size, {})

                def shot(step: str, page=page, size=size) -> None:
                    path = args.out / f"{args.label}-{step}-{size}.jpg"
                    page.screenshot(path=str(path), type="jpeg", quality=70)

                try:
                    steps(page, url, clips, shot, record)
                except Exception as e:  # noqa: BLE001 - a step this checkout cannot do is recorded
                    record["stopped"] = f"{type(e).__name__}: {str(e)[:300]}"
                    shot("stopped")
                page.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    (args.out / f"{args.label}.json").write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(records, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
