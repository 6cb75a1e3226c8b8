"""Pay for what is shown: one comparison through the analysis service, deferred vs eager, in one run.

    python bench/service.py [--repeat 3] [--threads 2] [--sets synth k400] [--device cuda] [--int8]

Per model set (SynthMotion demo models; the four Kinetics-size architectures, timed with whatever weights are
on disk — time does not depend on the values) and per mode, the flow a streamed Compare runs: models in
fastest-first order, each analysed (decode, forward, explanations) and its panel rendered (the default view's
overlay and the all-stages strip) as soon as it is done; when all panels are out, ``Service.warm`` computes
what was deferred. Modes, interleaved in every repetition (each service is warmed up by one untimed
comparison first, so models are loaded and first-call costs paid):

* ``deferred``: ``Service()`` today — fast path + CLS rows; panels drawn with ``render(ready_only=True)``;
  the attention matrices and rollout computed by ``warm`` afterwards;
* ``eager (before)``: ``Service(defer=False)`` — full capture in the pass, rollout before the panel, i.e. the
  path before issue #21;
* ``int8`` (``--int8``): deferred, with ``precision="int8"`` (approximate, labelled);
* on ``--device cuda``: ``fp32`` (``bf16=False``) next to the default bf16 autocast, with maps compared.

Printed: first panel, all panels, and everything done (deferred work included) per mode, medians, the ratio to
the eager mode, each model's panel time, then the machine line (load average, 4096³ GEMM GFLOP/s). Large
allocations come from the heap (``mvt.device.keep_freed_memory``, as recommended for the app) unless
``--mmap-allocations``.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py does, before torch loads OpenMP

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine_line  # noqa: E402

KINETICS = ("mvit_v2_s", "mmvit_s", "vivit_b_16x2", "hvt_s_1")
CLIP = ROOT / "mvt" / "assets" / "examples" / "synth_10s.mp4"


def model_sets(which: list[str]) -> list[tuple[str, list[str]]]:
    import lens
    import mvt

    sets = []
    if "synth" in which:
        sets.append(("SynthMotion", lens.default_models()))
    if "k400" in which:
        names = []
        for arch in KINETICS:
            tags = [
                n for n in mvt.list_models(f"{arch}.*", available_only=True) if not n.endswith(".untrained")
            ]
            names.append(tags[0] if tags else f"{arch}.untrained")
        sets.append(("Kinetics-size", names))
    return sets


def compare(svc, names: list[str], precision: str = "fp32") -> dict:
    """One streamed comparison: per model analyse + render its panel; then warm. Times from the start."""
    t0 = time.perf_counter()
    panels, per_model, results = [], {}, []
    for name in names:
        t = time.perf_counter()
        a = svc.analyse(str(CLIP), [name], ["attention", "rollout"], precision=precision)
        svc.render(a, ready_only=svc.defer)
        per_model[name] = time.perf_counter() - t
        panels.append(time.perf_counter() - t0)
        results += a.results
    svc.warm(results).result()
    return {"first": panels[0], "all": panels[-1], "done": time.perf_counter() - t0, "models": per_model}


def clear(svc) -> None:
    svc.results.clear()
    for f in svc.out_dir.iterdir():
        shutil.rmtree(f) if f.is_dir() else f.unlink()


def maps_compared(a, b) -> str:
    """Top-1 agreement and the correlation of the shown volumes (every stage, rollout) of two result lists."""
    agree, corr = [], []
    for ra, rb in zip(a, b):
        agree.append(ra.top5[0][0] == rb.top5[0][0])
        for k in ra.volumes:
            va, vb = ra.volumes[k].values.ravel(), rb.volumes[k].values.ravel()
            if va.std() > 0 and vb.std() > 0:
                corr.append(float(np.corrcoef(va, vb)[0, 1]))
    return f"top-1 agreement {np.mean(agree):.2f}, volume correlation min {min(corr):.4f} (median {np.median(corr):.4f})"


def main() -> None:
    import lens

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sets", nargs="+", default=["synth", "k400"], choices=["synth", "k400"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--mmap-allocations", action="store_true", help="glibc's default allocator settings")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cpu" and not args.mmap_allocations:
        from mvt.device import keep_freed_memory

        keep_freed_memory()  # as recommended for the app (bench/README.md)
    if args.device != "cpu" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here")
    out = Path(tempfile.mkdtemp(prefix="mvt-bench-service-"))
    modes = {
        "deferred": (lens.Service(args.device, out_dir=out / "d"), "fp32"),
        "eager (before)": (lens.Service(args.device, out_dir=out / "e", defer=False), "fp32"),
    }
    if args.int8 and args.device == "cpu":
        modes["int8, deferred"] = (modes["deferred"][0], "int8")
    if args.device != "cpu":
        modes["fp32 (no autocast), deferred"] = (
            lens.Service(args.device, out_dir=out / "f", bf16=False),
            "fp32",
        )
    for label, names in model_sets(args.sets):
        # untimed warm-up per mode (loads models); also gives the fastest-first order
        warm = {m: compare(svc, names, prec) for m, (svc, prec) in modes.items()}
        order = sorted(names, key=warm["deferred"]["models"].get)
        runs: dict[str, list[dict]] = {m: [] for m in modes}
        for _ in range(args.repeat):
            for m, (svc, prec) in modes.items():
                clear(svc)
                runs[m].append(compare(svc, order, prec))
        med = {
            m: {k: statistics.median(r[k] for r in rs) for k in ("first", "all", "done")}
            for m, rs in runs.items()
        }
        base = med["eager (before)"]["all"]
        print(
            f"\n### {label}: {', '.join(order)} (fastest first), {args.repeat} interleaved reps, {args.device}\n"
        )
        print(
            "| mode | first panel s | all panels s | everything s (deferred work done) | all panels × eager |"
        )
        print("|---|---:|---:|---:|---:|")
        for m, v in med.items():
            print(f"| {m} | {v['first']:.2f} | {v['all']:.2f} | {v['done']:.2f} | {v['all'] / base:.2f} |")
        print("\n| model | " + " | ".join(f"{m} panel s" for m in modes) + " |")
        print("|---|" + "---:|" * len(modes))
        for n in order:
            cells = " | ".join(f"{statistics.median(r['models'][n] for r in runs[m]):.2f}" for m in modes)
            print(f"| {n} | {cells} |")
        print(f"\n{machine_line(args.device)}")
        ref = modes["deferred"][0].analyse(str(CLIP), order).results
        for m, (svc, prec) in modes.items():
            if m != "deferred" and (prec != "fp32" or args.device != "cpu"):
                other = svc.analyse(str(CLIP), order, precision=prec).results
                print(f"{m} vs deferred fp32: {maps_compared(ref, other)}")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
