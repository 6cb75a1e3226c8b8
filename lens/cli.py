"""Command line: ``python -m mvt list | download NAME... | probe CLIP | predict CLIP | explain CLIP | evaluate``.

``predict`` and ``explain`` call the same service the app calls (:class:`lens.Service`): ``predict`` is an
analysis with no explanation methods; ``explain`` writes overlay mp4s, the (T,H,W) volumes, report.json,
timings.json and a self-contained report.html into ``--out`` (:func:`lens.export.write_export`).
``evaluate`` scores the SynthMotion models (:mod:`lens.evaluate`).
"""

from __future__ import annotations

import argparse
import json
import sys

import mvt

from .export import write_export
from .methods import DEFAULT_METHODS
from .records import LensError
from .service import Service


def _cmd_list(args: argparse.Namespace) -> int:
    from mvt.prefetch import weights_status

    for name in mvt.list_models(args.pattern):
        spec = mvt.get_spec(name)
        print(f"{name:32s} {spec.description} — {weights_status(name).describe()}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from mvt.prefetch import download

    return download(args.names)


def _cmd_probe(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    print(json.dumps(asdict(mvt.probe(args.clip)), indent=2, default=str))
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
    service = Service(max_models=None)
    analysis = service.analyse(
        args.clip, args.models, args.methods, start_s=args.start, progress=_stderr_progress
    )
    metrics = service.faithfulness(analysis, steps=args.steps) if args.faithfulness else None
    written = write_export(analysis, args.out, metrics=metrics)
    for r in analysis.results:
        print(f"{r.name}: " + ", ".join(f"{lab} {p:.3f}" for lab, p in r.top5[:3]))
    print(f"wrote {len(written)} files to {args.out}")
    return _failed(analysis)


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
    p = sub.add_parser("predict", help="top-5 predictions of models on a clip")
    p.add_argument("clip")
    p.add_argument("--models", nargs="+", required=True)
    p.set_defaults(fn=_cmd_predict)
    p = sub.add_parser("explain", help="predictions, overlays, volumes and a report for a clip")
    p.add_argument("clip")
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    p.add_argument("--start", type=float, default=None, help="start time in seconds")
    p.add_argument("--out", required=True)
    p.add_argument("--faithfulness", action="store_true", help="score deletion/insertion for every method")
    p.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    p.set_defaults(fn=_cmd_explain)
    sub.add_parser("evaluate", help="accuracy and pointing game of the SynthMotion models (see --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["evaluate"]:
        from .evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except (mvt.VideoError, mvt.WeightsError, LensError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
