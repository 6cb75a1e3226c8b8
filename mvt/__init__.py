"""mvt: hierarchical video transformers (MViT, MMViT, ViViT, HVT) that return their attention.

Public API::

    mvt.list_models()                         # ["mvit_v2_s.k400", ...]
    model = mvt.create_model("mvit_v2_s.k400", device="cpu")
    clip = mvt.read_clip(path, num_frames=16, stride=4, size=224)
    x = mvt.preprocess(clip, model.spec)
    out = model.forward_with_attention(x)     # ModelOutput
"""

from . import models  # noqa: F401  (registers every family with the zoo)
from .explain import attention_gradients, token_flow
from .outputs import AttentionMap, Footprint, ModelOutput, PoolOp, Segment, StageInfo
from .preprocess import normalise, preprocess, resize_and_crop
from .video import Clip, VideoError, VideoInfo, VideoLimits, probe, read_clip, read_windows, write_video
from .weights import WeightsError, WeightsSource
from .zoo import ModelSpec, create_model, get_spec, list_archs, list_models

__all__ = [
    "AttentionMap",
    "Clip",
    "Footprint",
    "ModelOutput",
    "ModelSpec",
    "PoolOp",
    "Segment",
    "StageInfo",
    "VideoError",
    "VideoInfo",
    "VideoLimits",
    "WeightsError",
    "WeightsSource",
    "attention_gradients",
    "token_flow",
    "create_model",
    "get_spec",
    "list_archs",
    "list_models",
    "normalise",
    "preprocess",
    "probe",
    "read_clip",
    "read_windows",
    "resize_and_crop",
    "write_video",
]
