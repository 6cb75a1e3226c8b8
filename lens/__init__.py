"""lens: the analysis service — clip → models → explanations → files — shared by the app and the CLI.

It sits above ``mvt`` (models, video) and ``viz`` (pure pictures) and holds everything that runs models or
writes files: the model and result caches, the explanation-method registry, captum attributions,
faithfulness scores, export (overlays, volumes, report.json, report.html), the default-model policy,
whole datasets (:mod:`lens.dataset`, local or on Ray; imported on demand), ``evaluate`` and the command line.

Public API::

    service = lens.Service(device="cpu")                   # caches + an output folder of its own
    analysis = service.analyse("clip.mp4", ["mvit_t.synth", "hvt_t.synth"], ["rollout", "saliency"])
    analysis.entries                                       # a ModelResult or a ModelError per model
    for index, entry in service.analyse_iter(clip, models):  # the same, streamed as each model finishes
        ...
    panels = service.render(analysis, lens.View("rollout")) # overlay mp4, frames image, strip, weights per model
    service.export(analysis)                               # zip: overlays, volumes, report.json/html
    service.faithfulness(analysis, steps=8)                # deletion / insertion vs random and centre
    lens.METHODS; lens.method_choices(); lens.default_models(); lens.model_choices(); lens.MAX_MODELS
    lens.defaults (model sets), lens.present (what each app panel shows), lens.timeline, lens.examples,
    lens.uploads (browser-playable previews), lens.startup (prefetch and warm-up at start)
"""

import mvt

from .core import clips
from .core.records import (
    Analysis,
    AnalysisRef,
    ClipInfo,
    LensError,
    ModelError,
    ModelResult,
    ResultKey,
    View,
    Volume,
    VolumeKey,
    head_labels,
)
from .explain import scoring
from .explain.methods import DEFAULT_METHODS, METHODS, Method, attribute
from .explain.methods import choices as method_choices
from .explain.methods import choices_of as method_choices_of
from .files.export import report_json, write_export
from .render import timeline
from .render.overlays import overlay_fps, stats_figure, token_grid_figures
from .service import jobs
from .service.service import MAX_MODELS, Panel, Service
from .ui import defaults, examples, present, startup, uploads
from .ui.defaults import default_models, model_choices, model_label

USER_ERRORS = (mvt.VideoError, mvt.WeightsError, LensError)
"""Errors whose message is written for the person who made the request (show it as is)."""


__all__ = [
    "DEFAULT_METHODS",
    "MAX_MODELS",
    "METHODS",
    "USER_ERRORS",
    "Analysis",
    "AnalysisRef",
    "ClipInfo",
    "LensError",
    "Method",
    "ModelError",
    "ModelResult",
    "Panel",
    "ResultKey",
    "Service",
    "View",
    "Volume",
    "VolumeKey",
    "attribute",
    "clips",
    "defaults",
    "examples",
    "jobs",
    "present",
    "startup",
    "timeline",
    "uploads",
    "default_models",
    "scoring",
    "head_labels",
    "method_choices",
    "method_choices_of",
    "model_choices",
    "model_label",
    "overlay_fps",
    "report_json",
    "stats_figure",
    "token_grid_figures",
    "write_export",
]
