"""Time from Compare to the first panel and to all panels, through the app's own streamed adapter.

    python bench/app.py [--repeat 3] [--threads 2] [--skip-k400] [--mirror] [--int8] [--device cuda]

Two model sets: the SynthMotion set (shipped weights) and the Kinetics-400 set (``mvit_v2_s``, ``mmvit_s``,
``vivit_b_16x2``, ``hvt_s_1``; timed with whatever weights are available — timing does not depend on the weight
values). Per set, on a fresh service (models not loaded):

* ``cold`` (``--mirror`` only): empty TORCH_HOME / HF_HOME, weights served at their real size by the loopback
  mirror of the tests (random values in the real formats), so Compare downloads them first;
* ``no warm-up``: weights on disk, the first Compare of a fresh service (it builds the models);
* ``start-up``: what a Space does at start (:func:`lens.startup.run`: prefetch, then one warm-up comparison of a
  shipped example); then ``after warm-up``, the first user's Compare of another clip;
* ``steady``: the median of ``--repeat`` Compares with the result cache and the rendered files cleared.

Each line gives the time to the first panel on screen, to every panel on screen (its fast view: attention, in
every window; strips without the rows still computed in the background), to every panel showing its lead view
(the page's default Show, "most faithful": each model's best-evidenced method, streamed in after every fast
view) and to the figures chained after Compare (full strips, token grids and
statistics: the deferred matrices computed); "after warm-up / steady"
is the issue's first-call target (≤ 1.2); "steady, one window" asks for one window (a start time), so the
default windows' cost is the ratio of the two steady rows. ``--int8`` adds a steady row with int8 linear layers. Under the table:
the machine line (threads, load average, 4096³ fp32 GEMM GFLOP/s): timings on a busy machine mean little.
``--device cuda`` times the steady rows twice, with the service's bf16 autocast and in fp32, and compares their
maps (top-1 agreement, correlation of every volume shown).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py does, before torch loads OpenMP

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINETICS = ("mvit_v2_s", "mmvit_s", "vivit_b_16x2", "hvt_s_1")
DEVICE = "cpu"


def ten_second_clip() -> Path:
    """The shipped 10 s example if present, else a generated 10 s 320×240 clip."""
    shipped = sorted((ROOT / "mvt" / "assets" / "examples").glob("*10s*.mp4"))
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
    """The Kinetics-400 set where its weights are on disk, else the same architectures untrained."""
    import mvt

    names = []
    for arch in KINETICS:
        tags = [n for n in mvt.list_models(f"{arch}.*", available_only=True) if not n.endswith(".untrained")]
        names.append(tags[0] if tags else f"{arch}.untrained")
    return [n for n in names if n.split(".")[0] in mvt.list_archs()]


TORCHVISION_WEIGHTS = ("mvit_v2_s.k400", "mmvit_s.k400init")
"""The Kinetics-400 set's models on torchvision's weights file, whose name carries a hash random weights cannot
match."""


def register_torchvision_weights(url: str) -> None:
    """:data:`TORCHVISION_WEIGHTS` registered (in this process) on ``url``: the mirror's file under its own hash."""
    from mvt import zoo

    for name in TORCHVISION_WEIGHTS:
        spec = zoo.get_spec(name)
        zoo._SPECS[name] = replace(spec, weights=replace(spec.weights, url=url))


def serve_kinetics_from_mirror(workdir: Path):
    """The loopback mirror of the tests serving the Kinetics-400 set at its real sizes, this process pointed at
    it with empty caches in ``workdir``. torchvision's names carry a hash random weights cannot match, so
    ``mvit_v2_s.k400`` and ``mmvit_s.k400init`` are re-registered (for this run) on a URL carrying the served
    file's own hash — the same download and check code. Returns (mirror, names)."""
    from mvt.models.vivit import HF_REPO
    from tests.mirror import Files, Mirror, Standard

    mirror = Mirror()
    mirror.standard = Standard(Files(workdir / "mirror-files"))
    mirror.standard.install(mirror)
    print("building real-size random checkpoints (once) …", file=sys.stderr)
    mirror.add_hf(HF_REPO, "pytorch_model.bin", mirror.standard.vivit("vivit_b_16x2")())
    mirror.add(Standard.HVT["hvt_s_1"], mirror.standard.hvt("hvt_s_1", real_size=True)(), redirect=True)
    url, _, _ = mirror.standard.serve_with_own_hash(mirror, "mvit_v2_s", real_size=True)
    register_torchvision_weights(url)
    os.environ.update(MVT_WEIGHTS_MIRROR=mirror.url, HF_ENDPOINT=mirror.url)
    for var in (
        "MVT_OFFLINE",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
    ):
        os.environ.pop(var, None)
    import huggingface_hub.constants as hub_constants

    hub_constants.HF_HUB_OFFLINE = False
    return mirror, ["mvit_v2_s.k400", "mmvit_s.k400init", "vivit_b_16x2.k400", "hvt_s_1.in1k"]


def empty_caches(workdir: Path, tag: str) -> None:
    from mvt import weights

    os.environ["TORCH_HOME"] = str(workdir / f"torch-{tag}")
    os.environ["HF_HOME"] = str(workdir / f"hf-{tag}")
    weights.forget_probes()


def fresh_service():
    import app
    import lens

    app.SERVICE = lens.Service(DEVICE, max_results=24, compute_slots=1, out_dir=Path(tempfile.mkdtemp()))
    app.ACTIONS.service = app.SERVICE
    return app.SERVICE


def page_in(**values) -> dict:
    """An event's inputs as Gradio hands them to the app: keyed by component, named as the page names them."""
    import app

    base = {"show": "faithful", "opacity": 0.8, "colormap": "inferno"}  # the page's default Show
    base |= {f"{k}_{i}": None for i in range(app.N) for k in ("stage", "heads")}
    return {app.PAGE[k]: v for k, v in {**base, **values}.items()}


def time_compare(
    clip: Path, names: list[str], int8: bool = False, start_s: str = ""
) -> tuple[float, float, float, float]:
    """(seconds to the first panel, to every panel, to every panel's lead view, to the end) of one Compare
    through the app's adapter. A panel first shows attention (the fast view); its lead view is the method
    Show's default ("most faithful") picks for the model, streamed in after every fast view."""
    import app
    from lens.ui.screens import Controls

    leads = [Controls().methods_for([n], gradients=not int8)[0] for n in names]
    t = time.perf_counter()
    first = every = led = state = None
    data = page_in(clip=str(clip), upload=None, models=names, methods=["rollout"], start_s=start_s, int8=int8)
    pictures = [app.PAGE[f"picture_{i}"] for i in range(len(names))]
    for out in app.on_compare(data, None, progress=lambda *a, **k: None):
        state = out.get(app.PAGE.state, state)
        views = [str(out.get(p, "")) for p in pictures]  # each panel's picture, where this step sets it
        shown = ["mvt-pending" not in v and "data-model" in v for v in views]
        if first is None and any(shown):
            first = time.perf_counter() - t
        if every is None and all(shown):
            every = time.perf_counter() - t
        if led is None and all(f'data-method="{m}"' in v for m, v in zip(leads, views)):
            led = time.perf_counter() - t
    app.on_figures(page_in(state=state))  # chained after Compare: strips, grids, statistics
    total = time.perf_counter() - t
    return tuple(v if v is not None else total for v in (first, every, led)) + (total,)


def steady(
    clip: Path, names: list[str], repeat: int, int8: bool = False, start_s: str = ""
) -> tuple[float, float, float, float]:
    import app

    runs = []
    for _ in range(repeat):
        app.SERVICE.results.clear()
        app.SERVICE.panels.clear()
        for f in app.SERVICE.out_dir.iterdir():  # and the rendered files, which the service would reuse
            shutil.rmtree(f) if f.is_dir() else f.unlink()
        runs.append(time_compare(clip, names, int8, start_s))
    return tuple(statistics.median(r[i] for r in runs) for i in range(4))


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


def measure(
    label: str,
    names: list[str],
    clip: Path,
    warm: Path,
    repeat: int,
    cold_workdir: Path | None,
    int8: bool = False,
    device: str = "cpu",
) -> list:
    import lens

    rows = []
    if cold_workdir is not None:
        empty_caches(cold_workdir, "cold")
        fresh_service()
        rows.append((label, "cold (downloads first)", *time_compare(clip, names)))
    fresh_service()
    rows.append((label, "no warm-up (weights on disk)", *time_compare(clip, names)))
    if cold_workdir is not None:
        empty_caches(cold_workdir, "start")
    svc = fresh_service()
    t = time.perf_counter()
    lens.startup.run(svc, "custom", names=names, clip=warm)
    nan = float("nan")
    rows.append((label, "start-up: prefetch + warm-up", nan, nan, nan, time.perf_counter() - t))
    rows.append((label, "after warm-up (first user)", *time_compare(clip, names)))
    rows.append((label, "steady (median)", *steady(clip, names, repeat)))
    rows.append((label, "steady, one window (start 0.01 s)", *steady(clip, names, repeat, start_s="0.01")))
    if int8:
        steady(clip, names, 1, int8=True)  # quantise once (not timed)
        rows.append((label, "steady, int8 (median)", *steady(clip, names, repeat, int8=True)))
    if device != "cpu":
        import app
        import lens

        fp32 = lens.Service(device, max_results=24, bf16=False, out_dir=Path(tempfile.mkdtemp()))
        bf16, app.SERVICE = app.SERVICE, fp32
        steady(clip, names, 1)
        rows.append((label, "steady, fp32 (median)", *steady(clip, names, repeat)))
        a, b = (svc.analyse(str(clip), names) for svc in (bf16, fp32))
        print(f"{label}: bf16 autocast vs fp32: {maps_compared(a, b)}", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-k400", action="store_true")
    parser.add_argument(
        "--mirror", action="store_true", help="serve the Kinetics-400 set's weights from the loopback mirror"
    )
    parser.add_argument("--int8", action="store_true", help="also time int8 linear layers (steady)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast and fp32 rows)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="mvt-bench-"))
    names_k400 = None
    if args.mirror and not args.skip_k400:
        _, names_k400 = serve_kinetics_from_mirror(workdir)
    import lens

    clip = ten_second_clip()
    synth = lens.defaults.set_models("SynthMotion")
    sets = [("SynthMotion", synth, lens.startup.warm_clip("SynthMotion"), None)]
    if not args.skip_k400:
        k400 = names_k400 or k400_size_models()
        sets.append(
            ("Kinetics-400", k400, lens.startup.warm_clip("Kinetics-400"), workdir if args.mirror else None)
        )
    rows = []
    for label, names, warm, cold in sets:
        print(f"{label}: {', '.join(names)}", file=sys.stderr)
        rows += measure(label, names, clip, warm or clip, args.repeat, cold, args.int8, args.device)
    from bench.machine import machine_line

    print(f"clip: {clip.name}, threads: {args.threads}, repeat: {args.repeat}\n")
    print(
        "| model set | run | first panel (s) | every panel (s) | every lead view (s) | + strips and figures (s) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for label, run, first, every, led, total in rows:
        f, e, ld = ("—" if v != v else f"{v:.2f}" for v in (first, every, led))
        print(f"| {label} | {run} | {f} | {e} | {ld} | {total:.2f} |")
    for label in dict.fromkeys(r[0] for r in rows):
        after = next(r for r in rows if r[0] == label and r[1].startswith("after"))
        base = next(r for r in rows if r[0] == label and r[1] == "steady (median)")
        one = next(r for r in rows if r[0] == label and r[1].startswith("steady, one window"))
        print(f"\n{label}: first Compare after warm-up / steady = {after[5] / base[5]:.2f} (target ≤ 1.2)")
        print(f"{label}: every panel, default windows / one window = {base[3] / one[3]:.2f}")
    from lens.ui.screens import Controls

    for label, names, *_ in sets:
        print(f"{label} lead views: " + ", ".join(f"{n} {Controls().methods_for([n])[0]}" for n in names))
    print(f"\n{machine_line(args.device)}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
