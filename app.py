"""mvt-lens: upload a clip and compare where hierarchical video transformers look.

Gradio UI only: layout plus one adapter per event, each calling the analysis service (``lens``), which runs
the models, caches results, decides what each panel shows (``lens.present``) and writes every file shown.
Per-user state is a small handle on the cached results (``lens.AnalysisRef``) in ``gr.State``; each browser
session's files live in their own folder, deleted when the session ends and at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import html
import logging
import os
import traceback
from pathlib import Path

# Before torch loads OpenMP: idle worker threads sleep instead of spinning. On a 2-vCPU Space (or any busy
# CPU) spinning threads fight the decoder, the web server and each other; measured in bench/README.md.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402
import torch  # noqa: E402

import lens  # noqa: E402
from lens import defaults, examples, present, uploads  # noqa: E402
from mvt.device import gpu, select_device, zero_gpu  # noqa: E402
from viz import COLORMAPS  # noqa: E402

log = logging.getLogger("mvt-lens")

ROOT = Path(__file__).resolve().parent
UI = ROOT / "assets" / "ui"
MAX_UPLOAD = "200mb"
N = lens.MAX_MODELS
DEVICE = select_device()  # on ZeroGPU: after `import spaces`, which is what makes CUDA appear

if DEVICE == "cpu":
    torch.set_num_threads(max(1, os.cpu_count() or 1))

SERVICE = lens.Service(
    DEVICE,
    max_results=24,
    gpu=gpu(duration=120) if zero_gpu() else None,  # ZeroGPU runs the models in a worker process
    compute_slots=1 if DEVICE == "cpu" else 2,
)
OUT_DIR = SERVICE.out_dir
"""Every file the app serves is written here by the service — never a user-supplied path."""
atexit.register(SERVICE.close)

JS = (UI / "timeline.js").read_text()
LAUNCH = {
    "css": (UI / "app.css").read_text(),
    "js": (UI / "clip.js").read_text(),
    "max_file_size": MAX_UPLOAD,
    "allowed_paths": [str(OUT_DIR)],
    "show_error": False,
}
"""What ``demo.launch`` needs besides host and port (styles, upload limit, the one folder files are served from)."""


def _url(path: Path) -> str:
    return f"gradio_api/file={path}"


def _session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


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


def _banner(message: str | None) -> dict:
    if not message:
        return gr.update(value="", visible=False)
    return gr.update(
        value=f"<div class='mvt-banner' role='alert'><b>Cannot compare:</b> {html.escape(message)}</div>",
        visible=True,
    )


def _slot(s: present.Slot | None) -> list:
    """The 7 updates of one panel: column, title, picture, stage, heads, class, download."""
    if s is None:
        hidden = gr.update(visible=False)
        return [hidden, gr.update(value=""), gr.update(value=""), hidden, hidden, hidden, hidden]
    return [
        gr.update(visible=True),
        gr.update(value=s.title),
        gr.update(value=s.html),
        gr.update(choices=s.stages, value=s.stage, visible=bool(s.stages)),
        gr.update(choices=s.heads, value=s.head if s.heads else None, visible=bool(s.heads)),
        gr.update(choices=s.classes, value=s.klass, visible=bool(s.classes)),
        gr.update(value=str(s.download) if s.download else None, visible=s.download is not None),
    ]


def _slots(slots: list[present.Slot | None]) -> list:
    return [u for i in range(N) for u in _slot(slots[i] if i < len(slots) else None)]


def _truth(view) -> list:
    if view is None:
        return [gr.update(visible=False), gr.update(value="")]
    return [gr.update(visible=True), gr.update(value=lens.timeline.frames_html(view, _url))]


def _views(state: dict, show: str, opacity: float, cmap: str, stages, heads) -> list[lens.View]:
    return present.views(
        len(state["names"]),
        show,
        stages,
        heads,
        override=state.get("override"),
        colormap=cmap,
        opacity=opacity,
    )


def _show_all(state: dict, views: list[lens.View], folder: Path) -> tuple[list, str, list]:
    analysis = SERVICE.get(state["ref"])
    panels = SERVICE.render(analysis, views, folder=folder)
    slots = [present.slot(p, i, _url, SERVICE.labels(p.name)) for i, p in enumerate(panels)]
    return panels, present.timeline(panels, analysis.clip), slots


# -- adapters --------------------------------------------------------------------------------------------------


def on_load():
    """Page load: every model with its weights' status (asks the network once a minute), and the default set."""
    chosen = defaults.set_models(defaults.default_set())
    return [
        gr.update(choices=defaults.model_choices(probe=True), value=chosen),
        defaults.set_of(chosen),
        "  \n".join(defaults.availability(chosen)),
    ]


def pick_set(name: str):
    """Model set chosen (or set by an example): its models."""
    if name == defaults.CUSTOM:
        return gr.skip(), gr.skip()
    chosen = defaults.set_models(name)
    return gr.update(value=chosen), "  \n".join(defaults.availability(chosen))


def pick_models(names: list[str]):
    """Models picked by hand: which set that is, and a sentence for each that downloads or cannot run."""
    return defaults.set_of(names), "  \n".join(defaults.availability(names))


def upload(path: str | None, request: gr.Request = None):
    """A clip was uploaded: a playable preview when browsers cannot play it (GIF, HEVC, 10-bit…)."""
    if not path:
        return gr.skip(), None, _banner(None)
    try:
        up = uploads.prepare(path, SERVICE.session_dir(_session(request)))
    except lens.USER_ERRORS as e:  # say why, and empty the clip box for the next try
        return gr.update(value=None), None, _banner(str(e))
    if up.note:
        gr.Info(up.note)
    shown = gr.update(value=up.preview) if up.preview else gr.skip()
    return shown, {"sha": lens.clips.file_sha256(up.shown), "original": up.original}, _banner(None)


def compare(
    video,
    names,
    start_s,
    methods,
    show,
    opacity,
    cmap,
    int8=False,
    upload_state=None,
    request: gr.Request = None,
    progress=gr.Progress(),  # noqa: B008 (Gradio injects progress this way)
):
    """Compare: run every chosen model on the clip; each panel appears as soon as its model is done. What the
    panels do not show (full attention matrices: rollout, statistics, token grids) is computed in the
    background once every panel is out; :func:`figures`, chained after Compare, waits for it."""
    folder = SERVICE.session_dir(_session(request))
    names = list(names or [])
    try:
        with _shown_as_errors("Analysis"):
            job = SERVICE.analyse_iter(
                uploads.original(video, upload_state),
                names,
                [*(methods or []), show],
                start_s=start_s,
                progress=lambda frac, what: progress(frac, desc=what),
                precision="int8" if int8 else "fp32",
            )
    except gr.Error as e:  # a clip that cannot be read: clear the results, say why until the next Compare
        yield [None, _banner(e.message), gr.skip(), "", *_truth(None), *_slots([]), None, None]
        raise
    view = lens.View(show, colormap=cmap, opacity=float(opacity))
    state = {"names": names, "override": {}, "show": show}
    panels: list = [None] * len(names)
    slots: list = [present.pending(n, i) for i, n in enumerate(names)]
    yield [
        {**state, "ref": job.ref()},
        _banner(None),
        gr.skip(),
        "",
        *_truth(None),
        *_slots(slots),
        None,
        None,
    ]
    line = ""
    with _shown_as_errors("Analysis"):
        for i, entry in job:
            panels[i] = SERVICE.render(job.analysis_of(i), view, folder=folder, ready_only=True)[0]
            slots[i] = present.slot(panels[i], i, _url, SERVICE.labels(entry.name))
            line = present.timeline(panels, job.clip)
            yield [
                {**state, "ref": job.ref()},
                gr.skip(),
                gr.skip(),
                line,
                *_truth(None),
                *_slots(slots),
                None,
                None,
            ]
        analysis = job.analysis
        # Every panel is on screen: the full matrices (rollout, strips, statistics, token grids) are computed in
        # the background, not waited for here, so Compare is free for the next click; `figures` waits for them.
        deferred = [r for r in analysis.results if not r.ready]
        if deferred:
            SERVICE.warm(deferred)
        truth = present.truth_view(analysis.clip.sha256, panels, folder)
    failed = " ".join(e.message for e in analysis.errors)
    timings = [[r.name, k, round(float(v), 3)] for r in analysis.results for k, v in r.timings.items()]
    shown = gr.update(choices=lens.method_choices_of(analysis.methods), value=show)
    yield [
        {**state, "ref": analysis.ref},
        _banner(failed if not analysis.results else None),
        shown,
        line,
        *_truth(truth),
        *_slots(slots),  # again, so that an API client's result (the last one) holds every panel
        present.summary(analysis, panels),
        timings,
    ]
    if not analysis.results:
        raise gr.Error(failed, print_exception=False)


def rerender(state, show, opacity, cmap, *controls, request: gr.Request = None):
    """Any view control (Show, opacity, colours, a panel's stage or heads): re-render from the cache."""
    if not state or "ref" not in state:
        return [gr.skip()] * (2 + 7 * N)
    with _shown_as_errors("Rendering"):
        if show != state.get("show"):
            state = {**state, "show": show, "override": {}}
        views = _views(state, show, opacity, cmap, controls[:N], controls[N:])
        _, line, slots = _show_all(state, views, SERVICE.session_dir(_session(request)))
    return [state, line, *_slots(slots)]


def explain(index: int):
    """A class picked (or typed) in panel ``index``: re-run that model to explain it."""

    def run(state, klass, show, opacity, cmap, *controls, request: gr.Request = None, progress=gr.Progress()):  # noqa: B008
        if not state or "ref" not in state or index >= len(state["names"]):
            return [gr.skip()] * (2 + 7 * N)
        with _shown_as_errors("Explaining"):
            analysis = SERVICE.get(state["ref"])
            name = state["names"][index]
            target = present.class_index(klass, SERVICE.labels(name))
            if target is None:
                raise lens.LensError(
                    f"{name} has no class called {klass!r}: pick one of its top-5 or type its exact name."
                )
            method = present.class_method(show)
            one = SERVICE.analyse(
                analysis.clip.path,
                [name],
                [*analysis.methods, method],
                start_s=analysis.start_s,
                target=target,
                progress=lambda frac, what: progress(frac, desc=what),
            )
            state = {**state, "ref": analysis.with_entry(index, one.entries[0], one.keys[0]).ref}
            state["override"] = {**state.get("override", {}), index: method}
            views = _views(state, show, opacity, cmap, controls[:N], controls[N:])
            _, line, slots = _show_all(state, views, SERVICE.session_dir(_session(request)))
        return [state, line, *_slots(slots)]

    return run


def figures(state, show, opacity, cmap):
    """After Compare: the all-stages strips, token-grid and attention-statistics figures."""
    if not state or "ref" not in state:
        return [gr.update(visible=False)] * (2 * N) + [None]
    with _shown_as_errors("Figures"):
        analysis = SERVICE.get(state["ref"])
        view = lens.View(show, colormap=cmap, opacity=float(opacity))
        panels = SERVICE.render(analysis, view)
        strips = [p.strip for p in panels if p.result is not None and p.strip is not None]
        grids = lens.token_grid_figures(analysis.results)
        return (
            [gr.update(value=str(s), visible=True) for s in strips]
            + [gr.update(visible=False)] * (N - len(strips))
            + [gr.update(value=f, visible=True) for f in grids]
            + [gr.update(visible=False)] * (N - len(grids))
            + [lens.stats_figure(analysis.results)]
        )


def export(state, show, opacity, cmap, request: gr.Request = None):
    """Export tab: a zip with overlay mp4s, volumes (.npz), report.json and report.html."""
    with _shown_as_errors("Export"):
        view = lens.View(show, colormap=cmap, opacity=float(opacity))
        ref = state.get("ref") if state else None
        return str(SERVICE.export(SERVICE.get(ref), view=view, folder=SERVICE.session_dir(_session(request))))


def faithfulness(state, steps, progress=gr.Progress()):  # noqa: B008 (Gradio injects progress this way)
    """Faithfulness tab: deletion / insertion curves of every computed method (plus random and centre)."""
    with _shown_as_errors("Faithfulness"):
        scores = SERVICE.faithfulness(
            SERVICE.get(state.get("ref") if state else None),
            steps=int(steps),
            progress=lambda frac, what: progress(frac, desc=what),
        )
    figs = [lens.scoring.figure(name, s) for name, s in scores.items()]
    pad = [gr.update(visible=False)] * (N - len(figs))
    return [*[gr.update(value=f, visible=True) for f in figs], *pad, lens.scoring.table(scores)]


def end_session(request: gr.Request = None):
    """The browser session ended: delete its files."""
    SERVICE.end_session(_session(request))


# -- layout ----------------------------------------------------------------------------------------------------

INTRO = """# mvt-lens
Where do video transformers look? Compare MViT, MMViT, ViViT and HVT on one clip, frame by frame."""


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="mvt-lens", delete_cache=(3600, 3600)) as demo:
        state = gr.State(None, time_to_live=3 * 3600)
        upload_state = gr.State(None, time_to_live=3 * 3600)
        gr.Markdown(INTRO, elem_id="intro")
        with gr.Row(equal_height=False, elem_id="inputs"):
            with gr.Column(scale=4, min_width=280):
                video = gr.Video(sources=["upload", "webcam"], label="Clip", elem_id="clip")
                other = gr.UploadButton(
                    "Upload a GIF or another video file",
                    file_types=[".gif", "video"],
                    size="sm",
                    elem_id="upload-other",
                )
            with gr.Column(scale=5, min_width=300):
                model_set = gr.Radio(
                    list(defaults.SET_NAMES),
                    value=defaults.SYNTHMOTION,
                    label="Model set",
                    elem_id="model-set",
                )
                models = gr.Dropdown(
                    choices=defaults.model_choices(),
                    value=defaults.set_models(defaults.SYNTHMOTION),
                    multiselect=True,
                    max_choices=N,
                    allow_custom_value=True,  # any registered name (checked by the service), e.g. from the API
                    label=f"Models (up to {N})",
                    info="Each says what its weights are: shipped, cached, or what it downloads.",
                    elem_id="models",
                )
                notes = gr.Markdown(elem_id="model-notes")
                run = gr.Button("Compare", variant="primary", elem_id="compare")
                with gr.Accordion("Options", open=False):
                    start = gr.Textbox(
                        label="Start time (seconds)", placeholder="empty = the whole clip", elem_id="start"
                    )
                    methods = gr.CheckboxGroup(
                        choices=lens.method_choices(("rollout", "gradient", "captum")),
                        value=["rollout"],
                        label="Also compute (captum methods take longer)",
                    )
                    int8 = gr.Checkbox(
                        False,
                        label="int8 linear layers: faster on a CPU, approximate (not the models as trained; "
                        "no gradient methods)",
                        visible=DEVICE == "cpu",
                        elem_id="int8",
                    )
            with gr.Column(scale=4, min_width=280, elem_id="examples"):
                shipped = examples.available()
                if shipped:
                    gr.Examples(
                        [[str(e.path), e.model_set] for e in shipped],
                        inputs=[video, model_set],
                        example_labels=[e.label for e in shipped],
                        label="Examples (each picks the model set it suits)",
                        cache_examples=False,
                    )
                    with gr.Accordion("What the examples show", open=False):
                        gr.Markdown("  \n".join(f"**{e.title}** — {e.shows}" for e in shipped))
        banner = gr.HTML(visible=False, elem_id="banner")
        with gr.Row(elem_id="view-controls"):
            show = gr.Dropdown(lens.method_choices(), value="attention", label="Show", scale=3, min_width=260)
            opacity = gr.Slider(0.1, 1.0, value=lens.View().opacity, step=0.05, label="Heat opacity", scale=3)
            cmap = gr.Dropdown(list(COLORMAPS), value="inferno", label="Colours", scale=2)
        with gr.Column(elem_id="results"):  # the timeline sticks while this column is on screen
            timeline = gr.HTML(js_on_load=JS, elem_id="timeline")  # sticks to the top while the panels scroll
            with gr.Row(elem_id="panels", equal_height=False):
                with gr.Column(visible=False, min_width=200, elem_classes="mvt-slot") as truth_col:
                    gr.Markdown("### Ground truth\nThe moving actor: where the motion evidence really is.")
                    truth = gr.HTML(js_on_load=JS)
                slot_outputs: list = []
                stage_ctl, head_ctl, class_ctl = [], [], []
                for i in range(N):
                    with gr.Column(
                        visible=False, min_width=220, elem_classes="mvt-slot", elem_id=f"slot-{i}"
                    ) as col:
                        title = gr.Markdown()
                        view = gr.HTML(js_on_load=JS)
                        stage = gr.Dropdown(
                            label="Stage (keys T×H×W)",
                            visible=False,
                            elem_classes="mvt-ctl",
                            elem_id=f"stage-{i}",
                        )
                        head = gr.Dropdown(
                            label="Heads", visible=False, elem_classes="mvt-ctl", elem_id=f"heads-{i}"
                        )
                        klass = gr.Dropdown(
                            label="Explain class",
                            allow_custom_value=True,
                            visible=False,
                            elem_classes="mvt-ctl",
                            elem_id=f"class-{i}",
                        )
                        download = gr.DownloadButton("Overlay video (.mp4)", visible=False, size="sm")
                    slot_outputs += [col, title, view, stage, head, klass, download]
                    stage_ctl.append(stage)
                    head_ctl.append(head)
                    class_ctl.append(klass)
        with gr.Tabs():
            with gr.Tab("All stages"):
                strips = [
                    gr.Image(visible=False, type="filepath", show_label=False, elem_id=f"strip-{i}")
                    for i in range(N)
                ]
            with gr.Tab("Token grids"):
                grid_plots = [gr.Plot(visible=False) for _ in range(N)]
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
                faith_plots = [gr.Plot(visible=False) for _ in range(N)]
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
            with gr.Tab("Data"):
                summary = gr.JSON(label="What the panels show (also returned by the API)")

        demo.load(
            on_load, outputs=[models, model_set, notes], concurrency_limit=None, api_visibility="private"
        )
        model_set.change(pick_set, inputs=[model_set], outputs=[models, notes], api_visibility="private")
        models.input(pick_models, inputs=[models], outputs=[model_set, notes], api_visibility="private")
        for source in (video, other):
            source.upload(
                upload, inputs=[source], outputs=[video, upload_state, banner], api_visibility="private"
            )
        view_inputs = [show, opacity, cmap, *stage_ctl, *head_ctl]
        run.click(
            compare,
            inputs=[video, models, start, methods, show, opacity, cmap, int8, upload_state],
            outputs=[state, banner, show, timeline, truth_col, truth, *slot_outputs, summary, timings],
            api_name="compare",
            concurrency_limit=4,
        ).then(
            figures,
            inputs=[state, show, opacity, cmap],
            outputs=[*strips, *grid_plots, stats_plot],
            api_name="figures",
        )
        for ctl in (show, cmap, *stage_ctl, *head_ctl):
            ctl.input(
                rerender,
                inputs=[state, *view_inputs],
                outputs=[state, timeline, *slot_outputs],
                api_visibility="private",
            )
        opacity.release(
            rerender,
            inputs=[state, *view_inputs],
            outputs=[state, timeline, *slot_outputs],
            api_visibility="private",
        )
        for i, klass in enumerate(class_ctl):
            klass.input(
                explain(i),
                inputs=[state, klass, *view_inputs],
                outputs=[state, timeline, *slot_outputs],
                api_name=f"explain_{i + 1}",
                concurrency_limit=4,
            )
        export_btn.click(export, inputs=[state, show, opacity, cmap], outputs=export_file, api_name="export")
        faith_btn.click(
            faithfulness,
            inputs=[state, faith_steps],
            outputs=[*faith_plots, faith_table],
            api_name="faithfulness",
        )
        demo.unload(end_session)
    return demo


demo = build_demo()
demo.queue(default_concurrency_limit=8, max_size=32)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    lens.startup.start(SERVICE)  # prefetch the default weights and warm the models up, in the background
    demo.launch(**LAUNCH)
