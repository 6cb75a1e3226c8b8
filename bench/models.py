"""Model forward-pass benchmarks: ours vs. a baseline, interleaved repetitions, medians and ratios.

    python bench/models.py [--reps 5] [--only NAME ...] [--threads N]

One function per comparison, registered in ``COMPARISONS``; ``--only`` runs a subset (default: all).
Each comparison prints its own markdown table. Timings are wall-clock on whatever machine runs this (a
shared machine is noisy: compare the ratios, which are measured in the same run, not the absolute times).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# ---- shared helpers -----------------------------------------------------------------------------------------


def interleaved(cases: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """Time every case ``reps`` times, round-robin (one warm-up call each first), under inference mode."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    with torch.inference_mode():
        for fn in cases.values():
            fn()
        for _ in range(reps):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return times


def print_table(rows: list[tuple[str, float, float]], ratio_header: str) -> None:
    print(f"| case | median s | {ratio_header} |")
    print("|---|---:|---:|")
    for name, med, ratio in rows:
        print(f"| {name} | {med:.3f} | {ratio:.2f} |")


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call as counted by ``torch.utils.flop_counter`` (matmuls/convs/attention, 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


# ---- MViT (issue #3) ----------------------------------------------------------------------------------------


def gemm_gflops(n: int = 4096, reps: int = 3) -> float:
    """Achieved GFLOP/s of an n×n×n fp32 matmul (median of ``reps``) at the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    times = interleaved({"gemm": lambda: a @ b}, reps)["gemm"]
    return 2 * n**3 / statistics.median(times) / 1e9


def bench_mvit(reps: int = 5) -> None:
    """MViT v2-S and v1-B on 1×3×16×224² fp32: ours vs torchvision with the same (random) weights, and our
    capture path (forward_with_attention) vs our fast path. Targets (issue #3): v2-S ≤ 0.7× torchvision,
    v1-B ≤ 1.0×, capture ≤ 1.3× fast."""
    import torchvision

    from mvt.models.mvit import build_mvit

    targets = {"mvit_v2_s": 0.7, "mvit_v1_b": 1.0}
    clip = torch.randn(1, 3, 16, 224, 224)
    rows, notes = [], []
    for name, target in targets.items():
        torch.manual_seed(0)
        tv = getattr(torchvision.models.video, name)().eval()
        ours = build_mvit(name).eval()
        ours.load_state_dict(tv.state_dict())
        with torch.inference_mode():
            diff = (ours(clip) - tv(clip)).abs().max().item()
        flops = count_flops(lambda tv=tv: tv(clip))  # torchvision's explicit matmuls: every FLOP is counted
        cases = {
            "torchvision": lambda tv=tv: tv(clip),
            "ours, fast": lambda m=ours: m(clip),
            "ours, forward_with_attention": lambda m=ours: m.forward_with_attention(clip),
        }
        med = {k: statistics.median(v) for k, v in interleaved(cases, reps).items()}
        ratio, capture = (
            med["ours, fast"] / med["torchvision"],
            med["ours, forward_with_attention"] / med["ours, fast"],
        )
        for case, t in med.items():
            rows.append((name, case, t, t / med["torchvision"], t / med["ours, fast"], flops / t / 1e9))
        notes.append(
            f"{name}: ours / torchvision {ratio:.2f} ({'OK' if ratio <= target else 'FAIL'}, target ≤ {target}); "
            f"capture / fast {capture:.2f} ({'OK' if capture <= 1.3 else 'FAIL'}, target ≤ 1.3); "
            f"max |Δlogit| {diff:.1e}; {flops / 1e9:.1f} GFLOP per clip (FlopCounterMode, 2 per MAC)"
        )
        del tv, ours
    gemm = gemm_gflops()
    print(
        f"\n### MViT vs torchvision {torchvision.__version__}: 1×3×16×224² fp32, {reps} interleaved reps, "
        f"{torch.get_num_threads()} threads, load average {load_average()}\n"
    )
    print("| model | case | median s | × torchvision | × our fast | GFLOP/s |")
    print("|---|---|---:|---:|---:|---:|")
    for name, case, t, r_tv, r_fast, gf in rows:
        print(f"| {name} | {case} | {t:.3f} | {r_tv:.2f} | {r_fast:.2f} | {gf:.0f} |")
    print(f"| — | 4096³ fp32 GEMM (reference) | | | | {gemm:.0f} |\n")
    print("\n".join(notes))


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
    clip = torch.randn(1, 3, frames, 224, 224)
    images = clip[0].transpose(0, 1).contiguous()  # (T, 3, 224, 224): the same frames as an image batch
    deit, deit_name = deit_s()
    s1, s4 = build_hvt("hvt_s_1").eval(), build_hvt("hvt_s_4").eval()
    cases = {
        "DeiT-S per frame, fast": lambda: deit(images),
        "HVT-S-1 per frame, fast": lambda: s1(clip),
        "HVT-S-1 per frame, forward_with_attention": lambda: s1.forward_with_attention(clip),
        "HVT-S-4 per frame, fast": lambda: s4(clip),
    }
    flops = {n: count_flops(cases[n]) for n in ("DeiT-S per frame, fast", "HVT-S-1 per frame, fast")}
    times = interleaved(cases, reps)
    base = statistics.median(times["DeiT-S per frame, fast"])
    print(
        f"\n### HVT vs DeiT-S: 1×3×{frames}×224² fp32, {reps} interleaved reps, {torch.get_num_threads()} threads, "
        f"load average {load_average()}; baseline {deit_name}\n"
    )
    print_table(
        [(n, statistics.median(t), statistics.median(t) / base) for n, t in times.items()], "× DeiT-S"
    )
    ratio = statistics.median(times["HVT-S-1 per frame, fast"]) / base
    capture = statistics.median(times["HVT-S-1 per frame, forward_with_attention"]) / statistics.median(
        times["HVT-S-1 per frame, fast"]
    )
    verdict = "OK, cheaper" if ratio < 1 else "FAIL, not cheaper"
    print(f"\nHVT-S-1 / DeiT-S time ratio: {ratio:.2f} ({verdict}); HVT-S-1 capture / fast: {capture:.2f}")
    f_deit, f_hvt = flops["DeiT-S per frame, fast"], flops["HVT-S-1 per frame, fast"]
    print(
        f"FLOPs (torch FlopCounterMode, 16 frames): DeiT-S {f_deit / 1e9:.1f} G, HVT-S-1 {f_hvt / 1e9:.1f} G, "
        f"ratio {f_hvt / f_deit:.2f} (load-independent)"
    )


# ---- ViViT (issue #4) ---------------------------------------------------------------------------------------

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
    out = model.forward_with_attention(x)
kept = sum(a.probs.numel() * a.probs.element_size() + (a.cls_row.numel() * 4 if a.cls_row is not None else 0)
           for a in out.attentions) / 2**20
print(f'{{before:.0f}} {{hwm():.0f}} {{kept:.0f}}')
"""


def vivit_capture_rss() -> tuple[float, float, float]:
    """Peak RSS (MiB) of a fresh process building ViViT-B model 1 (before, after forward_with_attention on
    1×3×32×224²) and the MiB the returned maps hold; measured from /proc/self/status VmHWM."""
    import subprocess

    code = _VIVIT_RSS_CHILD.format(root=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, peak, kept = (float(v) for v in res.stdout.split()[-3:])
    return before, peak, kept


def bench_vivit(reps: int = 5) -> None:
    """ViViT-B/16x2 model 1 on 1×3×32×224²: ours vs transformers' VivitForVideoClassification (sdpa), same
    weights; plus our capture path and its peak RSS in a separate process."""
    from transformers import VivitConfig, VivitForVideoClassification

    from mvt.models.vivit import build_vivit, convert_hf_vivit

    torch.manual_seed(0)
    cfg = VivitConfig(num_labels=400)
    cfg._attn_implementation = "sdpa"
    hf = VivitForVideoClassification(cfg).eval()
    ours = build_vivit("vivit_b_16x2").eval()
    ours.load_state_dict(convert_hf_vivit(hf.state_dict()))
    clip = torch.randn(1, 3, 32, 224, 224)
    pixels = clip.transpose(1, 2).contiguous()  # HF layout (B, T, C, H, W)
    with torch.inference_mode():
        diff = (ours(clip) - hf(pixel_values=pixels).logits).abs().max().item()
    cases = {
        "transformers Vivit (sdpa), fast": lambda: hf(pixel_values=pixels),
        "ours, fast": lambda: ours(clip),
        "ours, forward_with_attention": lambda: ours.forward_with_attention(clip),
    }
    times = interleaved(cases, reps)
    base = statistics.median(times["transformers Vivit (sdpa), fast"])
    import transformers

    print(
        f"\n### ViViT-B/16x2 model 1 vs transformers {transformers.__version__}: 1×3×32×224² fp32, {reps} "
        f"interleaved reps, {torch.get_num_threads()} threads, load average {load_average()}; "
        f"max |Δlogit| {diff:.1e}\n"
    )
    print_table(
        [(n, statistics.median(t), statistics.median(t) / base) for n, t in times.items()], "× HF sdpa"
    )
    ratio = statistics.median(times["ours, fast"]) / base
    capture = statistics.median(times["ours, forward_with_attention"]) / statistics.median(
        times["ours, fast"]
    )
    before, peak, kept = vivit_capture_rss()
    print(
        f"\nours / HF sdpa: {ratio:.2f} ({'OK' if ratio <= 1.0 else 'FAIL'}, target ≤ 1.0); capture / fast: "
        f"{capture:.2f}; capture peak RSS {peak / 1024:.2f} GiB ({'OK' if peak <= 3 * 1024 else 'FAIL'}, "
        f"target ≤ 3 GB; {before / 1024:.2f} GiB after building the model; maps kept {kept:.0f} MiB)"
    )


# ---- MMViT (issue #6) ---------------------------------------------------------------------------------------


def bench_mmvit(reps: int = 5) -> None:
    """MMViT-S (two MViT v2-S towers, full and half resolution, + 4 cross-view blocks) vs MViT v2-S on
    1×3×16×224², random weights (same compute as trained ones). Target (issue #6): < 2.5× MViT v2-S."""
    from mvt.models.mmvit import build_mmvit
    from mvt.models.mvit import build_mvit

    torch.manual_seed(0)
    clip = torch.randn(1, 3, 16, 224, 224)
    mvit, mmvit = build_mvit("mvit_v2_s").eval(), build_mmvit("mmvit_s").eval()
    cases = {
        "MViT v2-S, fast": lambda: mvit(clip),
        "MMViT-S, fast": lambda: mmvit(clip),
        "MMViT-S, forward_with_attention": lambda: mmvit.forward_with_attention(clip),
    }
    flops = {n: count_flops(cases[n]) for n in ("MViT v2-S, fast", "MMViT-S, fast")}
    times = interleaved(cases, reps)
    base = statistics.median(times["MViT v2-S, fast"])
    print(
        f"\n### MMViT-S vs MViT v2-S: 1×3×16×224² fp32, {reps} interleaved reps, {torch.get_num_threads()} "
        f"threads, load average {load_average()}\n"
    )
    print_table(
        [(n, statistics.median(t), statistics.median(t) / base) for n, t in times.items()], "× MViT v2-S"
    )
    fast = statistics.median(times["MMViT-S, fast"])
    ratio, capture = fast / base, statistics.median(times["MMViT-S, forward_with_attention"]) / fast
    best = min(times["MMViT-S, fast"]) / min(times["MViT v2-S, fast"])  # least-disturbed reps
    f_mvit, f_mm = flops["MViT v2-S, fast"], flops["MMViT-S, fast"]
    print(
        f"\nMMViT-S / MViT v2-S time ratio: {ratio:.2f} ({'OK' if ratio < 2.5 else 'FAIL'}, target < 2.5; "
        f"fastest reps {best:.2f}); MMViT-S capture / fast: {capture:.2f}\n"
        f"FLOPs (torch FlopCounterMode): MViT v2-S {f_mvit / 1e9:.1f} G, "
        f"MMViT-S {f_mm / 1e9:.1f} G, ratio {f_mm / f_mvit:.2f} (load-independent)"
    )


# ---- registry -----------------------------------------------------------------------------------------------

COMPARISONS: dict[str, Callable[..., None]] = {
    "mvit": bench_mvit,
    "hvt": bench_hvt,
    "vivit": bench_vivit,
    "mmvit": bench_mmvit,
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--only", nargs="+", choices=sorted(COMPARISONS), help="run only these comparisons")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.only or list(COMPARISONS):
        COMPARISONS[name](reps=args.reps)


if __name__ == "__main__":
    main()
