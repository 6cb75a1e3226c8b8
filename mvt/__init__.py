"""mvt: hierarchical video transformers (MViT, MMViT, ViViT, HVT) that return their attention.

Public API::

    mvt.list_models()                         # ["mvit_v2_s.k400", ...]
    model = mvt.create_model("mvit_v2_s.k400", device="cpu")
    clip = mvt.read_clip(path, num_frames=16, stride=4, size=224)
    x = mvt.preprocess(clip, model.spec)
    out = model.forward_with_attention(x)     # ModelOutput (capture=mvt.Capture.LAZY: fast path, maps on demand)
    mine = mvt.load_checkpoint("file:/runs/mvitv2_s.pyth")   # a user's checkpoint, recognised from the file
"""

from . import models  # noqa: F401  (registers every family with the zoo)
from .checkpoints import (  # (public checkpoints too)
    inspect_checkpoint,
    load_checkpoint,
    register_checkpoint_model,
)
from .explain import attention_gradients, token_flow
from .holds import UnheldOperation
from .layers import Capture
from .outputs import AttentionMap, Footprint, ModelOutput, PoolOp, Segment, StageInfo
from .preprocess import normalise, preprocess, resize_and_crop
from .video import Clip, VideoError, VideoInfo, VideoLimits, probe, read_clip, read_windows, write_video
from .weights import WeightsError, WeightsSource
from .zoo import ModelSpec, create_model, get_spec, list_archs, list_models

__version__ = "0.1.0"
"""The one place the version is written: ``pyproject.toml`` reads it (``version = {attr = ...}``) and reports
quote it, so a Space running from uploaded files (no ``pip install``, no ``pyproject.toml``) reports it too."""

__all__ = [
    "__version__",
    "AttentionMap",
    "Capture",
    "Clip",
    "Footprint",
    "ModelOutput",
    "ModelSpec",
    "PoolOp",
    "Segment",
    "StageInfo",
    "UnheldOperation",
    "VideoError",
    "VideoInfo",
    "VideoLimits",
    "WeightsError",
    "WeightsSource",
    "attention_gradients",
    "token_flow",
    "create_model",
    "get_spec",
    "inspect_checkpoint",
    "load_checkpoint",
    "register_checkpoint_model",
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
