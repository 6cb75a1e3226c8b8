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

import lens  # noqa: E402
from lens.ui import api, defaults, examples, screens  # noqa: E402
from lens.ui.actions import Actions  # noqa: E402
from lens.ui.screens import Screen  # noqa: E402
from mvt.device import gpu, select_device, zero_gpu  # noqa: E402
from viz import COLORMAPS  # noqa: E402

UI = Path(__file__).resolve().parent / "assets" / "ui"
N = lens.MAX_MODELS
DEVICE = select_device()  # on ZeroGPU: after `import spaces`, which is what makes CUDA appear
if DEVICE == "cpu":
    torch.set_num_threads(max(1, os.cpu_count() or 1))

SERVICE = lens.Service(DEVICE, max_results=24, gpu=gpu(duration=120) if zero_gpu() else None,  # ZeroGPU: a worker
                       compute_slots=1 if DEVICE == "cpu" else 2)  # fmt: skip
OUT_DIR = SERVICE.out_dir
"""Every file the app serves is written here by the service — never a user-supplied path."""
atexit.register(SERVICE.close)
ACTIONS = Actions(SERVICE, lambda path: f"gradio_api/file={path}", N)
JS = (UI / "timeline.js").read_text()
LAUNCH = {"css": (UI / "app.css").read_text(), "js": (UI / "clip.js").read_text(), "max_file_size": "200mb",
          "allowed_paths": [str(OUT_DIR)], "show_error": False}  # fmt: skip
"""What ``demo.launch`` needs besides host and port (styles, upload limit, the one folder files are served from)."""


# -- the page: each component under the name its part has in lens.ui.screens ------------------------------------------


class Page(dict):
    """The page's components by part name (:func:`lens.ui.screens.parts`): ``page.banner``, ``page["title_2"]``."""

    __getattr__, __setattr__ = dict.__getitem__, dict.__setitem__

    def outputs(self, *fields: str) -> list:
        return [self[n] for f in fields for n in screens.part_names(f, N)]

    def updates(self, screen: Screen) -> dict:
        """``screen``'s changes as ``{component: update}``."""
        html = lambda sprite: lens.timeline.frames_html(sprite, ACTIONS.url)  # noqa: E731
        parts = screens.parts(screen, html)
        return {self[n]: kw["value"] if list(kw) == ["value"] else gr.update(**kw) for n, kw in parts.items()}

    def asked(self, data: dict, request: gr.Request | None, progress=None) -> dict:
        """What an action is asked: the inputs by name, the browser session (and its progress bar)."""
        names = {c: n for n, c in self.items()}
        extra = {} if progress is None else {"progress": lambda frac, what: progress(frac, desc=what)}
        session = getattr(request, "session_hash", None)
        return {**screens.asked({names[c]: v for c, v in data.items()}), "session": session, **extra}


PAGE = Page()


def _stream(steps):
    """An action's screens onto the page, a step each; a failure is raised once its step is shown."""
    for screen in steps:
        yield _one(screen, raises=False)
        if screen.error:
            raise gr.Error(screen.error, print_exception=False)


def _one(screen: Screen, *, raises: bool = True) -> dict:
    if screen.error and raises:
        raise gr.Error(screen.error, print_exception=False)
    if screen.info:
        gr.Info(screen.info)
    return PAGE.updates(screen)


# -- events: each one call of an action ---------------------------------------------------------------------------


def on_load():
    return _one(ACTIONS.load())


def on_set(name: str):
    return _one(ACTIONS.pick_set(name))


def on_models(names: list[str]):
    return _one(ACTIONS.pick_models(names))


def on_upload(path: str | None, request: gr.Request = None):
    return _one(ACTIONS.upload(path, getattr(request, "session_hash", None)))


def on_compare(data: dict, request: gr.Request = None, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
    yield from _stream(ACTIONS.compare(**PAGE.asked(data, request, progress)))


def on_redraw(data: dict, request: gr.Request = None):
    return _one(ACTIONS.redraw(**PAGE.asked(data, request)))


def on_explain(index: int):
    def run(data: dict, request: gr.Request = None, progress=gr.Progress()):  # noqa: B008
        return _one(ACTIONS.explain(index=index, **PAGE.asked(data, request, progress)))

    return run


def on_query(data: dict, request: gr.Request = None):
    return _one(ACTIONS.ask(**PAGE.asked(data, request)))


def on_figures(data: dict):
    return _one(ACTIONS.figures(**PAGE.asked(data, None)))


def on_export(data: dict, request: gr.Request = None):
    return _one(ACTIONS.export(**PAGE.asked(data, request)))


def on_score(data: dict, progress=gr.Progress()):  # noqa: B008
    return _one(ACTIONS.faithfulness(**PAGE.asked(data, None, progress)))


def on_end(request: gr.Request = None):
    SERVICE.end_session(getattr(request, "session_hash", None))


# -- the public API: named endpoints over lens.ui.api --------------------------------------------------------------


def _answer(call, request: gr.Request | None = None, **ask):
    """``call``'s answer, its files as downloads; a user's mistake as its sentence."""

    def files(v):
        if isinstance(v, (list, dict)):
            return [files(x) for x in v] if isinstance(v, list) else {k: files(x) for k, x in v.items()}
        return FileData(path=str(v)) if isinstance(v, Path) else v

    clip, session = ask.pop("clip"), getattr(request, "session_hash", None)
    try:
        return files(
            call(SERVICE, clip["path"] if isinstance(clip, dict) else clip.path, **ask, session=session)
        )
    except lens.USER_ERRORS as e:
        raise gr.Error(str(e), print_exception=False) from None


M = list[str] | None
S = float | None


def analyse(clip: FileData, models: list[str], methods: M = None, start_s: S = None, request: gr.Request = None) -> dict:  # fmt: skip
    """Run models on a clip (methods default to attention and rollout; start_s, in seconds, to each model's
    window): per model its top-5, the frames it saw (clip times), its token grids and every explanation
    volume as a .npy file on its token grid; and report.html."""
    return _answer(api.analyse, request, clip=clip, models=models, methods=methods, start_s=start_s)


def explain_class(clip: FileData, model: str, klass: str, method: str = "grad_rollout", start_s: S = None,
                  request: gr.Request = None) -> dict:  # fmt: skip
    """Explain one class of one model (a label, "class N" or a number) with a method: /analyse's answer."""
    return _answer(api.explain_class, request, clip=clip, model=model, klass=klass, method=method, start_s=start_s)  # fmt: skip


def faithfulness(
    clip: FileData, models: list[str], methods: M = None, start_s: S = None, steps: int = 8
) -> dict:
    """Deletion / insertion AUCs of every explanation volume and of the random and centre baselines, per model."""
    return _answer(api.faithfulness, clip=clip, models=models, methods=methods, start_s=start_s, steps=steps)


def export(clip: FileData, models: list[str], methods: M = None, start_s: S = None, request: gr.Request = None) -> FileData:  # fmt: skip
    """A zip of overlay videos (.mp4), volumes (.npz), report.json, report.html and timings.json."""
    return _answer(api.export, request, clip=clip, models=models, methods=methods, start_s=start_s)


def query(clip: FileData, models: list[str], t: float, x: float, y: float, stage: int | None = None, start_s: S = None, request: gr.Request = None) -> dict:  # fmt: skip
    """Where a clip point (t s; x, y px) looks in each model at a stage (from 1; default the last): its query
    token, attention row (.npy on the key grid) and frame × frame matrix (.npy)."""
    return _answer(api.query, request, clip=clip, models=models, t=t, x=x, y=y, stage=stage, start_s=start_s)


ENDPOINTS = (analyse, explain_class, faithfulness, export, query)
"""The public API: each is ``/<its name>``, with its parameters' names."""


# -- layout ------------------------------------------------------------------------------------------------------

INTRO = """# mvt-lens
Where do video transformers look? Compare MViT, MMViT, ViViT and HVT on one clip, frame by frame."""
FAITHFULNESS = """Which explanation is right? Deletion removes the most relevant token cells first (lower area = more
faithful); insertion adds them to a clip imputed from nothing (higher = more faithful). `random` and `center`
are baselines every method should beat."""
FAITHFULNESS_TABLE = ["model", "method", "deletion AUC (lower better)", "insertion AUC (higher better)"]
INT8 = "int8 linear layers: faster on a CPU, approximate (not the models as trained; no gradient methods)"
MODELS = {"choices": defaults.model_choices(), "value": defaults.set_models(defaults.SYNTHMOTION),
          "multiselect": True, "max_choices": N, "allow_custom_value": True, "label": f"Models (up to {N})",
          "info": "Each says what its weights are: shipped, cached, or what it downloads."}  # fmt: skip
ALSO = {"choices": lens.method_choices(("rollout", "gradient", "captum")), "value": ["rollout"],
        "label": "Also compute (captum methods take longer)"}  # fmt: skip


def _request(p: Page) -> None:
    with gr.Column(scale=4, min_width=280):
        p.clip = gr.Video(sources=["upload", "webcam"], label="Clip", elem_id="clip")
        p.other = gr.UploadButton("Upload a GIF or another video file", file_types=[".gif", "video"],
                                  size="sm", elem_id="upload-other")  # fmt: skip
    with gr.Column(scale=5, min_width=300):
        p.model_set = gr.Radio(list(defaults.SET_NAMES), value=defaults.SYNTHMOTION, label="Model set", elem_id="model-set")  # fmt: skip
        p.models, p.notes = gr.Dropdown(**MODELS, elem_id="models"), gr.Markdown(elem_id="model-notes")
        p.run = gr.Button("Compare", variant="primary", elem_id="compare")
        with gr.Accordion("Options", open=False):
            p.start_s = gr.Textbox(label="Start time (seconds)", placeholder="empty = the whole clip", elem_id="start")  # fmt: skip
            p.methods = gr.CheckboxGroup(**ALSO)
            p.int8 = gr.Checkbox(False, label=INT8, visible=DEVICE == "cpu", elem_id="int8")
    with gr.Column(scale=4, min_width=280, elem_id="examples"):
        if shipped := examples.available():
            gr.Examples([[str(e.path), e.model_set] for e in shipped], inputs=[p.clip, p.model_set],
                        example_labels=[e.label for e in shipped], cache_examples=False,
                        label="Examples (each picks the model set it suits)")  # fmt: skip
            with gr.Accordion("What the examples show", open=False):
                gr.Markdown("  \n".join(f"**{e.title}** — {e.shows}" for e in shipped))


def _panel(p: Page, i: int) -> None:
    ctl = {"visible": False, "elem_classes": "mvt-ctl"}
    with gr.Column(visible=False, min_width=220, elem_classes="mvt-slot", elem_id=f"slot-{i}") as p[f"column_{i}"]:  # fmt: skip
        p[f"title_{i}"], p[f"picture_{i}"] = gr.Markdown(), gr.HTML(js_on_load=JS)
        p[f"stage_{i}"] = gr.Dropdown(label="Stage (keys T×H×W)", elem_id=f"stage-{i}", **ctl)
        p[f"heads_{i}"] = gr.Dropdown(label="Heads", elem_id=f"heads-{i}", **ctl)
        p[f"klass_{i}"] = gr.Dropdown(label="Explain class", allow_custom_value=True, elem_id=f"class-{i}", **ctl)  # fmt: skip
        p[f"download_{i}"] = gr.DownloadButton("Overlay video (.mp4)", visible=False, size="sm")


def _side(p: Page, name: str, text: str) -> None:
    with gr.Column(visible=False, min_width=200, elem_classes="mvt-slot", elem_id=name) as column:
        p[f"{name}_column"], _ = column, gr.Markdown(text)
        p[name] = gr.HTML(js_on_load=JS)


def _results(p: Page) -> None:
    p.banner = gr.HTML(visible=False, elem_id="banner")
    with gr.Row(elem_id="view-controls"):
        p.show = gr.Dropdown(lens.method_choices(), value="attention", label="Show", scale=3, min_width=260)
        p.opacity = gr.Slider(0.1, 1.0, value=lens.Display().opacity, step=0.05, label="Heat opacity", scale=3)  # fmt: skip
        p.colormap = gr.Dropdown(list(COLORMAPS), value="inferno", label="Colours", scale=2)
    with gr.Column(elem_id="results"):  # the timeline sticks to the top while this column's panels scroll
        p.timeline = gr.HTML(js_on_load=JS, elem_id="timeline")
        p.query = gr.Textbox(elem_id="query-point", elem_classes="mvt-hidden", container=False, show_label=False)  # fmt: skip
        with gr.Row(elem_id="panels", equal_height=False):
            _side(p, "clip_view", "### The clip\nEach model's crop outlined: click a point to ask it.")
            _side(p, "truth", "### Ground truth\nThe moving actor: where the motion evidence really is.")
            for i in range(N):
                _panel(p, i)


def _tabs(p: Page) -> None:
    with gr.Tabs():
        with gr.Tab("All stages"):
            p.update({f"strip_{i}": gr.Image(visible=False, type="filepath", show_label=False, elem_id=f"strip-{i}") for i in range(N)})  # fmt: skip
        with gr.Tab("Token grids"):
            p.update({f"grid_{i}": gr.Plot(visible=False) for i in range(N)})
        with gr.Tab("Frame × frame"), gr.Row(elem_id="matrices"):
            p.update({f"matrix_{i}": gr.Plot(visible=False, show_label=False, min_width=240) for i in range(N)})  # fmt: skip
        with gr.Tab("Attention statistics"):
            p.stats = gr.Plot()
        with gr.Tab("Faithfulness"):
            gr.Markdown(FAITHFULNESS)
            with gr.Row():
                p.steps = gr.Slider(4, 32, value=8, step=4, label="Steps per curve")
                p.score = gr.Button("Score the computed methods")
            p.update({f"faithfulness_{i}": gr.Plot(visible=False) for i in range(N)})
            p.faithfulness_table = gr.Dataframe(headers=FAITHFULNESS_TABLE, interactive=False)
        with gr.Tab("Timings"):
            p.timings = gr.Dataframe(headers=["model", "step", "seconds"], interactive=False)
        with gr.Tab("Export"):
            p.build_zip = gr.Button("Build zip (overlays, volumes, report.json, report.html)")
            p.export = gr.File(label="Download")
        with gr.Tab("Data"):
            p.summary = gr.JSON(label="What the panels show")


def _events(demo: gr.Blocks, p: Page) -> None:
    ui = {"api_visibility": "private"}  # the API is ENDPOINTS
    per_panel = [p[f"{k}_{i}"] for i in range(N) for k in ("stage", "heads")]
    display = {p.show, p.opacity, p.colormap, *per_panel}
    controls, drawn = {p.state, *display}, p.outputs("state", "timeline", "panels", "clip_view", "matrices")
    demo.load(on_load, outputs=p.outputs("models", "model_set", "notes"), concurrency_limit=None, **ui)
    p.model_set.change(on_set, inputs=[p.model_set], outputs=p.outputs("models", "notes"), **ui)
    p.models.input(on_models, inputs=[p.models], outputs=p.outputs("model_set", "notes"), **ui)
    for source in (p.clip, p.other):
        source.upload(on_upload, inputs=[source], outputs=p.outputs("clip", "upload", "banner"), **ui)
    asked = {p.clip, p.upload, p.models, p.methods, p.start_s, p.int8, *display}
    shown = p.outputs("state", "banner", "show", "timeline", "truth", "clip_view", "panels", "summary", "timings")  # fmt: skip
    p.run.click(on_compare, inputs=asked, outputs=shown, concurrency_limit=4, **ui).then(
        on_figures, inputs=controls, outputs=p.outputs("strips", "grids", "stats", "matrices"), **ui
    )
    p.query.change(on_query, inputs={p.query, *controls}, outputs=drawn, **ui)
    for ctl in (p.show, p.colormap, *per_panel):
        ctl.input(on_redraw, inputs=controls, outputs=drawn, **ui)
    p.opacity.release(on_redraw, inputs=controls, outputs=drawn, **ui)
    for i in range(N):
        klass = p[f"klass_{i}"]
        klass.input(on_explain(i), inputs={klass, *controls}, outputs=drawn, concurrency_limit=4, **ui)
    p.build_zip.click(on_export, inputs=controls, outputs=p.outputs("export"), **ui)
    p.score.click(on_score, inputs={p.state, p.steps}, outputs=p.outputs("faithfulness", "faithfulness_table"), **ui)  # fmt: skip
    demo.unload(on_end)


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
    lens.startup.start(SERVICE)  # prefetch the default weights and warm the models up, in the background
    demo.launch(**LAUNCH)
