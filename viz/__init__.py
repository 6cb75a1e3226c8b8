"""viz: turn ``mvt.ModelOutput`` records into pictures that are right.

Pure functions: arrays / tensors / records in, numpy arrays or plotly figures out. No model objects, no
files, no locks; nothing here imports gradio or matplotlib, and colours come from fixed lookup tables.
From ``mvt`` it reads only the records of ``mvt.outputs`` (running models is ``lens``'s job).

Public API::

    viz.attention_volume(amap, head="mean")      # (T, H, W) on the map's key grid
    viz.map_volume(output, amap)                 # (volume, footprint) ready for to_frames (HVT spans too)
    viz.stage_volume(output, stage)              # the same for the map that stands for a stage
    viz.rollout(output, mode="attention")        # (T, H, W) on the first token grid, through pooling
    viz.flow_volume(mvt.token_flow(model, x))    # (volume, footprint): conservative relevance of the tokens
    viz.to_frames(volume, (T, H, W), footprint)  # float32 (T, H, W) at the clip's resolution
    viz.overlay(frames, volume)                  # uint8 (T, H, W, 3)
    viz.attention_stats(output); viz.stats_figure({name: stats}); viz.token_grid_figure(output)
    viz.deletion_insertion(score, x, volume)     # faithfulness curves; score: batch of clips -> (B,)
    viz.query.Geometry(output).query(point, stage)  # a point's query token and its row, stage by stage
    viz.query.Geometry(output).frame_matrix(stage)  # time × time attention (rows sum to 1)
"""

from . import faithfulness, query
from .faithfulness import (
    Curves,
    center_bias,
    deletion_insertion,
    mask_iou,
    oracle,
    pointing_game,
    random_explanation,
)
from .figures import (
    curves_figure,
    frame_matrix_figure,
    stage_heatmaps_figure,
    stats_figure,
    token_grid_figure,
)
from .flow import flow_grid, flow_volume, spearman
from .geometry import pool_matrix, trace
from .maps import (
    attention_footprint,
    attention_volume,
    attention_volumes_by_view,
    map_volume,
    stage_map,
    stage_volume,
    stage_volumes,
    stages,
)
from .render import (
    COLORMAPS,
    NORMS,
    colorbar,
    colorize,
    colormap,
    normalize,
    overlay,
    strip,
    to_frames,
    value_range,
)
from .rollout import rollout, rollout_volume
from .stats import attention_stats

__all__ = [
    "COLORMAPS",
    "Curves",
    "attention_footprint",
    "attention_stats",
    "attention_volume",
    "attention_volumes_by_view",
    "center_bias",
    "colorize",
    "colormap",
    "curves_figure",
    "deletion_insertion",
    "faithfulness",
    "flow_grid",
    "frame_matrix_figure",
    "flow_volume",
    "map_volume",
    "mask_iou",
    "normalize",
    "NORMS",
    "colorbar",
    "value_range",
    "oracle",
    "overlay",
    "pointing_game",
    "pool_matrix",
    "query",
    "random_explanation",
    "rollout",
    "rollout_volume",
    "spearman",
    "stage_heatmaps_figure",
    "stage_map",
    "stage_volume",
    "stage_volumes",
    "stages",
    "stats_figure",
    "strip",
    "to_frames",
    "token_grid_figure",
    "trace",
]
