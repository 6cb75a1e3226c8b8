"""Command line: ``python -m mvt list | download NAME... | probe CLIP | predict CLIP | explain CLIP | evaluate``.

``explain`` runs the same clip → models → report pipeline as the app (``viz.pipeline``) and writes overlay
mp4s, the (T,H,W) volumes, report.json and a self-contained report.html into ``--out``. ``evaluate`` scores
the SynthMotion models (``mvt.evaluate``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_list(args: argparse.Namespace) -> int:
    from . import get_spec, list_models
    from .prefetch import weights_status

    for name in list_models(args.pattern):
        spec = get_spec(name)
        print(f"{name:32s} {spec.description} — {weights_status(name).describe()}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from .prefetch import download

    return download(args.names)


def _cmd_probe(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .video import probe

    print(json.dumps(asdict(probe(args.clip)), indent=2, default=str))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from . import create_model, preprocess, read_clip

    for name in args.models:
        model = create_model(name)
        spec = model.spec
        clip = read_clip(
            args.clip, num_frames=spec.num_frames, stride=spec.frame_stride, size=spec.resize_size
        )
        with torch.inference_mode():
            probs = model(preprocess(clip, spec)).softmax(-1)[0]
        vals, idx = probs.topk(5)
        labels = spec.labels
        print(f"{name} ({spec.description})")
        for v, i in zip(vals.tolist(), idx.tolist()):
            print(f"  {v:6.3f}  {labels[i]}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from viz import (
        pipeline,
    )  # the CLI shares the app's pipeline; viz imports mvt, never the reverse at import

    models = pipeline.ModelCache("cpu")
    results = []
    for name in args.models:
        results.append(
            pipeline.run_model(
                args.clip,
                name,
                models=models,
                start_s=args.start,
                methods=args.methods,
                progress=lambda f, what: print(f"[{f:4.0%}] {what}", file=sys.stderr),
            )
        )
    written = pipeline.export(results, args.out)
    metrics = None
    if args.faithfulness:
        from viz.faithfulness import score_result

        metrics = {r.name: score_result(models.get(r.name), r, steps=args.steps) for r in results}
    from viz.report import write_report_html

    written["report.html"] = write_report_html(results, Path(args.out) / "report.html", metrics=metrics)
    for r in results:
        print(f"{r.name}: " + ", ".join(f"{lab} {p:.3f}" for lab, p in r.top5[:3]))
    print(f"wrote {len(written)} files to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .video import VideoError
    from .weights import WeightsError

    parser = argparse.ArgumentParser(prog="python -m mvt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("list", help="list registered models and whether their weights are available offline")
    p.add_argument("pattern", nargs="?", default=None)
    p.set_defaults(fn=_cmd_list)
    p = sub.add_parser("download", help="download models' weights now (names or globs, e.g. '*.k400')")
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
    p.add_argument("--methods", nargs="+", default=["attention", "rollout"])
    p.add_argument("--start", type=float, default=None, help="start time in seconds")
    p.add_argument("--out", required=True)
    p.add_argument("--faithfulness", action="store_true", help="score deletion/insertion for every method")
    p.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    p.set_defaults(fn=_cmd_explain)
    sub.add_parser("evaluate", help="accuracy and pointing game of the SynthMotion models (see --help)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["evaluate"]:
        from .evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except (VideoError, WeightsError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
