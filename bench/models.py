"""Model forward-pass benchmarks: ours vs. a baseline, interleaved repetitions, medians and ratios.

    python bench/models.py [--reps 5] [--only NAME ...] [--threads N] [--device cuda] [--int8] [--active-wait]

One function per comparison, registered in ``COMPARISONS``; ``--only`` runs a subset (default: all). Each
prints a markdown table of medians over interleaved repetitions, its ratios, and under it the machine line
(threads, load average, 4096³ fp32 GEMM GFLOP/s measured in the same run). Rows for our models:

* ``fast``: ``model(x)``, fused attention;
* ``capture (eager)``: ``forward_with_attention(x)``, every map's head-mean matrix computed in the pass;
* ``capture for the default view``: ``forward_with_attention(x, capture="lazy")``, the fast path plus every
  map's per-head CLS row (what the first panel shows); the matrices wait for their first reader;
* ``… + all matrices``: the same, then every deferred matrix computed (what rollout/statistics add later).

``--device cuda`` runs the same tables on a GPU (synchronised timings) and adds bf16-autocast rows and a
comparison of bf16 vs fp32 maps. ``--int8`` adds rows for :func:`mvt.quantize.quantize_linears` (CPU).
libgomp spins idle OpenMP threads by default, which on a loaded 2-core machine costs our many-op models far
more than the baselines (bench/README.md): like ``app.py`` this script sets ``OMP_WAIT_POLICY=PASSIVE``
before torch loads, unless ``--active-wait`` (to reproduce) or the variable is already set.
"""

from __future__ import annotations

import os
import sys

if "--active-wait" not in sys.argv:  # before torch loads OpenMP
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine_line  # noqa: E402

DEVICE = "cpu"
INT8 = False


# ---- shared helpers -----------------------------------------------------------------------------------------


def _sync() -> None:
    if DEVICE != "cpu":
        torch.cuda.synchronize()


CPU_TIMES: dict[str, list[float]] = {}
"""Process CPU seconds of every timed call by case (filled by :func:`interleaved`; see :func:`print_table`)."""


def interleaved(cases: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """Time every case ``reps`` times, round-robin (one warm-up call each first), under inference mode.
    Returns wall-clock seconds; the process CPU seconds of the same calls go to :data:`CPU_TIMES`."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    CPU_TIMES.clear()
    with torch.inference_mode():
        for fn in cases.values():
            fn()
        for _ in range(reps):
            for name, fn in cases.items():
                _sync()
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                _sync()
                times[name].append(time.perf_counter() - t0)
                CPU_TIMES.setdefault(name, []).append(time.process_time() - c0)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {k: statistics.median(v) for k, v in times.items()}


def print_table(med: dict[str, float], base: str, ratio_header: str, fast: str | None = None) -> None:
    """A row per case: median wall time, ratio to ``base`` and (when given) to our ``fast`` row; then the
    median process CPU time and its ratio to ``base`` (on a machine shared with other jobs the CPU time of
    a call moves less than its wall time: waiting for a core is not counted)."""
    cpu = {k: statistics.median(CPU_TIMES[k]) for k in med}
    extra = " | × our fast" if fast else ""
    print(f"| case | median s | {ratio_header}{extra} | CPU s | CPU {ratio_header} |")
    print("|---|---:|---:|" + ("---:|" if fast else "") + "---:|---:|")
    for name, t in med.items():
        tail = f" | {t / med[fast]:.2f}" if fast else ""
        print(
            f"| {name} | {t:.3f} | {t / med[base]:.2f}{tail} | {cpu[name]:.2f} | {cpu[name] / cpu[base]:.2f} |"
        )
    print(f"\n{machine_line(DEVICE)}")


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call as counted by ``torch.utils.flop_counter`` (matmuls/convs/attention, 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def our_rows(label: str, model: nn.Module, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The rows every comparison shows for one of our models (see the module docstring)."""
    rows: dict[str, Callable[[], object]] = {
        f"{label}, fast": lambda: model(x),
        f"{label}, capture (eager)": lambda: model.forward_with_attention(x),
        f"{label}, capture for the default view": lambda: model.forward_with_attention(x, capture="lazy"),
        f"{label}, … + all matrices": lambda: model.forward_with_attention(x, capture="lazy").materialise(),
    }
    if DEVICE != "cpu":
        rows[f"{label}, fast, bf16 autocast"] = lambda: _bf16(lambda: model(x))
        rows[f"{label}, default view, bf16 autocast"] = lambda: _bf16(
            lambda: model.forward_with_attention(x, capture="lazy")
        )
    if INT8 and DEVICE == "cpu":
        from mvt.quantize import quantize_linears

        q = quantize_linears(model)
        rows[f"{label}, fast, int8 linears"] = lambda: q(x)
        rows[f"{label}, default view, int8 linears"] = lambda: q.forward_with_attention(x, capture="lazy")
    return rows


def _bf16(fn: Callable[[], object]) -> object:
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        return fn()


def ratio_notes(med: dict[str, float], label: str, base: str, target: float) -> str:
    """Our fast / baseline and default-view capture / fast, with their targets."""
    fast = med[f"{label}, fast"]
    ratio, view = fast / med[base], med[f"{label}, capture for the default view"] / fast
    return (
        f"{label}: ours / baseline {ratio:.2f} ({'OK' if ratio <= target else 'FAIL'}, target ≤ {target}); "
        f"default-view capture / fast {view:.2f} ({'OK' if view <= 1.2 else 'FAIL'}, target ≤ 1.2); "
        f"eager capture / fast {med[f'{label}, capture (eager)'] / fast:.2f}"
    )


def compare_precisions(model: nn.Module, x: torch.Tensor, label: str) -> str:
    """bf16 autocast (GPU) or int8 linears (CPU) vs fp32: logits, top-1, and the default view's CLS rows."""
    lines = []
    with torch.inference_mode():
        ref = model.forward_with_attention(x, capture="lazy")
        others = {}
        if DEVICE != "cpu":
            others["bf16 autocast"] = _bf16(lambda: model.forward_with_attention(x, capture="lazy"))
        if INT8 and DEVICE == "cpu":
            from mvt.quantize import quantize_linears

            others["int8 linears"] = quantize_linears(model).forward_with_attention(x, capture="lazy")
    for name, out in others.items():
        d = (out.logits.float() - ref.logits.float()).abs().max().item()
        same = int(out.logits.argmax()) == int(ref.logits.argmax())
        corr = [
            torch.corrcoef(torch.stack([a.cls_row.flatten().float(), b.cls_row.flatten().float()]))[
                0, 1
            ].item()
            for a, b in zip(ref.attentions, out.attentions)
            if a.cls_row is not None
        ]
        rows = f"CLS-row correlation min {min(corr):.4f}" if corr else "no CLS rows"
        lines.append(f"{label} {name} vs fp32: max |Δlogit| {d:.2e}, same top-1: {same}, {rows}")
    return "\n".join(lines)


# ---- MViT (issues #3, #21) ----------------------------------------------------------------------------------


def bench_mvit(reps: int = 5) -> None:
    """MViT v2-S and v1-B on 1×3×16×224² fp32: ours vs torchvision with the same (random) weights. Targets:
    v2-S ≤ 0.7× torchvision (#3, #21), v1-B ≤ 1.0×, default-view capture ≤ 1.2× fast (#21)."""
    import torchvision

    from mvt.models.mvit import build_mvit

    targets = {"mvit_v2_s": 0.7, "mvit_v1_b": 1.0}
    clip = torch.randn(1, 3, 16, 224, 224, device=DEVICE)
    for name, target in targets.items():
        torch.manual_seed(0)
        tv = getattr(torchvision.models.video, name)().eval().to(DEVICE)
        ours = build_mvit(name).eval().to(DEVICE)
        ours.load_state_dict(tv.state_dict())
        with torch.inference_mode():
            diff = (ours(clip) - tv(clip)).abs().max().item()
        flops = count_flops(lambda tv=tv: tv(clip))  # torchvision's explicit matmuls: every FLOP is counted
        cases = {"torchvision": lambda tv=tv: tv(clip), **our_rows("ours", ours, clip)}
        med = medians(interleaved(cases, reps))
        print(
            f"\n### {name}: ours vs torchvision {torchvision.__version__}, 1×3×16×224² fp32, {reps} interleaved "
            f"reps, {DEVICE}; {flops / 1e9:.1f} GFLOP per clip (torchvision, FlopCounterMode) — GFLOP/s of "
            f"our fast path {flops / med['ours, fast'] / 1e9:.0f}, torchvision {flops / med['torchvision'] / 1e9:.0f}\n"
        )
        print_table(med, "torchvision", "× torchvision", fast="ours, fast")
        print(f"\n{ratio_notes(med, 'ours', 'torchvision', target)}; max |Δlogit| vs torchvision {diff:.1e}")
        if notes := compare_precisions(ours, clip, name):
            print(notes)
        del tv, ours


# ---- HVT (issue #5) -----------------------------------------------------------------------------------------


class PlainDeiTS(nn.Module):
    """Torch-only DeiT-S (384 wide, 6 heads, 12 blocks, CLS token, no pooling) for machines without timm."""

    def __init__(self, dim: int = 384, depth: int = 12, heads: int = 6, num_classes: int = 1000):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 16, 16)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, 197, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, 0.0, "gelu", 1e-6, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # (N, 3, 224, 224) -> (N, 196, C)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos  # (N, 197, C)
        return self.head(self.norm(self.blocks(x))[:, 0])


def deit_s() -> tuple[nn.Module, str]:
    """timm's ``deit_small_patch16_224`` (random weights) if timm is installed, else :class:`PlainDeiTS`."""
    try:
        import timm
    except ImportError:
        return PlainDeiTS().eval(), "torch-only DeiT-S (timm not installed)"
    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    return model, f"timm {timm.__version__} deit_small_patch16_224"


def bench_hvt(reps: int = 5, frames: int = 16) -> None:
    """HVT-S-1 per frame on 1×3×16×224² vs a plain DeiT-S (same width, no pooling) on the same 16 frames."""
    from mvt.models.hvt import build_hvt

    torch.manual_seed(0)
    clip = torch.randn(1, 3, frames, 224, 224, device=DEVICE)
    images = clip[0].transpose(0, 1).contiguous()  # (T, 3, 224, 224): the same frames as an image batch
    deit, deit_name = deit_s()
    deit = deit.to(DEVICE)
    s1, s4 = build_hvt("hvt_s_1").eval().to(DEVICE), build_hvt("hvt_s_4").eval().to(DEVICE)
    cases = {
        "DeiT-S per frame, fast": lambda: deit(images),
        **our_rows("HVT-S-1", s1, clip),
        "HVT-S-4, fast": lambda: s4(clip),
    }
    flops = {n: count_flops(cases[n]) for n in ("DeiT-S per frame, fast", "HVT-S-1, fast")}
    med = medians(interleaved(cases, reps))
    print(
        f"\n### HVT vs DeiT-S: 1×3×{frames}×224² fp32, {reps} interleaved reps, {DEVICE}; baseline {deit_name}\n"
    )
    print_table(med, "DeiT-S per frame, fast", "× DeiT-S", fast="HVT-S-1, fast")
    print(f"\n{ratio_notes(med, 'HVT-S-1', 'DeiT-S per frame, fast', 1.0)}")
    f_deit, f_hvt = flops["DeiT-S per frame, fast"], flops["HVT-S-1, fast"]
    print(
        f"FLOPs (torch FlopCounterMode, 16 frames): DeiT-S {f_deit / 1e9:.1f} G, HVT-S-1 {f_hvt / 1e9:.1f} G, "
        f"ratio {f_hvt / f_deit:.2f} (load-independent)"
    )
    if notes := compare_precisions(s1, clip, "hvt_s_1"):
        print(notes)


# ---- ViViT (issues #4, #21) ---------------------------------------------------------------------------------

_VIVIT_RSS_CHILD = """
import sys, torch
sys.path.insert(0, {root!r})
from mvt.models.vivit import build_vivit
def hwm():
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024
model = build_vivit('vivit_b_16x2').eval()
x = torch.randn(1, 3, 32, 224, 224)
before = hwm()
with torch.inference_mode():
    out = model.forward_with_attention(x{kw})
    {after}
kept = sum(a.probs().numel() * a.probs().element_size() + (a.cls_row.numel() * 4 if a.cls_row is not None else 0)
           for a in out.attentions) / 2**20
print(f'{{before:.0f}} {{hwm():.0f}} {{kept:.0f}}')
"""


def vivit_capture_rss(lazy: bool = False) -> tuple[float, float, float]:
    """Peak RSS (MiB) of a fresh process building ViViT-B model 1 (before, after the capture on 1×3×32×224²,
    eager or lazy + every matrix computed) and the MiB the returned maps hold; from /proc VmHWM."""
    import subprocess

    code = _VIVIT_RSS_CHILD.format(
        root=str(ROOT), kw=", capture='lazy'" if lazy else "", after="out.materialise()" if lazy else "pass"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, peak, kept = (float(v) for v in res.stdout.split()[-3:])
    return before, peak, kept


def bench_vivit(reps: int = 5) -> None:
    """ViViT-B/16x2 model 1 on 1×3×32×224²: ours vs transformers' VivitForVideoClassification (sdpa), same
    weights; plus our capture paths and their peak RSS in separate processes. Targets: fast ≤ 0.8× HF (#21),
    default-view capture ≤ 1.2× fast (#21), capture peak RSS ≤ 3 GB (#4)."""
    import transformers
    from transformers import VivitConfig, VivitForVideoClassification

    from mvt.models.vivit import build_vivit, convert_hf_vivit

    torch.manual_seed(0)
    cfg = VivitConfig(num_labels=400)
    cfg._attn_implementation = "sdpa"
    hf = VivitForVideoClassification(cfg).eval().to(DEVICE)
    ours = build_vivit("vivit_b_16x2").eval().to(DEVICE)
    ours.load_state_dict(convert_hf_vivit(hf.state_dict()))
    clip = torch.randn(1, 3, 32, 224, 224, device=DEVICE)
    pixels = clip.transpose(1, 2).contiguous()  # HF layout (B, T, C, H, W)
    with torch.inference_mode():
        diff = (ours(clip) - hf(pixel_values=pixels).logits).abs().max().item()
    base = "transformers Vivit (sdpa), fast"
    cases = {base: lambda: hf(pixel_values=pixels), **our_rows("ours", ours, clip)}
    med = medians(interleaved(cases, reps))
    print(
        f"\n### ViViT-B/16x2 model 1 vs transformers {transformers.__version__}: 1×3×32×224² fp32, {reps} "
        f"interleaved reps, {DEVICE}; max |Δlogit| {diff:.1e}\n"
    )
    print_table(med, base, "× HF sdpa", fast="ours, fast")
    print(f"\n{ratio_notes(med, 'ours', base, 0.8)}")
    if notes := compare_precisions(ours, clip, "vivit_b_16x2"):
        print(notes)
    if DEVICE == "cpu":
        for lazy in (False, True):
            before, peak, kept = vivit_capture_rss(lazy)
            what = "lazy capture + every matrix" if lazy else "eager capture"
            print(
                f"{what}: peak RSS {peak / 1024:.2f} GiB ({'OK' if peak <= 3 * 1024 else 'FAIL'}, target ≤ 3 GB; "
                f"{before / 1024:.2f} GiB after building the model; maps kept {kept:.0f} MiB)"
            )


# ---- MMViT (issue #6) ---------------------------------------------------------------------------------------


def bench_mmvit(reps: int = 5) -> None:
    """MMViT-S (two MViT v2-S towers, full and half resolution, + 4 cross-view blocks) vs MViT v2-S on
    1×3×16×224², random weights (same compute as trained ones). Target (issue #6): < 2.5× MViT v2-S."""
    from mvt.models.mmvit import build_mmvit
    from mvt.models.mvit import build_mvit

    torch.manual_seed(0)
    clip = torch.randn(1, 3, 16, 224, 224, device=DEVICE)
    mvit, mmvit = build_mvit("mvit_v2_s").eval().to(DEVICE), build_mmvit("mmvit_s").eval().to(DEVICE)
    base = "MViT v2-S, fast"
    cases = {base: lambda: mvit(clip), **our_rows("MMViT-S", mmvit, clip)}
    flops = {n: count_flops(cases[n]) for n in (base, "MMViT-S, fast")}
    times = interleaved(cases, reps)
    med = medians(times)
    print(f"\n### MMViT-S vs MViT v2-S: 1×3×16×224² fp32, {reps} interleaved reps, {DEVICE}\n")
    print_table(med, base, "× MViT v2-S", fast="MMViT-S, fast")
    best = min(times["MMViT-S, fast"]) / min(times[base])  # least-disturbed reps
    print(f"\n{ratio_notes(med, 'MMViT-S', base, 2.5)}; fastest reps ratio {best:.2f}")
    f_mvit, f_mm = flops[base], flops["MMViT-S, fast"]
    print(
        f"FLOPs (torch FlopCounterMode): MViT v2-S {f_mvit / 1e9:.1f} G, "
        f"MMViT-S {f_mm / 1e9:.1f} G, ratio {f_mm / f_mvit:.2f} (load-independent)"
    )
    if notes := compare_precisions(mmvit, clip, "mmvit_s"):
        print(notes)


# ---- registry -----------------------------------------------------------------------------------------------

COMPARISONS: dict[str, Callable[..., None]] = {
    "mvit": bench_mvit,
    "hvt": bench_hvt,
    "vivit": bench_vivit,
    "mmvit": bench_mmvit,
}


def main(argv: list[str] | None = None) -> None:
    global DEVICE, INT8
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--only", nargs="+", choices=sorted(COMPARISONS), help="run only these comparisons")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (adds bf16 autocast rows)")
    p.add_argument("--int8", action="store_true", help="add int8-linear rows (CPU)")
    p.add_argument("--active-wait", action="store_true", help="keep libgomp's spinning (reproduce)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device != "cpu" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here")
    DEVICE, INT8 = args.device, args.int8
    for name in args.only or list(COMPARISONS):
        COMPARISONS[name](reps=args.reps)


if __name__ == "__main__":
    main()
