"""mvt-lens: upload a clip and compare where hierarchical video transformers look.

Gradio UI only: layout plus one adapter per event, each calling the analysis service (``lens``), which
runs the models, caches results and writes every file shown. Per-user state is a small handle on the
cached results (``lens.AnalysisRef``) in ``gr.State``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from pathlib import Path

# Before torch loads OpenMP: idle worker threads sleep instead of spinning. On a 2-vCPU Space (or any busy
# CPU) spinning threads fight the decoder, the web server and each other; measured in bench/README.md.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402
import torch

import lens
from mvt.device import gpu, select_device

log = logging.getLogger("mvt-lens")

ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "assets" / "examples"
MAX_UPLOAD = "200mb"
COLUMNS = 2
"""Model panels per row (rows follow from ``lens.MAX_MODELS``)."""
DEVICE = select_device()  # on ZeroGPU: after `import spaces`, which is what makes CUDA appear

if DEVICE == "cpu":
    torch.set_num_threads(max(1, os.cpu_count() or 1))

SERVICE = lens.Service(DEVICE, max_results=24, gpu=gpu(duration=120))  # spaces.GPU on ZeroGPU only
OUT_DIR = SERVICE.out_dir
"""Every file the app serves is written here by the service — never a user-supplied path."""


@contextlib.contextmanager
def _shown_as_errors(what: str):
    """A user's error as their sentence; anything else as a short message — never a traceback."""
    try:
        yield
    except lens.USER_ERRORS as e:
        raise gr.Error(str(e), print_exception=False) from None
    except gr.Error:
        raise
    except Exception as e:  # the server keeps serving
        log.error("%s failed: %s", what, traceback.format_exc())
        raise gr.Error(
            f"{what} failed ({type(e).__name__}: {str(e)[:200]}). The app is still running: try another clip "
            "or fewer models.",
            print_exception=False,
        ) from None


def _hidden() -> list:
    return [gr.update(value=v, visible=False) for v in ("", None, None, None)]


def _slots(panels: list[lens.Panel]) -> list:
    """Title, top-5, overlay video and strip for each of the ``lens.MAX_MODELS`` panels."""
    out: list = []
    for i in range(lens.MAX_MODELS):
        p = panels[i] if i < len(panels) else None
        if p is None:
            out += _hidden()
        elif p.result is None:
            out += [gr.update(value=f"### {p.name}\n**failed:** {p.error}", visible=True), *_hidden()[1:]]
        else:
            r = p.result
            warn = "" if r.trained else "  \n**untrained weights: the attention shown is not learned**"
            notes = ("  \n" + "; ".join(r.notes)) if r.notes else ""
            notes += "".join(f"  \n_{n}_" for n in p.notes)  # about the overlay shown (sinks, baselines)
            out += [
                gr.update(value=f"### {r.name}\n{r.description}{warn}{notes}", visible=True),
                gr.update(value=dict(r.top5), visible=True),
                gr.update(value=str(p.overlay), visible=True),
                gr.update(value=str(p.strip), visible=True),
            ]
    return out


def _shown(figures: list) -> list:
    """One plot update per panel: the figures, then hidden plots."""
    pad = [gr.update(value=None, visible=False)] * (lens.MAX_MODELS - len(figures))
    return [gr.update(value=f, visible=True) for f in figures] + pad


def compare(video, names, start_s, methods, method, stage, head, progress=gr.Progress()):  # noqa: B008 (Gradio injects progress this way)
    """Compare button: run every chosen model on the clip, render the chosen explanation."""
    with _shown_as_errors("Analysis"):
        view = lens.View.from_controls(method, stage, head)
        analysis = SERVICE.analyse(
            video,
            names,
            [*(methods or []), view.method],
            start_s=start_s,
            progress=lambda frac, what: progress(frac, desc=what),
        )
        if not analysis.results:
            raise lens.LensError(" ".join(e.message for e in analysis.errors))
        slots = _slots(SERVICE.render(analysis, view))
    untrained = [r.name for r in analysis.results if not r.trained]
    if untrained:
        gr.Warning(
            f"Untrained weights: {', '.join(untrained)}. Their predictions and attention are not learned "
            "(no trained weights for them are available offline)."
        )
    for e in analysis.errors:
        gr.Warning(f"{e.name} could not run: {e.message}")
    timings = [[r.name, k, round(float(v), 3)] for r in analysis.results for k, v in r.timings.items()]
    return [analysis.ref, *slots, timings]


def figures(state):
    """After Compare: the token-grid and attention-statistics figures (built once the overlays are shown)."""
    if not state:
        return _shown([]) + [None]
    with _shown_as_errors("Figures"):
        results = SERVICE.get(state).results
        return _shown(lens.token_grid_figures(results)) + [lens.stats_figure(results)]


def rerender(state, method, stage, head):
    """Stage / method / head changed: re-render from cached results without running the models."""
    if not state:
        return [gr.update() for _ in range(4 * lens.MAX_MODELS)]
    with _shown_as_errors("Rendering"):
        return _slots(SERVICE.render(SERVICE.get(state), lens.View.from_controls(method, stage, head)))


def export(state, method):
    """Export tab: a zip with overlay mp4s, volumes (.npz), report.json and report.html."""
    with _shown_as_errors("Export"):
        return str(SERVICE.export(SERVICE.get(state)))


def faithfulness(state, steps, progress=gr.Progress()):  # noqa: B008 (Gradio injects progress this way)
    """Faithfulness tab: deletion / insertion curves of every computed method (plus random and centre)."""
    with _shown_as_errors("Faithfulness"):
        scores = SERVICE.faithfulness(
            SERVICE.get(state), steps=int(steps), progress=lambda frac, what: progress(frac, desc=what)
        )
    figs = [lens.faithfulness.figure(name, s) for name, s in scores.items()]
    return [*_shown(figs), lens.faithfulness.table(scores)]


INTRO = """# mvt-lens
Upload a clip (or record one) and compare where hierarchical video transformers look: top-5
predictions, each stage's pooled attention over the frames, attention rollout through the pooling, and
captum attributions. Weights say what they are: *Kinetics-400* (public checkpoints), *SynthMotion demo*
(small models trained here on procedural clips), *not fine-tuned*, or *untrained*.
Models marked *per frame* are image models run on each frame with logits averaged over time.
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
                    choices=lens.model_choices(),
                    value=lens.default_models(),
                    multiselect=True,
                    max_choices=lens.MAX_MODELS,
                    label=f"Models (up to {lens.MAX_MODELS})",
                )
                methods = gr.CheckboxGroup(
                    choices=lens.method_choices(("rollout", "gradient", "captum")),
                    value=["rollout"],
                    label="Also compute (captum methods take longer)",
                )
                with gr.Row():
                    method = gr.Dropdown(lens.method_choices(), value="attention", label="Show")
                    stage = gr.Slider(1, 4, value=4, step=1, label="Stage")
                    head = gr.Dropdown(lens.head_labels(), value="mean", label="Heads")
                run = gr.Button("Compare", variant="primary")
                if EXAMPLES_DIR.is_dir():
                    clips = sorted(str(p) for p in EXAMPLES_DIR.glob("*.mp4"))
                    if clips:
                        gr.Examples(clips, inputs=[video], label="Examples", cache_examples=False)
            with gr.Column(scale=3):
                slot_outputs: list = []
                for row in range(0, lens.MAX_MODELS, COLUMNS):
                    with gr.Row():
                        for _ in range(row, min(row + COLUMNS, lens.MAX_MODELS)):
                            with gr.Column(visible=True):
                                title = gr.Markdown(visible=False)
                                label = gr.Label(num_top_classes=5, visible=False, label="Top-5")
                                over = gr.Video(label="Overlay", visible=False, autoplay=True, loop=True)
                                strip_img = gr.Image(label="All stages", visible=False, type="filepath")
                                slot_outputs += [title, label, over, strip_img]
        with gr.Tabs():
            with gr.Tab("Token grids"):
                grid_plots = [gr.Plot(visible=False) for _ in range(lens.MAX_MODELS)]
            with gr.Tab("Attention statistics"):
                stats_plot = gr.Plot()
            with gr.Tab("Faithfulness"):
                gr.Markdown(
                    "Which explanation is right? Deletion removes the most relevant token cells first (lower "
                    "area = more faithful); insertion adds them to a clip imputed from nothing (higher = more faithful). "
                    "`random` and `center` are baselines every method should beat."
                )
                with gr.Row():
                    faith_steps = gr.Slider(4, 32, value=8, step=4, label="Steps per curve")
                    faith_btn = gr.Button("Score the computed methods")
                faith_plots = [gr.Plot(visible=False) for _ in range(lens.MAX_MODELS)]
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
                export_btn = gr.Button("Build zip (overlays, volumes, report.json, report.html)")
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
