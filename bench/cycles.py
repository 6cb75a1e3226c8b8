"""What reference cycles hold after requests: the soak's mix in one process, the heap measured with and without
a full garbage collection.

    python bench/cycles.py [--rounds 3] [--requests 40]

Builds the app's service (``app.SERVICE``, its start-up run first), compares every good clip of the soak's corpus
once (warm-up), then runs ``--rounds`` rounds of ``--requests`` requests through the public API's functions
(``lens.ui.api``: Compare with the SynthMotion set, then explain a class, faithfulness, export or a point asked,
chosen at random; each request its own session, ended after it). After each round it reads RSS and glibc's heap
account (:func:`lens.core.memory.heap`), then collects cyclic garbage (``gc.collect``, as a session's end does
since it was measured here) and reads them again. The table says how many objects the collection found, how
long it took and what it gave back; the caches' line says they held the same. Prints the load and GEMM line.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def without_full_collection():
    """``gc.collect`` a no-op inside (Python's own generational collection still runs as usual)."""
    collect = gc.collect
    gc.collect = lambda *args: 0
    try:
        yield
    finally:
        gc.collect = collect


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=40)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import tempfile

    import app
    from bench.machine import machine_line
    from bench.soak import METHODS, SYNTH, Watch, make_corpus
    from lens.core import memory
    from lens.ui import api, startup

    service = app.SERVICE
    startup.start(service).join()  # the heap set up and the start-up run, as app.py's
    watch = Watch(os.getpid())

    def rss_mb() -> float:
        return watch.sample()[1] / 2**20

    good = [str(c.path) for c in make_corpus(Path(tempfile.mkdtemp(prefix="mvt-cycles-"))) if not c.fails]

    def request(i: int, clip: str | None = None) -> None:
        rng, session = random.Random(i), f"s{i}"
        clip = clip or rng.choice(good)
        api.analyse(service, clip, SYNTH, METHODS, session=session)
        k = rng.random()
        if k < 0.3:
            api.explain_class(service, clip, rng.choice(SYNTH), f"class {rng.randint(0, 3)}", session=session)
        elif k < 0.5:
            api.faithfulness(service, clip, [rng.choice(SYNTH)], METHODS, steps=4, session=session)
        elif k < 0.7:
            api.export(service, clip, SYNTH, METHODS, session=session)
        else:
            api.query(service, clip, SYNTH, 0.3, 20.0, 20.0, stage=rng.randint(1, 2), session=session)
        with without_full_collection():  # the session's end as before: the collection is measured below
            service.end_session(session)

    for i, clip in enumerate(good):  # warm-up: every clip compared (and one more request on it)
        request(10_000 + i, clip)
    gc.collect()
    memory.trim()
    mb = 2**20
    print(
        "| after | RSS (MB) | heap used (MB) | objects collected | collection (s) | RSS after it | heap used after it |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| warm-up | {rss_mb():.0f} | {memory.heap()['used'] / mb:.0f} | | | | |")
    for r in range(args.rounds):
        for i in range(args.requests):
            request(r * args.requests + i)
        memory.trim()
        before, used = rss_mb(), memory.heap()["used"] / mb
        t = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - t
        memory.trim()
        print(
            f"| round {r + 1} ({args.requests} requests) | {before:.0f} | {used:.0f} | {found} | {took:.2f} | "
            f"{rss_mb():.0f} | {memory.heap()['used'] / mb:.0f} |"
        )
    print(f"caches: {service.holding()}")
    print(machine_line())
    service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
