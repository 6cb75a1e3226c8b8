"""Time from Compare to all overlays written, through the app's own adapter, on the 10 s example.

    python bench/app.py [--repeat 3] [--threads 2] [--device cuda]

Two model sets: the app's default models (SynthMotion demo weights where shipped, else small untrained
ones) and the K400-size architectures (timed with whatever weights are available; timing does not depend
on the weight values). The result cache and the rendered files are cleared before every timed run, models
stay loaded (as in a running app after its first request). Under the table: the machine line (threads, load
average, 4096³ fp32 GEMM GFLOP/s). ``--device cuda`` times each set twice, with the service's bf16 autocast
and in fp32, and compares their maps (top-1 agreement, correlation of every volume shown).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py does, before torch loads OpenMP

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ten_second_clip() -> Path:
    """The shipped 10 s example if present, else a generated 10 s 320×240 clip."""
    shipped = sorted((ROOT / "assets" / "examples").glob("*10s*.mp4"))
    if shipped:
        return shipped[0]
    import mvt

    path = Path("/tmp/mvt-bench/ten_seconds.mp4")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 80, size=(250, 240, 320, 3), dtype=np.uint8)
        for t in range(250):
            x = int(t * 280 / 249)
            frames[t, 100:140, x : x + 40] = (250, 200, 40)
        mvt.write_video(frames, path, fps=25)
    return path


def k400_size_models() -> list[str]:
    import mvt

    names = []
    for arch in ("mvit_v2_s", "mmvit_s", "vivit_b_16x2", "hvt_s_1"):
        tags = [n for n in mvt.list_models(f"{arch}.*", available_only=True) if not n.endswith(".untrained")]
        names.append(tags[0] if tags else f"{arch}.untrained")
    return [n for n in names if n.split(".")[0] in mvt.list_archs()]


def maps_compared(a, b) -> str:
    """Top-1 agreement and the correlation of every volume of two analyses of the same clip and models."""
    agree, corr = [], []
    for ra, rb in zip(a.results, b.results):
        agree.append(ra.top5[0][0] == rb.top5[0][0])
        for k in ra.volumes:
            va, vb = ra.volumes[k].values.ravel(), rb.volumes[k].values.ravel()
            if va.std() > 0 and vb.std() > 0:
                corr.append(float(np.corrcoef(va, vb)[0, 1]))
    return f"top-1 agreement {np.mean(agree):.2f}, volume correlation min {min(corr):.4f}"


def time_compare(app, clip: Path, names: list[str], repeat: int) -> tuple[float, float]:
    def progress(*args, **kwargs) -> None:
        return None

    args = (str(clip), names, None, ["rollout"], "attention", 4, "mean")
    t = time.perf_counter()
    app.compare(*args, progress=progress)  # first call: loads models
    first = time.perf_counter() - t
    runs = []
    for _ in range(repeat):
        app.SERVICE.results.clear()  # and the rendered files, which the service would reuse
        for f in app.SERVICE.out_dir.iterdir():
            shutil.rmtree(f) if f.is_dir() else f.unlink()
        t = time.perf_counter()
        app.compare(*args, progress=progress)
        runs.append(time.perf_counter() - t)
    return first, statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-k400", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast and fp32 rows)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import app
    import lens
    from bench.machine import machine_line

    services = {"": app.SERVICE}
    if args.device != "cpu":
        services = {
            ", bf16 autocast": lens.Service(args.device, max_results=24),
            ", fp32": lens.Service(args.device, max_results=24, bf16=False),
        }

    clip = ten_second_clip()
    sets = [("app defaults", lens.default_models(), 3.0)]
    if not args.skip_k400:
        sets.append(("K400-size", k400_size_models(), 30.0))
    print(f"clip: {clip.name}, threads: {args.threads}, repeat: {args.repeat}\n")
    print(
        "| model set | models | first call (s, loads models) | Compare → overlays (s, median) | target (s) | ratio to target |"
    )
    print("|---|---|---|---|---|---|")
    for label, names, target in sets:
        for how, svc in services.items():
            app.SERVICE = svc
            first, med = time_compare(app, clip, names, args.repeat)
            print(
                f"| {label}{how} | {', '.join(names)} | {first:.2f} | {med:.2f} | {target:.0f} | "
                f"{med / target:.2f} |"
            )
    print(f"\n{machine_line(args.device)}")
    if len(services) > 1:
        for label, names, _ in sets:
            a, b = (svc.analyse(str(clip), names) for svc in services.values())
            print(f"{label}: bf16 autocast vs fp32: {maps_compared(a, b)}")


if __name__ == "__main__":
    main()
