"""The GPU self-check: bf16 autocast against fp32 for every family, on the device the app would use.

    python -m mvt selftest --device cuda      # a GPU owner's one command: paste what it prints
    python -m mvt selftest --device cpu       # the same checks on the CPU (CI runs it)

Per model, once in fp32 and once under ``torch.autocast(device, dtype=torch.bfloat16)`` (what the app does on
a GPU):

* **logits** of ``--clips`` SynthMotion clips (stream ``--seed``) made at the model's frames and size, on the
  fast path (``model(x)``) in batches: top-1 agreement, the largest logit difference and that difference over
  the spread of the fp32 logits; milliseconds per clip in each precision;
* **maps**: every explanation volume of ``--methods`` on ``--map-clips`` of the shipped examples that suit the
  model, computed by :class:`lens.Service` — the app's own code: device transfer, autocast, deferred matrices —
  with ``bf16=False`` and with ``bf16=True``, the bf16 run explaining the class the fp32 run predicted: the
  Pearson r of each volume (minimum over the clips);
* **peak memory** the device held while the model was checked (CUDA; each model is released after its check, so
  the number is that model's weights and activations).

Then the four-model Compare (the model set the app starts with on this device: Kinetics-size on CUDA), timed
after a warm-up on another clip: every panel out (``analyse``) and the deferred maps done (``warm``), in bf16 and
in fp32. The device's GEMM rate (fp32 and bf16) is printed beside the timings.

**Fidelity** (exit status 1 when it fails), for models with trained weights: every map r ≥ 0.99, and top-1
agreement ≥ 0.99 on the shipped SynthMotion models (SynthMotion clips are their data; a Kinetics model's top-1 on
them is reported, not held). Models with random weights run the same code and are reported, not held: their
near-uniform logits and maps are ties and noise that any rounding reorders.

What runs where. CUDA: the seven shipped models and the real-size models of every family — the Kinetics-400 set
(pretrained weights where cached or downloadable, else the architecture untrained, labelled so) and ViViT-B's
factorisations 2–4 — with every explanation method, and the Kinetics-size Compare. CPU (CI, 2 cores): the seven
shipped models (every family and ViViT's four factorisations, the same classes and code as the real sizes) on 8
clips, one explanation method per kind of computation (:data:`CHEAP_METHODS`; CUDA runs every method) and the
SynthMotion Compare: a code-path check for CI, about a
minute on 2 quiet cores — the CUDA run, with 128 clips, is the measurement; ``--real-size`` adds the Kinetics-size
models, minutes each on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

import mvt
from mvt import synth
from mvt.device import gemm_tflops, select_device
from mvt.prefetch import expand, weights_status

from .core.records import ModelError
from .explain import methods as M
from .service.service import Service
from .ui import defaults, examples

TOP1_MIN = 0.99
"""bf16 top-1 agreement with fp32 the shipped models are held to."""
MAP_R_MIN = 0.99
"""Pearson r with fp32 every explanation map of a trained model is held to."""
CHEAP_METHODS = (
    "attention",
    "rollout",
    "grad_rollout",
    "token_flow",
    "gradcam",
)
"""The CPU default: one explanation method per kind of computation — attention capture, rollout (the deferred
matrices), attention gradients, relevance propagation (token flow) and a captum attribution (Grad-CAM). The CUDA
run adds the other captum methods (saliency, input × gradient: one pass; integrated gradients, occlusion, feature
ablation: 16 to hundreds of passes per clip)."""
REAL_SIZE_EXTRA = ("vivit_b_16x2_fe.untrained", "vivit_b_16x2_fsa.untrained", "vivit_b_16x2_fdp.untrained")
"""ViViT-B's factorisations 2–4 at real size (no public weights), beside the Kinetics-400 set."""


@dataclass
class ModelCheck:
    name: str
    trained: bool
    held: str
    """What this model is held to: ``"top-1 and maps"``, ``"maps"`` or ``""`` (reported only)."""
    clips: int = 0
    top1_agreement: float = float("nan")
    logit_max_abs: float = float("nan")
    logit_rel: float = float("nan")
    """Largest |bf16 − fp32| logit over the standard deviation of the fp32 logits."""
    ms_fp32: float = float("nan")
    ms_bf16: float = float("nan")
    maps: dict[str, float] = field(default_factory=dict)
    """Volume slug → Pearson r (bf16 vs fp32), minimum over the map clips."""
    peak_mib: float | None = None
    error: str = ""
    failures: list[str] = field(default_factory=list)


@dataclass
class Report:
    device: str
    device_name: str
    torch: str
    version: str
    gemm_fp32: float
    gemm_bf16: float
    seed: int
    methods: list[str]
    checks: list[ModelCheck]
    compare_models: list[str] = field(default_factory=list)
    compare_s: dict[str, float] = field(default_factory=dict)
    compare_peak_mib: float | None = None
    peak_rss_mib: float | None = None

    @property
    def failures(self) -> list[str]:
        return [f"{c.name}: {f}" for c in self.checks for f in c.failures]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two maps (1.0 for two equal constant maps, NaN for shapes that differ)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        return float("nan")
    if a.std() == 0 or b.std() == 0:
        return 1.0 if np.allclose(a, b, rtol=1e-3, atol=1e-7) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def real_size_models() -> list[str]:
    """One real-size model per family, pretrained where its weights can be had now, else untrained; and ViViT-B's
    factorisations 2–4 (untrained)."""
    out = [_available(n) for n in defaults.set_models(defaults.KINETICS)]
    return out + [n for n in REAL_SIZE_EXTRA if n in mvt.list_models()]


def _available(name: str) -> str:
    """``name`` if its weights can be had now (cached or downloadable), else its architecture untrained."""
    return name if weights_status(name).available else f"{mvt.get_spec(name).arch}.untrained"


def _held(name: str) -> str:
    spec = mvt.get_spec(name)
    if not spec.trained:
        return ""
    return "top-1 and maps" if spec.tag == "synth" else "maps"


class _Shared:
    """One model object per name for every service of the check (two precisions, one build)."""

    def __init__(self) -> None:
        self.models: dict[str, torch.nn.Module] = {}

    def __call__(self, name: str, device: torch.device) -> torch.nn.Module:
        if name not in self.models:
            self.models[name] = mvt.create_model(name, device=device)
        return self.models[name]

    def release(self, name: str, services: dict[bool, Service]) -> None:
        """Drop ``name`` everywhere it is held (and its results), so the device memory it took is free again."""
        self.models.pop(name, None)
        for svc in services.values():
            svc.forget(name)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@lru_cache(maxsize=32)
def _clips(n: int, seed: int, frames: int, size: int, start: int) -> np.ndarray:
    """uint8 ``(n, frames, size, size, 3)`` SynthMotion clips, made once for every model of that input shape."""
    return synth.generate(n, seed, frames=frames, size=size, start=start).clips


def check_logits(model: torch.nn.Module, check: ModelCheck, device: torch.device, n: int, seed: int) -> None:
    """Top-1 agreement and logit differences of bf16 autocast vs fp32 on ``n`` SynthMotion clips."""
    spec = model.spec
    batch = 8
    logits: dict[bool, list[torch.Tensor]] = {False: [], True: []}
    seconds = {False: 0.0, True: 0.0}
    for start in range(0, n, batch):
        clips = _clips(min(batch, n - start), seed, spec.num_frames, spec.crop_size, start)
        x = mvt.normalise(clips, spec, device=device)  # (B, 3, T, S, S)
        for bf16 in (False, True):
            with torch.inference_mode(), _autocast(device, bf16):
                if start == 0:
                    model(x[:1])  # warm-up (kernels, autotuning), not timed
                _sync(device)
                t = time.perf_counter()
                out = model(x)
                _sync(device)
            seconds[bf16] += time.perf_counter() - t
            logits[bf16].append(out.float().cpu())
    ref, low = torch.cat(logits[False]), torch.cat(logits[True])  # (n, classes)
    diff = (low - ref).abs().max().item()
    check.clips = n
    check.top1_agreement = float((low.argmax(-1) == ref.argmax(-1)).float().mean())
    check.logit_max_abs = float(diff)
    check.logit_rel = float(diff / max(ref.std().item(), 1e-12))
    check.ms_fp32, check.ms_bf16 = 1000 * seconds[False] / n, 1000 * seconds[True] / n


def check_maps(
    services: dict[bool, Service], name: str, clips: Sequence[Path], methods: Sequence[str], check: ModelCheck
) -> None:
    """Pearson r of every explanation volume, bf16 vs fp32, through the app's service (minimum over ``clips``)."""
    for clip in clips:
        ref = services[False].analyse(clip, [name], methods)
        if isinstance(ref.entries[0], ModelError):
            raise RuntimeError(ref.entries[0].message)
        target = ref.entries[0].target
        low = services[True].analyse(clip, [name], methods, target=target)
        if isinstance(low.entries[0], ModelError):
            raise RuntimeError(low.entries[0].message)
        a, b = ref.entries[0].volumes, low.entries[0].volumes
        for key in a:
            r = correlation(a[key].values, b[key].values) if key in b else float("nan")
            check.maps[key.slug] = min(check.maps.get(key.slug, r), r)


def map_clips(name: str, count: int) -> list[Path]:
    """``count`` shipped examples that suit ``name``: SynthMotion clips for SynthMotion models, else the real
    footage first."""
    synth = mvt.get_spec(name).label_set == "synthmotion"
    suits = [e.path for e in examples.available() if (e.model_set == defaults.SYNTHMOTION) == synth]
    others = [e.path for e in examples.available() if e.path not in suits]
    return (suits + others)[:count]


def time_compare(
    services: dict[bool, Service], names: list[str], device: torch.device
) -> tuple[dict, float | None]:
    """Seconds of a four-model Compare (every panel; + the deferred maps) in bf16 and fp32, after a warm-up
    on another clip; and the peak device memory (MiB, CUDA) while it ran."""
    clips = map_clips(names[0], 2)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out = {}
    for bf16 in (True, False):
        svc = services[bf16]
        svc.warm(svc.analyse(clips[-1], names, M.DEFAULT_METHODS)).result()  # warm-up: builds, kernels
        svc.results.clear()
        t = time.perf_counter()
        analysis = svc.analyse(clips[0], names, M.DEFAULT_METHODS)
        _sync(device)
        panels = time.perf_counter() - t
        svc.warm(analysis).result()
        _sync(device)
        precision = "bf16" if bf16 else "fp32"
        out[f"{precision} every panel"] = panels
        out[f"{precision} + deferred maps"] = time.perf_counter() - t
        errors = [e.message for e in analysis.errors]
        if errors:
            raise RuntimeError("; ".join(errors))
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return out, peak


def run(
    device: str,
    *,
    models: list[str] | None = None,
    real_size: bool | None = None,
    clips: int | None = None,
    map_count: int | None = None,
    methods: Sequence[str] | None = None,
    seed: int = 7,
    compare: bool = True,
    log=print,
) -> Report:
    """Every check on ``device``; :class:`Report` holds the numbers and the fidelity failures."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "--device cuda, but torch sees no CUDA device (torch.cuda.is_available() is False)"
        )
    cuda = dev.type == "cuda"
    real_size = cuda if real_size is None else real_size
    names = (
        expand(models) if models else mvt.list_models("*.synth") + (real_size_models() if real_size else [])
    )
    methods = M.normalise(
        methods if methods is not None else (M.names(M.EXPLANATION_KINDS) if cuda else CHEAP_METHODS)
    )
    clips = clips or (128 if cuda else 8)
    map_count = map_count or (2 if cuda else 1)
    shared = _Shared()
    services = {bf16: Service(dev, max_models=None, builder=shared, bf16=bf16) for bf16 in (False, True)}
    report = Report(
        device=str(dev),
        device_name=torch.cuda.get_device_name(dev) if cuda else f"CPU, {torch.get_num_threads()} threads",
        torch=torch.__version__,
        version=mvt.__version__,
        gemm_fp32=gemm_tflops(str(dev), torch.float32, n=4096 if cuda else 2048),
        gemm_bf16=gemm_tflops(str(dev), torch.bfloat16, n=4096 if cuda else 2048),
        seed=seed,
        methods=list(methods),
        checks=[],
    )
    try:
        for name in names:
            log(f"checking {name} ({'trained' if mvt.get_spec(name).trained else 'untrained'}) ...")
            report.checks.append(check_model(name, dev, services, shared, clips, seed, map_count, methods))
        if compare:
            report.compare_models = defaults.set_models(
                defaults.KINETICS if real_size else defaults.SYNTHMOTION
            )
            if real_size:
                report.compare_models = [_available(n) for n in report.compare_models]
            log(f"timing the Compare of {', '.join(report.compare_models)} ...")
            report.compare_s, report.compare_peak_mib = time_compare(services, report.compare_models, dev)
    finally:
        for svc in services.values():
            svc.close()
    if not cuda:
        import resource

        report.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def check_model(
    name: str,
    dev: torch.device,
    services: dict[bool, Service],
    shared: _Shared,
    clips: int,
    seed: int,
    map_count: int,
    methods: Sequence[str],
) -> ModelCheck:
    """Every check of one model, held to the thresholds its weights call for; a model that cannot run is a
    failure of the check, not a crash of the command."""
    spec = mvt.get_spec(name)
    check = ModelCheck(name, bool(spec.trained), _held(name))
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        check_logits(shared(name, dev), check, dev, clips, seed)
        check_maps(services, name, map_clips(name, map_count), methods, check)
    except Exception as e:
        check.error = f"{type(e).__name__}: {e}"
        check.failures.append(f"did not run ({check.error})")
    if cuda:
        check.peak_mib = torch.cuda.max_memory_allocated(dev) / 2**20
    if "top-1" in check.held and not check.top1_agreement >= TOP1_MIN:
        check.failures.append(f"bf16 top-1 agreement {check.top1_agreement:.3f} < {TOP1_MIN}")
    if check.held:
        low = {k: r for k, r in check.maps.items() if not r >= MAP_R_MIN}
        check.failures += [f"map {k}: r {r:.4f} < {MAP_R_MIN}" for k, r in low.items()]
    shared.release(name, services)  # the next model's peak memory is its own
    return check


def _f(v: float | None, fmt: str) -> str:
    return "—" if v is None or v != v else format(v, fmt)


def render(report: Report) -> str:
    """The report as Markdown: ready to paste into an issue."""
    lines = [
        f"### mvt-lens {report.version} selftest: {report.device} ({report.device_name}), torch {report.torch}",
        "",
        f"GEMM: fp32 {report.gemm_fp32:.2f} TFLOP/s, bf16 {report.gemm_bf16:.2f} TFLOP/s · "
        f"bf16 = torch.autocast({report.device.split(':')[0]!r}, dtype=torch.bfloat16) vs fp32 · "
        f"SynthMotion stream {report.seed} · methods: {', '.join(report.methods)}",
        "",
        "| model | weights | held to | clips | bf16 top-1 agreement | max abs logit diff | / σ(logits) | "
        "maps: min r (which) | ms/clip fp32 | ms/clip bf16 | peak MiB | |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for c in report.checks:
        worst = min(c.maps.items(), key=lambda kv: kv[1] if kv[1] == kv[1] else -2.0) if c.maps else None
        maps = f"{worst[1]:.4f} ({worst[0]})" if worst else "—"
        verdict = "FAIL" if c.failures else ("pass" if c.held else "reported")
        lines.append(
            f"| {c.name} | {'trained' if c.trained else 'untrained'} | {c.held or 'not held'} | {c.clips} | "
            f"{_f(c.top1_agreement, '.3f')} | {_f(c.logit_max_abs, '.4f')} | {_f(c.logit_rel, '.4f')} | {maps} | "
            f"{_f(c.ms_fp32, '.1f')} | {_f(c.ms_bf16, '.1f')} | {_f(c.peak_mib, '.0f')} | {verdict} |"
        )
    lines += ["", "Every map, r (bf16 vs fp32):", ""]
    for c in report.checks:
        maps = " · ".join(f"{k} {_f(r, '.4f')}" for k, r in c.maps.items()) or c.error or "—"
        lines.append(f"- {c.name}: {maps}")
    if report.compare_s:
        s = report.compare_s
        lines += [
            "",
            f"Compare, {len(report.compare_models)} models ({', '.join(report.compare_models)}), steady: every panel "
            f"{s['bf16 every panel']:.2f} s bf16 / {s['fp32 every panel']:.2f} s fp32; with the deferred maps "
            f"{s['bf16 + deferred maps']:.2f} s / {s['fp32 + deferred maps']:.2f} s"
            + (f"; peak GPU memory {report.compare_peak_mib:,.0f} MiB" if report.compare_peak_mib else ""),
        ]
    if report.peak_rss_mib:
        lines.append(f"Peak process memory (RSS) {report.peak_rss_mib:,.0f} MiB")
    failures = report.failures
    lines += [
        "",
        f"Fidelity: {'FAIL' if failures else 'PASS'} (trained models: every map r ≥ {MAP_R_MIN}; shipped models: "
        f"bf16 top-1 agreement ≥ {TOP1_MIN})",
    ]
    lines += [f"- {f}" for f in failures]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mvt selftest", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    p.add_argument(
        "--models", nargs="+", default=None, help="names or globs (default: see --help's description)"
    )
    p.add_argument("--real-size", action=argparse.BooleanOptionalAction, default=None,
                   help="add the Kinetics-size models of every family (default: on CUDA only)")  # fmt: skip
    p.add_argument(
        "--clips", type=int, default=None, help="SynthMotion clips per model (default 128 CUDA, 8 CPU)"
    )
    p.add_argument(
        "--map-clips", type=int, default=None, help="example clips for the maps (default 2 CUDA, 1 CPU)"
    )
    p.add_argument(
        "--methods", nargs="+", default=None, help="explanation methods (default: all CUDA, cheap CPU)"
    )
    p.add_argument("--seed", type=int, default=7, help="SynthMotion stream (the models trained on 0..)")
    p.add_argument("--no-compare", dest="compare", action="store_false", help="skip the Compare timing")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return p


def run_args(args: argparse.Namespace) -> Report:
    """:func:`run` with :func:`parser`'s options (progress lines on stderr)."""
    return run(
        args.device or select_device(),
        models=args.models,
        real_size=args.real_size,
        clips=args.clips,
        map_count=args.map_clips,
        methods=args.methods,
        seed=args.seed,
        compare=args.compare,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        report = run_args(args)
    except (RuntimeError, KeyError, mvt.WeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2, default=float))
    return 1 if report.failures else 0
