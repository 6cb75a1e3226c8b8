"""lens: the analysis service — clip → models → explanations → files — shared by the app, its API and the CLI.

It sits above ``mvt`` (models, video) and ``viz`` (pure pictures) and holds everything that runs models or
writes files. One concern a package, each importing only those listed before it (tests/test_imports.py):

* ``core/``     the request and the records of its answer, caches, clips, storage, the thread owner (mvt, viz);
* ``explain/``  the methods registry, captum attributions, faithfulness scoring, sinks (+ core);
* ``render/``   how a result is displayed: overlays, the synced timeline, captions, panels (+ explain);
* ``files/``    documents: the HTML page shell, report.html, the export (+ render);
* ``service/``  the one run path, jobs and the :class:`Service` (+ files);
* ``dataset/``  whole datasets, local or on Ray, their summary and ``evaluate`` (+ service);
* ``ui/``       what the app shows (screens), its API, the default models, examples, uploads, start-up
  (+ dataset);
* ``cli``       the command line (anything); ``selftest``, its bf16-vs-fp32 check of a device (anything).

Public API::

    service = lens.Service(device="cpu")                   # caches, threads and an output folder of its own
    analysis = service.analyse("clip.mp4", ["mvit_t.synth", "hvt_t.synth"], ["rollout", "saliency"])
    analysis.entries                                       # a ModelResult or a ModelError per model
    for index, entry in service.analyse_iter(clip, models):  # the same, streamed as each model finishes
        ...
    panels = service.render(analysis, lens.Display("rollout"))  # overlay mp4, frames image, strip, weights
    service.export(analysis)                               # zip: overlays, volumes, report.json/html
    service.faithfulness(analysis, steps=8)                # deletion / insertion vs random and centre
    service.close()                                        # threads stopped, files deleted
    lens.METHODS; lens.method_choices(); lens.default_models(); lens.model_choices(); lens.MAX_MODELS
"""

from .core import clips
from .core.records import Analysis, AnalysisRef, ModelError, ModelResult, Volume, VolumeKey
from .core.request import MAX_MODELS, USER_ERRORS, ClipInfo, LensError, Request, ResultKey
from .explain import scoring
from .explain.methods import DEFAULT_METHODS, METHODS, Method, attribute
from .explain.methods import choices as method_choices
from .explain.methods import choices_of as method_choices_of
from .files.export import report_json, write_export
from .render import timeline
from .render.display import Display, head_labels
from .render.overlays import overlay_fps, stats_figure, token_grid_figures
from .render.panels import Panel
from .service import jobs
from .service.service import Service
from .ui import defaults, examples, present, startup, uploads
from .ui.defaults import default_models, model_choices, model_label

__all__ = [
    "DEFAULT_METHODS",
    "MAX_MODELS",
    "METHODS",
    "USER_ERRORS",
    "Analysis",
    "AnalysisRef",
    "ClipInfo",
    "Display",
    "LensError",
    "Method",
    "ModelError",
    "ModelResult",
    "Panel",
    "Request",
    "ResultKey",
    "Service",
    "Volume",
    "VolumeKey",
    "attribute",
    "clips",
    "default_models",
    "defaults",
    "examples",
    "head_labels",
    "jobs",
    "method_choices",
    "method_choices_of",
    "model_choices",
    "model_label",
    "overlay_fps",
    "present",
    "report_json",
    "scoring",
    "startup",
    "stats_figure",
    "timeline",
    "token_grid_figures",
    "uploads",
    "write_export",
]
