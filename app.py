"""mvt-lens: upload a clip and compare where hierarchical video transformers look.

Gradio UI only: the layout, and each event mapped to one call of :class:`lens.ui.actions.Actions`, which answers
with :class:`lens.ui.screens.Screen` records put onto the page by name (:meth:`Page.updates`); inputs come in
by name too (:meth:`Page.asked`). The public API ("Use via API") is five named endpoints over
:mod:`lens.ui.api`; every UI event is private. A browser session keeps an :class:`~lens.ui.screens.AppState`
in ``gr.State`` and its files in its own folder, deleted when it ends; ``SERVICE.close`` stops everything at exit.
"""

from __future__ import annotations

import atexit
import logging
import os
from pathlib import Path

# Before torch loads OpenMP: idle worker threads sleep instead of spinning. On a 2-vCPU Space (or any busy
# CPU) spinning threads fight the decoder, the web server and each other; measured in bench/README.md.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from gradio.data_classes import FileData  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

import lens  # noqa: E402
from lens.ui import adding, api, defaults, examples, screens, uploads  # noqa: E402
from lens.ui.actions import Actions  # noqa: E402
from lens.ui.screens import Screen  # noqa: E402
from lens.ui.texts import FAITHFULNESS, FAITHFULNESS_TABLE, INT8, INTRO, SINKS  # noqa: E402
from mvt.device import select_device, spaces_gpu  # noqa: E402
from viz import COLORMAPS  # noqa: E402

UI, N = Path(__file__).resolve().parent / "assets" / "ui", lens.MAX_MODELS
DEVICE = select_device()  # on ZeroGPU: after `import spaces`, which is what makes CUDA appear
if DEVICE == "cpu" and "OMP_NUM_THREADS" not in os.environ:  # a thread count set outside is kept
    torch.set_num_threads(max(1, os.cpu_count() or 1))

SERVICE = lens.Service(DEVICE, max_results=128, gpu=spaces_gpu(),  # ZeroGPU: one GPU call per action
                       compute_slots=1 if DEVICE == "cpu" else 2)  # fmt: skip
OUT_DIR = SERVICE.out_dir  # the one folder served: only files the service wrote
atexit.register(SERVICE.close)
ACTIONS, JS = Actions(SERVICE, lambda path: f"gradio_api/file={path}", N), (UI / "timeline.js").read_text()
MAX_UPLOAD = adding.MAX_MB * 1024**2  # clips, checkpoints: refused by declared length, else by Gradio
LAUNCH = {"css": (UI / "app.css").read_text(), "js": (UI / "clip.js").read_text(), "max_file_size": MAX_UPLOAD,
          "app_kwargs": {"middleware": [Middleware(uploads.RefuseLargeUploads, max_bytes=MAX_UPLOAD)]},
          "allowed_paths": [str(OUT_DIR)], "show_error": False, "state_session_capacity": 256}  # fmt: skip
"""``demo.launch``'s arguments but host and port (styles, upload limits, the one folder served, page states kept)."""


# -- the page: each component under the name its part has in lens.ui.screens ------------------------------------------


class Page(dict):
    """The page's components by part name (:func:`lens.ui.screens.parts`): ``page.banner``, ``page["title_2"]``."""

    __getattr__, __setattr__ = dict.__getitem__, dict.__setitem__

    def outputs(self, *fields: str) -> list:
        """The components of ``fields``' parts (parts this page lacks, e.g. no examples shipped, left out)."""
        return [self[n] for f in fields for n in screens.part_names(f, N) if n in self]

    def updates(self, screen: Screen) -> dict:
        """``screen``'s changes as ``{component: update}``."""
        html = lambda sprite: lens.timeline.frames_html(sprite, ACTIONS.url)  # noqa: E731
        parts = screens.parts(screen, html)
        out = {self[n]: kw["value"] if list(kw) == ["value"] else gr.update(**kw) for n, kw in parts.items() if n in self}  # fmt: skip
        return out or gr.skip()  # nothing changes (an empty dict would be read as one value)

    def asked(self, data: dict, request: gr.Request | None, progress=None) -> dict:
        """What an action is asked: the inputs by name, the browser session (and its progress bar)."""
        names = {c: n for n, c in self.items()}
        extra = {} if progress is None else {"progress": lambda frac, what: progress(frac, desc=what)}
        session = getattr(request, "session_hash", None)
        return {**screens.asked({names[c]: v for c, v in data.items()}), "session": session, **extra}


PAGE = Page()


# -- events: each one call of an action, its screens put onto the page (a problem is a part of a screen, never raised)


def _plain(action: str):
    """An event that is one call of ``ACTIONS.<action>`` with the inputs as they come (page load, set, models)."""
    return lambda *inputs: PAGE.updates(getattr(ACTIONS, action)(*inputs))


on_load, on_set, on_models = map(_plain, ("load", "pick_set", "pick_models"))


def on_upload(path: str | None, request: gr.Request = None):
    return PAGE.updates(ACTIONS.upload(path, getattr(request, "session_hash", None)))


def on_compare(data: dict, request: gr.Request = None, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
    yield from map(PAGE.updates, ACTIONS.compare(**PAGE.asked(data, request, progress)))


def on_explain(index: int):
    def run(data: dict, request: gr.Request = None, progress=gr.Progress()):  # noqa: B008
        return PAGE.updates(ACTIONS.explain(index=index, **PAGE.asked(data, request, progress)))

    return run


def _event(action: str):
    """An event that is one call of ``ACTIONS.<action>`` with the page's inputs by name and the browser session."""

    def run(data: dict, request: gr.Request = None):
        return PAGE.updates(getattr(ACTIONS, action)(**PAGE.asked(data, request)))

    return run


on_redraw, on_query, on_figures, on_export, on_add = map(_event, ("redraw", "ask", "figures", "export", "add"))  # fmt: skip


def on_score(data: dict, request: gr.Request = None, progress=gr.Progress()):  # noqa: B008
    return PAGE.updates(ACTIONS.faithfulness(**PAGE.asked(data, request, progress)))


def on_end(request: gr.Request = None):
    ACTIONS.end(getattr(request, "session_hash", None))


# -- the public API: named endpoints over lens.ui.api --------------------------------------------------------------


def _answer(call, request: gr.Request | None = None, **ask):
    """``call``'s answer, its files as downloads; a user's mistake as its sentence."""
    clip, session = ask.pop("clip"), getattr(request, "session_hash", None)
    try:
        answer = call(SERVICE, clip["path"] if isinstance(clip, dict) else clip.path, **ask, session=session)
        return api.as_files(answer, lambda path: FileData(path=str(path)))
    except lens.USER_ERRORS as e:
        raise gr.Error(str(e), print_exception=False) from None


M, S = list[str] | None, float | None


def analyse(clip: FileData, models: list[str], methods: M = None, start_s: S = None, windows: str | None = None, request: gr.Request = None) -> dict:  # fmt: skip
    """Run models on a clip (methods default to attention and rollout; start_s, in seconds: one window from
    there, else evenly spaced windows over the clip, `windows` of them: default per model, a number or "all"):
    per model its top-5 (mean of its windows), the windows and frames it saw (clip times), its token grids and
    every explanation volume as a .npy file on its token grid; and report.html."""
    return _answer(api.analyse, request, clip=clip, models=models, methods=methods, start_s=start_s, windows=windows)  # fmt: skip


def explain_class(clip: FileData, model: str, klass: str, method: str = "grad_rollout", start_s: S = None,
                  request: gr.Request = None) -> dict:  # fmt: skip
    """Explain one class of one model (a label, "class N" or a number) with a method: /analyse's answer."""
    return _answer(api.explain_class, request, clip=clip, model=model, klass=klass, method=method, start_s=start_s)  # fmt: skip


def faithfulness(clip: FileData, models: list[str], methods: M = None, start_s: S = None, steps: int = 8, request: gr.Request = None) -> dict:  # fmt: skip
    """Deletion / insertion AUCs of every explanation volume and of the random and centre baselines, per model."""
    return _answer(api.faithfulness, request, clip=clip, models=models, methods=methods, start_s=start_s, steps=steps)  # fmt: skip


def export(clip: FileData, models: list[str], methods: M = None, start_s: S = None, request: gr.Request = None) -> FileData:  # fmt: skip
    """A zip of overlay videos (.mp4), volumes (.npz), report.json, report.html and timings.json."""
    return _answer(api.export, request, clip=clip, models=models, methods=methods, start_s=start_s)


def query(clip: FileData, models: list[str], t: float, x: float, y: float, stage: int | None = None, start_s: S = None, request: gr.Request = None) -> dict:  # fmt: skip
    """Where a clip point (t s; x, y px) looks in each model at a stage (from 1; default the last): its query
    token, attention row (.npy on the key grid) and frame × frame matrix (.npy)."""
    return _answer(api.query, request, clip=clip, models=models, t=t, x=x, y=y, stage=stage, start_s=start_s)


ENDPOINTS = (analyse, explain_class, faithfulness, export, query)  # the public API: /<name>, named parameters


# -- layout ------------------------------------------------------------------------------------------------------


def _request(p: Page) -> None:
    with gr.Column(scale=4, min_width=280):
        p.clip = gr.Video(sources=["upload", "webcam"], label="Clip", elem_id="clip")
        p.clip_note = gr.Markdown(visible=False, elem_id="clip-note")
        p.other = gr.UploadButton("Upload a GIF or another video file", file_types=[".gif", "video"],
                                  size="sm", elem_id="upload-other")  # fmt: skip
    with gr.Column(scale=5, min_width=300):
        p.model_set = gr.Radio(list(defaults.SET_NAMES), value=defaults.SYNTHMOTION, label="Model set", elem_id="model-set")  # fmt: skip
        p.models, p.notes = gr.Dropdown(**defaults.models_field(), elem_id="models"), gr.Markdown(elem_id="model-notes")  # fmt: skip
        p.suggested = gr.Textbox(visible=False, elem_id="suggested-set")  # the load's set  # fmt: skip
        p.run = gr.Button("Compare", variant="primary", elem_id="compare")
        _adding(p)
        with gr.Accordion("Options", open=False):
            p.start_s = gr.Textbox(label="Start time (seconds)", placeholder="empty = evenly spaced windows over the clip", elem_id="start")  # fmt: skip
            p.every = gr.Checkbox(False, label="Analyse every window (slower)", elem_id="every-window")
            p.methods = gr.CheckboxGroup(**defaults.also_field())
            p.int8 = gr.Checkbox(False, label=INT8, visible=DEVICE == "cpu", elem_id="int8")
    with gr.Column(scale=4, min_width=280, elem_id="examples"):
        if shipped := examples.available():
            p.examples = gr.Examples([[str(e.path), e.model_set] for e in shipped], inputs=[p.clip, p.model_set],
                                     example_labels=examples.labels_here(probe=False), cache_examples=False,
                                     label="Examples (each picks the model set it suits)").dataset  # fmt: skip
            with gr.Accordion("What the examples show", open=False):
                gr.Markdown("  \n".join(f"**{e.title}** — {e.shows}" for e in shipped))


def _adding(p: Page) -> None:
    with gr.Accordion("Add a model (your checkpoint or a Hub repo)", open=False, elem_id="add-model"):
        p.checkpoint = gr.File(label=f"Checkpoint file (up to {adding.MAX_MB} MB)", elem_id="checkpoint")
        p.repo = gr.Textbox(label="…or a Hugging Face repo id", placeholder="org/name or org/name@revision", elem_id="repo")  # fmt: skip
        p.class_names = gr.Textbox(label="Class names, one a line (for a file that names none)", lines=2, elem_id="class-names")  # fmt: skip
        p.add, p.added = gr.Button("Add", size="sm", elem_id="add"), gr.HTML(elem_id="added")


def _panel(p: Page, i: int) -> None:
    ctl = {"visible": False, "elem_classes": "mvt-ctl"}
    with gr.Column(visible=False, min_width=220, elem_classes="mvt-slot", elem_id=f"slot-{i}") as p[f"column_{i}"]:  # fmt: skip
        p[f"title_{i}"], p[f"picture_{i}"] = gr.Markdown(), gr.HTML(js_on_load=JS)
        # allow_custom_value: choices and value change together, so no value is ever checked against stale choices
        p[f"stage_{i}"] = gr.Dropdown(label="Stage (keys T×H×W)", elem_id=f"stage-{i}", allow_custom_value=True, **ctl)  # fmt: skip
        p[f"heads_{i}"] = gr.Dropdown(label="Heads", elem_id=f"heads-{i}", allow_custom_value=True, **ctl)  # fmt: skip
        p[f"klass_{i}"] = gr.Dropdown(label="Explain class", allow_custom_value=True, elem_id=f"class-{i}", **ctl)  # fmt: skip
        p[f"download_{i}"] = gr.DownloadButton("Overlay video (.mp4)", visible=False, size="sm")


def _side(p: Page, name: str, text: str) -> None:
    with gr.Column(visible=False, min_width=200, elem_classes="mvt-slot", elem_id=name) as column:
        p[f"{name}_column"], _ = column, gr.Markdown(text)
        p[name] = gr.HTML(js_on_load=JS)


def _results(p: Page) -> None:
    p.banner = gr.HTML(visible=False, elem_id="banner")
    with gr.Row(elem_id="notice-row"):
        p.notice = gr.HTML(visible=False, elem_id="notice")
        p.offer = gr.Button(visible=False, size="sm", variant="secondary", elem_id="offer", scale=0)
    p.status = gr.HTML("", elem_id="progress")  # the one place progress is drawn
    with gr.Row(elem_id="view-controls"):
        p.show = gr.Dropdown(lens.present.show_choices(lens.METHODS), value="faithful", label="Show", scale=3, min_width=260, elem_id="show")  # fmt: skip
        p.opacity = gr.Slider(0.1, 1.0, value=lens.Display().opacity, step=0.05, label="Heat opacity", scale=3)  # fmt: skip
        p.colormap = gr.Dropdown(list(COLORMAPS), value="inferno", label="Colours", scale=2)
        p.sinks = gr.Checkbox(False, label="Show sink keys", info=SINKS, scale=1, min_width=140, elem_id="sinks")  # fmt: skip
    with gr.Column(elem_id="results"):  # the timeline sticks to the top while this column's panels scroll
        p.timeline = gr.HTML(js_on_load=JS, elem_id="timeline")
        p.query = gr.Textbox(elem_id="query-point", elem_classes="mvt-hidden", container=False, show_label=False)  # fmt: skip
        with gr.Row(elem_id="panels", equal_height=False):
            _side(p, "clip_view", "### The clip\nEach model's crop outlined: click a point to ask it.")
            _side(p, "truth", "### Ground truth\nThe moving actor: where the motion evidence really is.")
            for i in range(N):
                _panel(p, i)


def _faithfulness_tab(p: Page) -> None:
    gr.Markdown(FAITHFULNESS)
    with gr.Row():
        p.steps = gr.Slider(4, 32, value=8, step=4, label="Steps per curve")
        p.score = gr.Button("Score the computed methods")
    p.faithfulness_note = gr.Markdown(visible=False, elem_id="faithfulness-note")
    p.update({f"faithfulness_{i}": gr.Plot(visible=False) for i in range(N)})
    p.faithfulness_table = gr.Dataframe(headers=FAITHFULNESS_TABLE, interactive=False)


def _tabs(p: Page) -> None:
    with gr.Tabs():
        with gr.Tab("All stages"):
            p.figures_note = gr.Markdown(visible=False)
            p.update({f"strip_{i}": gr.Image(visible=False, type="filepath", show_label=False, elem_id=f"strip-{i}") for i in range(N)})  # fmt: skip
        with gr.Tab("Token grids"):
            p.update({f"grid_{i}": gr.Plot(visible=False) for i in range(N)})
        with gr.Tab("Frame × frame"), gr.Row(elem_id="matrices"):
            p.update({f"matrix_{i}": gr.Plot(visible=False, show_label=False, min_width=240) for i in range(N)})  # fmt: skip
        with gr.Tab("Attention statistics"):
            p.stats = gr.Plot()
        with gr.Tab("Faithfulness"):
            _faithfulness_tab(p)
        with gr.Tab("Timings"):
            p.timings = gr.Dataframe(headers=["model", "step", "seconds"], interactive=False)
        with gr.Tab("Export"):
            p.build_zip = gr.Button("Build zip (overlays, volumes, report.json, report.html)", elem_id="build-zip")  # fmt: skip
            p.export_note = gr.Markdown(visible=False, elem_id="export-note")
            p.export = gr.File(label="Download", elem_id="export")
        with gr.Tab("Data"):
            p.summary = gr.JSON(label="What the panels show", elem_id="summary", open=True)


UI = {"api_visibility": "private"}  # the API is ENDPOINTS
QUIET = {**UI, "show_progress": "hidden"}


def _events(demo: gr.Blocks, p: Page) -> None:
    """Choosing a clip and models; the comparison and its displays (:func:`_result_events`); the tabs."""
    loaded = demo.load(on_load, outputs=p.outputs("models", "suggested", "examples"), concurrency_limit=None, **QUIET)  # fmt: skip
    loaded.then(None, js=defaults.take_suggested_js(), inputs=[p.suggested, p.model_set, p.models], outputs=[p.model_set], **QUIET)  # fmt: skip
    p.model_set.change(on_set, inputs=[p.model_set], outputs=p.outputs("models", "notes"), **QUIET)
    # any change of the models: Gradio 6 says "input" for a click in the list only, not for Enter, × or clear
    p.models.change(on_models, inputs=[p.models], outputs=p.outputs("model_set", "notes"), **QUIET)
    p.offer.click(None, js=f"() => '{defaults.KINETICS}'", outputs=[p.model_set], **QUIET)  # then on_set
    p.add.click(on_add, inputs={p.checkpoint, p.repo, p.class_names, p.models}, outputs=p.outputs("models", "model_set", "notes", "added"), show_progress_on=[p.added], **UI)  # fmt: skip
    controls = {p.state, p.show, p.opacity, p.colormap, p.sinks, *[p[f"{k}_{i}"] for i in range(N) for k in ("stage", "heads")]}  # fmt: skip
    _result_events(p, controls)
    for source in (p.clip, p.other):
        source.upload(on_upload, inputs=[source], outputs=p.outputs("clip", "upload", "banner", "clip_note"),
                      show_progress_on=[p.clip], **UI)  # fmt: skip
    p.build_zip.click(on_export, inputs=controls, outputs=p.outputs("export", "export_note"), **UI)
    tab = p.outputs("faithfulness", "faithfulness_table", "faithfulness_note")
    p.score.click(on_score, inputs={p.state, p.steps}, outputs=tab, show_progress_on=[p.faithfulness_table], **UI)  # fmt: skip
    demo.unload(on_end)


def _result_events(p: Page, controls: set) -> None:
    """Compare (its progress drawn once, in the progress line), the display controls (redrawn from the cache,
    quietly) and each panel's class to explain."""
    one_line = {"show_progress_on": [p.status], **UI}
    drawn = p.outputs("state", "show", "timeline", "panels", "summary", "banner", "clip_view", "matrices")
    asked = {p.clip, p.upload, p.models, p.methods, p.start_s, p.int8, p.every, *(controls - {p.state})}
    shown = p.outputs("status", "state", "banner", "notice", "show", "timeline", "truth", "clip_view", "panels", "summary", "timings",
                      "strips", "grids", "stats", "faithfulness", "faithfulness_table", "export", "models",
                      "notes", "figures_note", "faithfulness_note", "export_note", "matrices")  # fmt: skip
    # always_last: a click while the last Compare still streams its slower views runs once that one ends
    compare = p.run.click(on_compare, inputs=asked, outputs=shown, concurrency_limit=4, trigger_mode="always_last", **one_line)  # fmt: skip
    compare.then(on_figures, inputs=controls, outputs=p.outputs("strips", "grids", "stats", "figures_note", "matrices"), **QUIET)  # fmt: skip
    p.query.change(on_query, inputs={p.query, *controls}, outputs=drawn, **QUIET)
    for ctl in controls - {p.state, p.opacity}:
        ctl.input(on_redraw, inputs=controls, outputs=drawn, trigger_mode="always_last", **QUIET)
    p.opacity.release(on_redraw, inputs=controls, outputs=drawn, trigger_mode="always_last", **QUIET)
    for i in range(N):
        klass = p[f"klass_{i}"]
        klass.input(on_explain(i), inputs={klass, *controls}, outputs=drawn, concurrency_limit=4, **one_line)


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="mvt-lens", delete_cache=(3600, 3600)) as demo:
        PAGE.state, PAGE.upload = (gr.State(None, time_to_live=3 * 3600) for _ in range(2))
        gr.Markdown(INTRO, elem_id="intro")
        with gr.Row(equal_height=False, elem_id="inputs"):
            _request(PAGE)
        _results(PAGE)
        _tabs(PAGE)
        _events(demo, PAGE)
        for fn in ENDPOINTS:
            gr.api(fn, api_name=fn.__name__, concurrency_limit=4)
    return demo


demo = build_demo()
demo.queue(default_concurrency_limit=8, max_size=32)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    lens.startup.start(SERVICE)  # fetch and build the default models (warmed up, unless on ZeroGPU)
    lens.startup.exit_on_signals(SERVICE.close)  # SIGTERM/SIGINT clean up as a normal exit does
    demo.launch(**LAUNCH)
