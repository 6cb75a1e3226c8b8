"""Time asking a point (issue 32): from the cached maps to every panel's new picture, per model set.

    python -m bench.query [--repeat 7] [--threads 2] [--skip-k400]

Two model sets, each compared once on a clip the way the app's Compare does (lazy capture: CLS rows now,
matrices deferred) on a fresh service:

* ``first``: the first click after Compare, before the background warm-up (the stage maps' deferred matrices
  are computed by this click: once, never again);
* ``library``: :meth:`lens.Service.query` for a new point, every model (the volumes: the rows and their
  geometry), median of ``--repeat`` points;
* ``app``: :meth:`lens.ui.actions.Actions.ask` for a new point: the volumes, every panel's overlay sprite
  (JPEG), the clip column and the screens — what a click costs the server, median of ``--repeat``.

The targets (issue 32, two cores, after the first query): ≤ 0.3 s for four SynthMotion panels, ≤ 1.5 s for the
Kinetics-size set; the ratio column is app / target. Kinetics-size models run with untrained weights (no
download here; the time does not depend on the weight values). Under the table: the machine line (threads,
load average, GEMM GFLOP/s): on a busy machine, times mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py does, before torch loads OpenMP

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SETS = {
    "SynthMotion": (
        ["mvit_t.synth", "mmvit_t.synth", "vivit_t1.synth", "hvt_t.synth"],
        "synth_move_left.mp4",
        0.3,
    ),
    "Kinetics-size": (
        ["mvit_v2_s.untrained", "mmvit_s.untrained", "vivit_b_16x2.untrained", "hvt_s_1.untrained"],
        "sports2d_backflip.mp4",
        1.5,
    ),
}
POINTS = [(0.5, 0.5), (0.2, 0.3), (0.8, 0.7), (0.35, 0.8), (0.65, 0.25), (0.45, 0.55), (0.3, 0.4), (0.7, 0.6)]


def _click(result, u: float, v: float) -> str:
    """What the browser sends for a click at (u, v) of a model's picture, at its middle frame."""
    k = len(result.times) // 2
    return json.dumps({"model": result.name, "time": float(result.times[k]), "u": u, "v": v})


def time_set(name: str, repeat: int) -> dict:
    import lens
    from lens.ui.actions import Actions
    from lens.ui.examples import EXAMPLES_DIR
    from lens.ui.screens import KEEP, Controls

    models, clip, target = SETS[name]
    with tempfile.TemporaryDirectory() as tmp:
        service = lens.Service(out_dir=Path(tmp))
        actions = Actions(service, lambda p: f"files/{p.name}", len(models))
        controls = Controls("attention")
        state = None
        for screen in actions.compare(clip=str(EXAMPLES_DIR / clip), models=models, controls=controls):
            state = state if screen.state in (None, KEEP) else screen.state
        analysis = service.get(state.ref)
        first = analysis.results[0]
        t = time.perf_counter()
        asked = actions.ask(state=state, controls=controls, query=_click(first, *POINTS[0]))
        cold = time.perf_counter() - t
        assert asked.banner in (None, KEEP), asked.banner
        lib, app = [], []
        for u, v in (POINTS[1:] * repeat)[:repeat]:
            clip_t = float(first.times[len(first.times) // 2])
            x, y = u * analysis.clip.width, v * analysis.clip.height
            t = time.perf_counter()
            service.query(analysis, clip_t, x, y)
            lib.append(time.perf_counter() - t)
            t = time.perf_counter()
            screen = actions.ask(state=state, controls=controls, query=_click(first, u, v))
            app.append(time.perf_counter() - t)
            assert screen.banner in (None, KEEP), screen.banner
        service.close()
    return {
        "set": name,
        "models": len(models),
        "first": cold,
        "library": statistics.median(lib),
        "app": statistics.median(app),
        "target": target,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-k400", action="store_true", help="only the SynthMotion set")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from bench.machine import machine_line

    rows = [time_set(name, args.repeat) for name in SETS if not (args.skip_k400 and name != "SynthMotion")]
    print(
        "| set | models | first click (s) | query, library (s) | click, app (s) | target (s) | app / target |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['set']} | {r['models']} | {r['first']:.3f} | {r['library']:.3f} | {r['app']:.3f} | "
            f"{r['target']:.1f} | {r['app'] / r['target']:.2f} |"
        )
    print(f"\nmedian of {args.repeat} points after the first; {machine_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
