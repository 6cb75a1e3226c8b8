"""mvt-lens: upload a clip and compare where four hierarchical video transformers look.

Gradio UI only: layout plus one adapter per event. Model work lives in ``mvt``; pictures in ``viz``;
the clip → models → report pipeline in ``viz.pipeline`` (shared with ``python -m mvt explain``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import traceback
from pathlib import Path

# Before torch loads OpenMP: idle worker threads sleep instead of spinning. On a 2-vCPU Space (or any busy
# CPU) spinning threads fight the decoder, the web server and each other; measured in bench/README.md.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402
import numpy as np
import torch

import mvt
import viz
from mvt.device import gpu, select_device
from viz import pipeline as P

log = logging.getLogger("mvt-lens")

ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "assets" / "examples"
MAX_MODELS = 4
MAX_UPLOAD = "200mb"
DEVICE = select_device()  # on ZeroGPU: after `import spaces`, which is what makes CUDA appear
OUT_DIR = Path(tempfile.mkdtemp(prefix="mvt-lens-"))
"""Every file the app serves is written here (overlays, strips, exports) — never a user-supplied path."""

if DEVICE == "cpu":
    torch.set_num_threads(max(1, os.cpu_count() or 1))

MODELS = P.ModelCache(DEVICE)
RESULTS = P.ResultCache(max_items=24)

_gpu = gpu(duration=120)  # spaces.GPU on ZeroGPU; the identity elsewhere


def model_label(name: str) -> str:
    spec = mvt.get_spec(name)
    return f"{name} — {spec.description}"


def model_choices() -> list[tuple[str, str]]:
    """Models whose weights load without network access (shipped, cached, or untrained)."""
    return [(model_label(n), n) for n in mvt.list_models(available_only=True)]


def default_models() -> list[str]:
    """One model per family, preferring trained weights available offline, then small untrained ones."""
    names = mvt.list_models(available_only=True)
    picked: list[str] = []
    for family in ("mvit", "mmvit", "vivit", "hvt"):
        fam = [n for n in names if mvt.get_spec(n).family == family]
        for tag in ("synth", "k400", "k400init", "in1k"):
            hit = [n for n in fam if n.endswith("." + tag)]
            if hit:
                picked.append(hit[0])
                break
        else:
            # the small SynthMotion-size configs: fast, and honest about being untrained
            small = [
                n for n in fam if n.endswith(".untrained") and mvt.get_spec(n).label_set == "synthmotion"
            ]
            if small:
                picked.append(small[0])
    return picked[:MAX_MODELS]


def method_choices() -> list[tuple[str, str]]:
    return [(label, key) for key, label in P.METHODS.items()]


def _user_error(e: Exception) -> gr.Error:
    return gr.Error(str(e), print_exception=False)


def _volume(result: P.ModelResult, method: str, stage: int, head: str) -> tuple[str, np.ndarray, object]:
    """(key, volume on its grid, footprint) for the chosen method / stage / head."""
    if method == "attention":
        stages = sorted({m.stage for m in result.output.attentions})
        s = stages[min(max(int(stage) - 1, 0), len(stages) - 1)]
        h = head if head in ("mean", "max") else int(str(head).split()[-1]) - 1
        try:
            vol, fp = P.stage_volume(result.output, s, head=h)
        except ValueError as e:  # e.g. per-head maps of a model without a CLS token
            raise gr.Error(f"{result.name}: {e}", print_exception=False) from None
        return f"attention/{s}", vol, fp
    if method not in result.volumes:
        raise gr.Error(
            f"{P.METHODS.get(method, method)} was not computed for {result.name}: tick it and press Compare.",
            print_exception=False,
        )
    return method, result.volumes[method], result.footprints.get(method)


def _render(result: P.ModelResult, method: str, stage: int, head: str, tag: str) -> tuple[str, str]:
    """Write the overlay mp4 and the all-stages strip for one result; return their paths."""
    key, vol, fp = _volume(result, method, stage, head)
    frames_vol = (
        vol
        if vol.shape == result.frames.shape[:3]
        else viz.to_frames(vol, result.frames.shape[:3], footprint=fp)
    )
    over = viz.overlay(result.frames, frames_vol)
    safe = result.name.replace(".", "_")
    video = OUT_DIR / f"overlay_{tag}_{safe}_{key.replace('/', '-')}.mp4"
    mvt.write_video(over, video, fps=max(2.0, min(result.fps, 30.0)))
    strip_img = P.stage_strip(result)
    strip_path = OUT_DIR / f"{tag}_{safe}_strip.png"
    from PIL import Image

    Image.fromarray(strip_img).save(strip_path, compress_level=1)
    return str(video), str(strip_path)


def _slot_updates(results: list[P.ModelResult], method: str, stage: int, head: str, tag: str) -> list:
    """Outputs for the fixed set of model slots: title, label, video, strip per slot."""
    out: list = []
    for i in range(MAX_MODELS):
        if i < len(results):
            r = results[i]
            video, strip_path = _render(r, method, stage, head, f"{tag}{i}")
            warn = "" if r.trained else "  \n**untrained weights: the attention shown is not learned**"
            notes = ("  \n" + "; ".join(r.notes)) if r.notes else ""
            out += [
                gr.update(value=f"### {r.name}\n{r.description}{warn}{notes}", visible=True),
                gr.update(value={lab: p for lab, p in r.top5}, visible=True),
                gr.update(value=video, visible=True),
                gr.update(value=strip_path, visible=True),
            ]
        else:
            out += [gr.update(value="", visible=False), gr.update(value=None, visible=False)]
            out += [gr.update(value=None, visible=False), gr.update(value=None, visible=False)]
    return out


def _figures(results: list[P.ModelResult]) -> list:
    grids = []
    for i in range(MAX_MODELS):
        if i < len(results):
            fig = viz.token_grid_figure(results[i].output)
            fig.update_layout(
                title=f"{results[i].name}: token grids per stage, coloured by the stage's attention"
            )
            grids.append(gr.update(value=fig, visible=True))
        else:
            grids.append(gr.update(value=None, visible=False))
    stats = viz.stats_figure({r.name: viz.attention_stats(r.output) for r in results}) if results else None
    return grids + [stats]


def _timings(results: list[P.ModelResult]) -> list[list]:
    rows = []
    for r in results:
        for step, seconds in r.timings.items():
            rows.append([r.name, step, round(float(seconds), 3)])
    return rows


def _result_key(digest: str, name: str, start_s: float | None, methods: list[str]) -> tuple:
    return (digest, name, start_s, tuple(sorted(methods)))


@_gpu
def _run_models(
    path: str, names: list[str], start_s: float | None, methods: list[str], progress
) -> list[P.ModelResult]:
    """Run ``names`` on the clip. On ZeroGPU this runs in a worker process: it only returns results."""
    results = []
    for i, name in enumerate(names):

        def step(frac: float, what: str, i: int = i) -> None:
            progress((i + frac) / len(names), desc=what)

        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=DEVICE == "cuda"):
            results.append(
                P.run_model(path, name, models=MODELS, start_s=start_s, methods=methods, progress=step)
            )
    return results


def _analyse(path: str, names: list[str], start_s: float | None, methods: list[str], progress) -> list[tuple]:
    """Results for every model, from the cache where possible; returns their cache keys in order."""
    digest = P.file_hash(path)
    keys = [_result_key(digest, n, start_s, methods) for n in names]
    todo = [n for n, k in zip(names, keys) if RESULTS.get(k) is None]
    if todo:
        for name, result in zip(todo, _run_models(path, todo, start_s, methods, progress)):
            RESULTS.put(_result_key(digest, name, start_s, methods), result)
    return keys


def compare(video, names, start_s, methods, method, stage, head, progress=gr.Progress()):  # noqa: B008 (Gradio injects progress this way)
    """Compare button: run every chosen model on the clip, render the chosen explanation."""
    if not video:
        raise gr.Error("Upload a video clip (or record one with the webcam) first.", print_exception=False)
    names = list(names or [])
    if not names:
        raise gr.Error("Pick at least one model.", print_exception=False)
    if len(names) > MAX_MODELS:
        raise gr.Error(f"Pick at most {MAX_MODELS} models.", print_exception=False)
    methods = sorted(set(methods or []) | ({method} if method != "attention" else set()))
    start = float(start_s) if start_s not in (None, "") and float(start_s) > 0 else None
    try:
        progress(0.0, desc="reading the clip")
        mvt.probe(video)
        keys = _analyse(video, names, start, methods, progress)
        results = [RESULTS.get(k) for k in keys]
        tag = f"r{abs(hash((video, tuple(names), start))) % 10**8}"
        slots = _slot_updates(results, method, stage, head, tag)
    except (mvt.VideoError, mvt.WeightsError) as e:
        raise _user_error(e) from None
    except gr.Error:
        raise
    except Exception as e:  # never a traceback in the UI; the server keeps serving
        log.error("compare failed: %s", traceback.format_exc())
        raise gr.Error(
            f"Analysis failed ({type(e).__name__}: {str(e)[:200]}). The app is still running: try another clip "
            "or fewer models.",
            print_exception=False,
        ) from None
    untrained = [r.name for r in results if not r.trained]
    if untrained:
        gr.Warning(
            f"Untrained weights: {', '.join(untrained)}. Their predictions and attention are not learned "
            "(no trained weights for them are available offline)."
        )
    state = {"keys": keys, "video": video}
    return [state, *slots, _timings(results)]


def figures(state):
    """After Compare: the token-grid and attention-statistics figures (built once the overlays are shown)."""
    if not state:
        return [gr.update(value=None, visible=False)] * MAX_MODELS + [None]
    results = [r for r in (RESULTS.get(k) for k in state["keys"]) if r is not None]
    return _figures(results)


def _cached_results(state) -> list[P.ModelResult]:
    """This session's results from the shared cache, or a clear error if there are none (any more)."""
    if not state:
        raise gr.Error("Run a comparison first.", print_exception=False)
    results = [RESULTS.get(k) for k in state["keys"]]
    if any(r is None for r in results):
        raise gr.Error(
            "These results were evicted from the cache: press Compare again.", print_exception=False
        )
    return results


def rerender(state, method, stage, head):
    """Stage / method / head changed: re-render from cached results without running the models."""
    if not state:
        return [gr.update() for _ in range(4 * MAX_MODELS)]
    results = _cached_results(state)
    return _slot_updates(results, method, stage, head, f"v{abs(hash((method, stage, head))) % 10**6}")


def export(state, method):
    """Export tab: a zip with overlay mp4s, volumes (.npz) and report.json."""
    import shutil

    results = _cached_results(state)
    out = Path(tempfile.mkdtemp(dir=OUT_DIR, prefix="export-"))
    P.export(results, out / "mvt-lens")
    archive = shutil.make_archive(str(out / "mvt-lens"), "zip", root_dir=out / "mvt-lens")
    return archive


def faithfulness(state, steps, progress=gr.Progress()):  # noqa: B008 (Gradio injects progress this way)
    """Faithfulness tab: deletion / insertion curves of every computed method (plus random and centre)."""
    from viz import faithfulness as F

    results = _cached_results(state)
    figures, rows = [], []
    for i, r in enumerate(results):

        def step(frac: float, what: str, i: int = i, name: str = r.name) -> None:
            progress((i + frac) / len(results), desc=f"{name}: {what}")

        extra = F.baselines(r.frames.shape[:3])
        with MODELS.lock(r.name):
            scores = F.score_result(MODELS.get(r.name), r, extra=extra, steps=int(steps), progress=step)
        curves = {m: s["curves"] for m, s in scores.items()}
        figures.append(gr.update(value=F.curves_figure(curves, title=r.name), visible=True))
        for m, c in curves.items():
            rows.append([r.name, m, round(c.deletion_auc, 4), round(c.insertion_auc, 4)])
    figures += [gr.update(value=None, visible=False)] * (MAX_MODELS - len(figures))
    return [*figures, rows]


INTRO = """# mvt-lens
Upload a clip (or record one) and compare where **MViT**, **MMViT**, **ViViT** and **HVT** look: top-5
predictions, each stage's pooled attention over the frames, attention rollout through the pooling, and
captum attributions. Weights say what they are: *Kinetics-400* (public checkpoints), *SynthMotion demo*
(small models trained here on procedural clips), *not fine-tuned*, or *untrained*.
HVT `.in1k` is an ImageNet image model run on each frame with logits averaged over time.
"""


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="mvt-lens", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO)
        state = gr.State(None, time_to_live=3600)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                video = gr.Video(sources=["upload", "webcam"], label="Clip", height=260)
                start = gr.Number(
                    label="Start time in seconds (for long clips; empty = whole clip)", value=None
                )
                models = gr.Dropdown(
                    choices=model_choices(),
                    value=default_models(),
                    multiselect=True,
                    max_choices=MAX_MODELS,
                    label=f"Models (up to {MAX_MODELS})",
                )
                methods = gr.CheckboxGroup(
                    choices=[(lab, k) for k, lab in P.METHODS.items() if k != "attention"],
                    value=["rollout"],
                    label="Also compute (captum methods take longer)",
                )
                with gr.Row():
                    method = gr.Dropdown(method_choices(), value="attention", label="Show")
                    stage = gr.Slider(1, 4, value=4, step=1, label="Stage")
                    head = gr.Dropdown(
                        ["mean", "max"] + [f"head {i}" for i in range(1, 9)], value="mean", label="Heads"
                    )
                run = gr.Button("Compare", variant="primary")
                if EXAMPLES_DIR.is_dir():
                    clips = sorted(str(p) for p in EXAMPLES_DIR.glob("*.mp4"))
                    if clips:
                        gr.Examples(clips, inputs=[video], label="Examples", cache_examples=False)
            with gr.Column(scale=3):
                slot_outputs: list = []
                for _row in range(2):
                    with gr.Row():
                        for _col in range(2):
                            with gr.Column(visible=True):
                                title = gr.Markdown(visible=False)
                                label = gr.Label(num_top_classes=5, visible=False, label="Top-5")
                                over = gr.Video(label="Overlay", visible=False, autoplay=True, loop=True)
                                strip_img = gr.Image(label="All stages", visible=False, type="filepath")
                                slot_outputs += [title, label, over, strip_img]
        with gr.Tabs():
            with gr.Tab("Token grids"):
                grid_plots = [gr.Plot(visible=False) for _ in range(MAX_MODELS)]
            with gr.Tab("Attention statistics"):
                stats_plot = gr.Plot()
            with gr.Tab("Faithfulness"):
                gr.Markdown(
                    "Which explanation is right? Deletion removes the most relevant token cells first (lower "
                    "area = more faithful); insertion adds them to a blurred clip (higher = more faithful). "
                    "`random` and `center` are baselines every method should beat."
                )
                with gr.Row():
                    faith_steps = gr.Slider(4, 32, value=8, step=4, label="Steps per curve")
                    faith_btn = gr.Button("Score the computed methods")
                faith_plots = [gr.Plot(visible=False) for _ in range(MAX_MODELS)]
                faith_table = gr.Dataframe(
                    headers=[
                        "model",
                        "method",
                        "deletion AUC (lower better)",
                        "insertion AUC (higher better)",
                    ],
                    interactive=False,
                )
            with gr.Tab("Timings"):
                timings = gr.Dataframe(headers=["model", "step", "seconds"], interactive=False)
            with gr.Tab("Export"):
                export_btn = gr.Button("Build zip (overlays, volumes, report.json)")
                export_file = gr.File(label="Download")

        run.click(
            compare,
            inputs=[video, models, start, methods, method, stage, head],
            outputs=[state, *slot_outputs, timings],
            api_name="compare",
        ).then(figures, inputs=[state], outputs=[*grid_plots, stats_plot], api_name="figures")
        for ctl in (method, stage, head):
            ctl.change(
                rerender, inputs=[state, method, stage, head], outputs=slot_outputs, api_visibility="private"
            )
        export_btn.click(export, inputs=[state, method], outputs=export_file, api_name="export")
        faith_btn.click(
            faithfulness,
            inputs=[state, faith_steps],
            outputs=[*faith_plots, faith_table],
            api_name="faithfulness",
        )
    return demo


demo = build_demo()
demo.queue(default_concurrency_limit=1 if DEVICE == "cpu" else 2, max_size=32)

if __name__ == "__main__":
    demo.launch(max_file_size=MAX_UPLOAD, allowed_paths=[str(OUT_DIR)], show_error=False)
