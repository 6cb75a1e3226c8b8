"""Dataset throughput: clips/s of ``analyse-dataset`` with the local engine and on Ray (1 and 2 actors), and a
paper estimate of the Kinetics-400 validation split with the four real-size models on 1, 8 and 64 GPUs.

    python bench/dataset.py [--n 16] [--reps 3] [--models ...] [--methods attention rollout] [--steps 8]

Every case analyses the same ``synth:N:0`` clips in memory (no files), interleaved over ``--reps``
repetitions; the table gives medians. *Steady* clips/s is measured from the first finished clip to the last
(model builds and Ray's actor start-up excluded), *wall* over the whole call. Ray's session starts once
(its start-up is printed apart). Load average and a 4096³ fp32 GEMM rate are printed beside the numbers:
on a shared machine compare the ratios, not the absolute rates.

The estimate (``--skip-estimate`` to leave it out) counts the FLOPs of one forward of each real-size model
(``torch.utils.flop_counter`` on the meta device), multiplies by the forwards one clip costs with these
settings, and divides by an assumed GPU rate; decode is timed here on a Kinetics-like clip. Its assumptions
are printed with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py does, before torch loads OpenMP

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import gemm_gflops, load_average  # noqa: E402

REAL = ("mvit_v2_s", "mmvit_s", "vivit_b_16x2", "hvt_s_1")
K400_VAL = 20_000
GPU_PEAK = 312e12  # A100 dense bf16 (NVIDIA's data sheet); H100 SXM is ~990e12
GPU_FRACTION = 0.35  # assumed achieved fraction of peak for these batch-1 / batch-8 forwards in bf16
CPUS_PER_GPU = 8  # decode tasks: a typical GPU node has 8-12 cores per GPU
EFFICIENCY = {1: 0.95, 8: 0.90, 64: 0.80}  # assumed scaling efficiency (scheduling, tails, stragglers)
START_S = 120.0  # assumed per run: cluster + actors start, models built, weights cached on each node


def forwards_per_clip(methods: list[str], steps: int, mask: bool) -> float:
    """Forward-equivalents one model spends on one clip: the capture forward, gradient methods (about 3 each:
    forward + backward), and 2·steps perturbed forwards per scored map (the methods, random, centre, oracle)."""
    from lens.explain import methods as M

    names = [n for n in M.normalise(methods) if M.get(n).kind != "baseline"]
    grads = sum(3 for n in names if M.get(n).needs_gradients or M.get(n).kind == "captum")
    maps = len(names) + 2 + int(mask)
    return 1 + grads + 2 * steps * maps


def model_gflops(arch: str, tag: str = "untrained") -> float:
    """GFLOP of one fast-path forward at the model's own input size (counted on the meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    import mvt

    spec = mvt.get_spec(f"{arch}.{tag}")
    model = mvt.create_model(f"{arch}.untrained", device="meta")
    x = torch.zeros(1, 3, spec.num_frames, spec.crop_size, spec.crop_size, device="meta")
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x)
    return fc.get_total_flops() / 1e9


def run_case(engine: str, src: str, models: list[str], args, actors: int | None, threads: int) -> dict:
    from lens.dataset import DatasetConfig, RowConfig, analyse_dataset

    stamps: list[float] = []
    t0 = time.perf_counter()
    config = DatasetConfig(
        RowConfig(methods=tuple(args.methods), steps=args.steps),
        engine=engine,
        actors=actors,
        threads=threads,
        progress=False,
        on_clip=lambda rows: stamps.append(time.perf_counter()),
    )
    r = analyse_dataset(src, models, config)
    wall = time.perf_counter() - t0
    n = len(stamps)
    steady = (n - 1) / (stamps[-1] - stamps[0]) if n > 1 else float("nan")
    return {"wall": n / wall, "steady": steady, "rows": r.rows, "load": os.getloadavg()[0]}


def k400_like_clip() -> Path:
    """A 10 s 340×256 H.264 clip at 25 fps (the size most Kinetics copies are stored at)."""
    import mvt

    path = Path("/tmp/mvt-bench/k400_like_10s.mp4")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 90, size=(250, 256, 340, 3), dtype=np.uint8)
        for t in range(250):
            x = int(t * 290 / 249)
            frames[t, 100:150, x : x + 50] = (240, 190, 40)
        mvt.write_video(frames, path, fps=25)
    return path


def decode_seconds(archs: tuple[str, ...], reps: int = 3) -> float:
    """Median seconds to decode one Kinetics-like clip once per distinct sampling of ``archs``."""
    from lens.dataset.rows import decode, decode_specs
    from lens.dataset.sources import ClipRef

    path = k400_like_clip()
    ref = ClipRef(index=0, clip_id=str(path), path=str(path))
    specs = decode_specs([f"{a}.untrained" for a in archs])
    from lens.core import storage

    times = []
    for _ in range(reps):
        storage._sha256.cache_clear()  # lens.core.storage remembers recent hashes: time a cold read
        t = time.perf_counter()
        d = decode(ref, specs)
        times.append(time.perf_counter() - t)
        assert d.error is None, d.error
    return statistics.median(times)


def estimate(args, measured: dict) -> None:
    per_model = {a: model_gflops(a) for a in REAL}
    fwd = forwards_per_clip(args.methods, args.steps, mask=False)
    tflop = fwd * sum(per_model.values()) / 1e3
    rate = GPU_PEAK * GPU_FRACTION
    gpu_s = tflop * 1e12 / rate
    dec = decode_seconds(REAL)
    per_gpu_s = max(gpu_s, dec / CPUS_PER_GPU)
    print("\n### Paper estimate: Kinetics-400 validation, the four real-size models\n")
    print("FLOPs of one forward (2 per MAC, fast path, counted on the meta device): ", end="")
    print(", ".join(f"{a} {g:.0f} G" for a, g in per_model.items()))
    print(
        f"\nWith `--methods {' '.join(args.methods)} --steps {args.steps}` (no masks: random and centre "
        f"baselines) one model spends {fwd:.0f} forward-equivalents on a clip, so a clip costs "
        f"{tflop:.1f} TFLOP for the four models; at {GPU_FRACTION:.0%} of an A100's {GPU_PEAK / 1e12:.0f} "
        f"TFLOP/s bf16 peak that is {gpu_s:.2f} GPU-s per clip. Decoding a Kinetics-like clip (10 s, "
        f"340×256) once per distinct sampling takes {dec:.2f} CPU-s here, {dec / CPUS_PER_GPU:.2f} s per clip "
        f"with {CPUS_PER_GPU} decode cores per GPU, so "
        f"{'the GPUs are the bottleneck' if gpu_s >= dec / CPUS_PER_GPU else 'decode is the bottleneck'}."
        + (
            f" For scale: with the same settings the SynthMotion models ran at {measured['fraction']:.0%} of "
            "this machine's GEMM rate here (perturbed clips go through a model in batches of 8)."
            if measured
            else ""
        )
        + "\n"
    )
    print("| GPUs | scaling efficiency (assumed) | wall time | clips/s |")
    print("|---:|---:|---:|---:|")
    for g, eff in EFFICIENCY.items():
        wall = K400_VAL * per_gpu_s / (g * eff) + START_S
        print(f"| {g} | {eff:.2f} | {wall / 3600:.2f} h ({wall / 60:.0f} min) | {K400_VAL / wall:.1f} |")
    print(
        f"\nAssumptions: {K400_VAL} clips; {START_S:.0f} s of start-up (cluster, actors, model builds, weights "
        "already on the nodes); one actor per GPU holding all four models; the CPU-side work of a row "
        "(attention statistics, painting maps onto the frames, the blur substrate) runs on the actor's cores "
        "and is assumed to hide behind the GPU's; the efficiency column covers scheduling, the tail of the "
        "last clips and stragglers. Without deletion/insertion "
        f"(`--methods` none) a clip costs {sum(per_model.values()) / 1e3:.2f} TFLOP, {fwd:.0f}× less."
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=16, help="clips per case")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--models", nargs="+", default=None, help="default: one SynthMotion model per family")
    p.add_argument("--methods", nargs="*", default=["attention", "rollout"])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--skip-estimate", action="store_true")
    p.add_argument("--only-estimate", action="store_true", help="skip the throughput runs")
    args = p.parse_args()
    if args.only_estimate:
        estimate(args, {})
        return 0

    import ray

    import lens
    from lens.dataset.engines import connect

    models = args.models or [m for m in lens.default_models() if m.endswith(".synth")]
    cores = os.cpu_count() or 1
    t = time.perf_counter()
    connect(num_cpus=cores)
    ray_start = time.perf_counter() - t
    cases = {
        f"local, {cores} threads": ("local", None, cores),
        f"ray, 1 actor × {cores} threads": ("ray", 1, cores),
        f"ray, {cores} actors × 1 thread": ("ray", cores, 1),
    }
    gemm = [gemm_gflops()]
    results: dict[str, list[dict]] = {k: [] for k in cases}
    src = f"synth:{args.n}:0"
    for _ in range(args.reps):
        for name, (engine, actors, threads) in cases.items():
            results[name].append(run_case(engine, src, models, args, actors, threads))
    gemm.append(gemm_gflops())
    ray.shutdown()

    print(f"\nModels: {', '.join(models)}; methods {' '.join(args.methods) or 'none'}, steps {args.steps}, ")
    print(f"{args.n} clips per case, {args.reps} interleaved reps; Ray session start {ray_start:.1f} s.")
    print(f"torch {torch.__version__}, ray {ray.__version__}, {cores} cores, OMP_WAIT_POLICY=PASSIVE.\n")
    base = statistics.median(r["steady"] for r in results[next(iter(cases))])
    print("| case | steady clips/s (median) | × local | wall clips/s (median) | load average during runs |")
    print("|---|---:|---:|---:|---|")
    for name, rs in results.items():
        steady = statistics.median(r["steady"] for r in rs)
        wall = statistics.median(r["wall"] for r in rs)
        loads = [r["load"] for r in rs]
        print(
            f"| {name} | {steady:.3f} | {steady / base:.2f} | {wall:.3f} | {min(loads):.1f}–{max(loads):.1f} |"
        )
    print(
        f"\n4096³ fp32 GEMM: {gemm[0]:.0f} GFLOP/s before, {gemm[1]:.0f} after; load average now {load_average()}."
    )

    rows = [r for run in results[next(iter(cases))] for r in run["rows"]]
    parts = {
        k: statistics.mean(r[k] for r in rows)
        for k in ("seconds_forward", "seconds_explain", "seconds_scores")
    }
    decode = statistics.mean(r["seconds_decode"] for r in rows)  # per clip: every row of a clip carries it
    per_clip = sum(parts.values()) * len(models)
    flops = forwards_per_clip(args.methods, args.steps, mask=True) * sum(
        model_gflops(m.split(".")[0], m.split(".")[1]) for m in models
    )
    achieved = flops / per_clip
    print(
        f"Per clip (local engine, all models): {per_clip:.2f} s of model work (forward "
        f"{parts['seconds_forward'] * len(models):.2f}, explain {parts['seconds_explain'] * len(models):.2f}, "
        f"stats + scores {parts['seconds_scores'] * len(models):.2f}) and {decode:.3f} s decode; "
        f"~{flops:.0f} GFLOP counted, {achieved:.0f} GFLOP/s = {achieved / statistics.mean(gemm):.0%} of the GEMM rate."
    )
    if not args.skip_estimate:
        estimate(args, {"fraction": achieved / statistics.mean(gemm)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
