"""Command line: ``python -m mvt list | download | probe | inspect-checkpoint | predict | explain | analyse-dataset |
evaluate | selftest``.

Wherever models are named (``--models``), a registry name, a glob or a checkpoint spec string is accepted:
``file:/path/ckpt.pyth``, ``url:https://…``, ``hub:org/repo[@rev]`` (see :mod:`mvt.checkpoints`);
``inspect-checkpoint SOURCE`` prints what such a file was recognised as.

``predict`` and ``explain`` call the same service the app calls (:class:`lens.Service`): ``predict`` is an
analysis with no explanation methods; ``explain`` writes overlay mp4s, the (T,H,W) volumes, report.json,
timings.json and a self-contained report.html into ``--out`` (:func:`lens.files.export.write_export`).
``analyse-dataset`` runs models and methods over every clip of a folder, list or SynthMotion stream, in this
process or on Ray (:mod:`lens.dataset`). ``evaluate`` scores the SynthMotion models (:mod:`lens.dataset.evaluate`);
``selftest`` checks bf16 against fp32 on this device (:mod:`lens.selftest`).
"""

from __future__ import annotations

import argparse
import json
import sys

import mvt

from .core.request import LensError
from .core.windows import prediction_note
from .explain.methods import DEFAULT_METHODS
from .explain.query import ClipPoint
from .explain.randomise import LEVELS
from .files.export import write_export
from .service.service import Service


def _cmd_list(args: argparse.Namespace) -> int:
    from mvt.prefetch import weights_status

    for name in mvt.list_models(args.pattern):
        spec = mvt.get_spec(name)
        licence = f" — {spec.weights.licence}" if spec.weights.licence else ""
        print(f"{name:32s} {spec.description} — {weights_status(name).describe()}{licence}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from mvt.prefetch import download

    return download(args.names)


def _cmd_probe(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    print(json.dumps(asdict(mvt.probe(args.clip)), indent=2, default=str))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    rec = mvt.inspect_checkpoint(args.source, arch=args.arch, labels=args.labels)
    print(rec.describe())
    return 0


def _stderr_progress(frac: float, what: str) -> None:
    print(f"[{frac:4.0%}] {what}", file=sys.stderr)


def _failed(analysis) -> int:
    for e in analysis.errors:
        print(f"error: {e.name}: {e.message}", file=sys.stderr)
    return 2 if analysis.errors else 0


def _cmd_predict(args: argparse.Namespace) -> int:
    analysis = Service(max_models=None).analyse(args.clip, args.models, methods=())
    for r in analysis.results:
        print(f"{r.name} ({r.description})")
        for label, p in r.top5:
            print(f"  {p:6.3f}  {label}")
    return _failed(analysis)


def _cmd_explain(args: argparse.Namespace) -> int:
    points = [ClipPoint.parse(q) for q in args.query or []]  # a mistyped point fails before any model runs
    service = Service(max_models=None)
    analysis = service.analyse(
        args.clip, args.models, args.methods, start_s=args.start, windows=args.windows,
        progress=_stderr_progress,
    )  # fmt: skip
    metrics = service.faithfulness(analysis, steps=args.steps) if args.faithfulness else None
    asked = [service.ask_all(analysis, p.t, p.x, p.y) for p in points]
    written = write_export(analysis, args.out, metrics=metrics, asked=asked)
    for r in analysis.results:
        print(
            f"{r.name} ({prediction_note(r.coverage)}): "
            + ", ".join(f"{lab} {p:.3f}" for lab, p in r.top5[:3])
        )
    print(f"wrote {len(written)} files to {args.out}")
    return _failed(analysis)


def _cmd_analyse_dataset(args: argparse.Namespace) -> int:
    from mvt.device import select_device
    from mvt.prefetch import expand

    from .dataset import DatasetConfig, RowConfig, analyse_dataset

    rows = RowConfig(
        methods=tuple(args.methods),
        steps=args.steps,
        top_k=args.top_k,
        target=args.target,
        shuffled=args.shuffled,
        volumes=args.volumes,
        sinks=args.sinks,
        randomise=tuple(args.randomise),
    )
    config = DatasetConfig(
        rows,
        out=args.out,
        resume=args.resume,
        faithfulness_n=args.faithfulness_n,
        engine=args.engine,
        device=args.device or select_device(),
        actors=args.actors,
        threads=args.threads,
        address=args.address,
        flush_every=args.flush_every,
    )
    result = analyse_dataset(args.src, expand(args.models), config)
    for name, s in result.summary["models"].items():
        acc = s["accuracy"]["mean"]
        top1 = f"top-1 {acc:.3f} on {s['accuracy']['n']} labelled clips" if acc is not None else "no labels"
        print(f"{name}: {s['clips']} clips, {s['errors']} errors, {top1}")
    rate = f", {result.clips_per_second:.3f} clips/s" if result.computed else ""
    print(
        f"{result.computed} clips analysed, {result.skipped} already done{rate}; "
        f"wrote {result.files['results']} and {result.files.get('summary.html', result.files['summary.json'])}"
    )
    if result.missing:
        print(f"error: {len(result.missing)} clips got no rows; run again with --resume", file=sys.stderr)
        return 2
    return 0


def _dataset_parser(sub) -> None:
    p = sub.add_parser(
        "analyse-dataset",
        help="every clip of a folder, glob, list or synth:N:SEED × models → results.parquet + summary",
        description="Analyse a whole dataset: one row per (clip, model) in OUT/results.parquet (predictions, "
        "attention statistics per stage, each method's pointing game and deletion/insertion AUC, timings), "
        "OUT/summary.json and OUT/summary.html. SRC: a folder, a quoted glob, a .txt/.csv list "
        "(path[,label[,start_s]]) or synth:N:SEED.",
    )
    p.add_argument("src")
    p.add_argument(
        "--models",
        nargs="+",
        required=True,
        help="model names, globs (e.g. '*.synth') or file:/url:/hub: specs",
    )
    p.add_argument("--methods", nargs="*", default=list(DEFAULT_METHODS), help="explanation methods")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--resume", action="store_true", help="continue a run in OUT: skip clips already done")
    p.add_argument("--steps", type=int, default=8, help="points per deletion/insertion curve")
    p.add_argument(
        "--faithfulness-n", type=int, default=None, help="deletion/insertion on the first N clips only"
    )
    p.add_argument("--target", choices=("label", "pred"), default="label", help="class to explain and score")
    p.add_argument("--shuffled", action="store_true", help="also predict with the frames shuffled")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--volumes", action="store_true", help="write every explanation volume to OUT/volumes/")
    p.add_argument("--sinks", action="store_true", help="probe each trained model for sink keys (mvt.sinks)")
    p.add_argument(
        "--randomise",
        nargs="*",
        default=[],
        choices=[*LEVELS, "all", "none"],
        help="model-randomisation sanity check: score every method again with these weights re-drawn",
    )
    p.add_argument("--actors", type=int, default=None, help="ray: model actors (default: one per GPU or CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    p.add_argument("--address", default=None, help="ray: cluster address (default: RAY_ADDRESS, else local)")
    p.add_argument("--device", default=None, help="local engine: cpu or cuda (default: cuda when present)")
    p.add_argument("--flush-every", type=int, default=32, help="write a part file every N clips")
    p.set_defaults(fn=_cmd_analyse_dataset)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mvt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser(
        "list", help="list registered models: weights cached, downloadable (and size) or unavailable"
    )
    p.add_argument("pattern", nargs="?", default=None)
    p.set_defaults(fn=_cmd_list)
    p = sub.add_parser(
        "download", help="download the weights of models now (names or globs), with progress bars"
    )
    p.add_argument("names", nargs="+")
    p.set_defaults(fn=_cmd_download)
    p = sub.add_parser("probe", help="print what mvt reads from a video file")
    p.add_argument("clip")
    p.set_defaults(fn=_cmd_probe)
    p = sub.add_parser(
        "inspect-checkpoint",
        help="what a checkpoint file, URL or hub repo is: format, variant, classes, labels, preprocessing",
    )
    p.add_argument("source", help="file:PATH, url:URL, hub:ORG/NAME[@REV] (or a bare path, URL or repo id)")
    p.add_argument("--arch", default=None, help="a family (mvit, vivit, hvt) or registered architecture")
    p.add_argument("--labels", default=None, help="class names: a file, one a line (or a JSON list)")
    p.set_defaults(fn=_cmd_inspect)
    p = sub.add_parser("predict", help="top-5 predictions of models on a clip")
    p.add_argument("clip")
    p.add_argument("--models", nargs="+", required=True)
    p.set_defaults(fn=_cmd_predict)
    p = sub.add_parser("explain", help="predictions, overlays, volumes and a report for a clip")
    p.add_argument("clip")
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    p.add_argument("--start", type=float, default=None, help="start time in seconds: one window from there")
    p.add_argument(
        "--windows", default=None, help="windows over the clip: a number or 'all' (default: per model)"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--faithfulness", action="store_true", help="score deletion/insertion for every method")
    p.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    p.add_argument(
        "--query", action="append", metavar="T,X,Y", help="ask a clip point (seconds, pixels): where it looks in "
        "every model at every stage, and the frame × frame matrices, into OUT/query/ (repeatable)",
    )  # fmt: skip
    p.set_defaults(fn=_cmd_explain)
    _dataset_parser(sub)
    sub.add_parser("evaluate", help="accuracy and pointing game of the SynthMotion models (see --help)")
    sub.add_parser(
        "selftest", help="bf16 vs fp32 fidelity, Compare time and GEMM rate on this device (--help)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["evaluate"]:
        from .dataset.evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    if argv[:1] == ["selftest"]:
        from .selftest import main as selftest_main

        return selftest_main(argv[1:])
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except (mvt.VideoError, mvt.WeightsError, LensError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
