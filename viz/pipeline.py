"""Clip → models → report: the one pipeline that ``app.py`` and ``python -m mvt explain`` both call.

This is the only module of ``viz`` that touches model objects (besides ``viz.attribution``): it decodes the
clip the way each model's spec asks, runs the model once with attention capture, and keeps everything
needed to re-render any stage / method / head later without running the model again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

import mvt
from mvt.outputs import Footprint, ModelOutput

Progress = Callable[[float, str], None]

METHODS: dict[str, str] = {
    "attention": "Attention (CLS row of a stage)",
    "rollout": "Attention rollout through pooling",
    "grad_rollout": "Gradient-weighted rollout",
    "saliency": "Saliency (captum)",
    "input_x_gradient": "Input × gradient (captum)",
    "integrated_gradients": "Integrated gradients (captum)",
    "gradcam": "Grad-CAM on a stage output (captum)",
    "occlusion": "Occlusion, tubelet windows (captum)",
    "feature_ablation": "Feature ablation over token cells (captum)",
}
"""Explanation methods by key, with the label the UI shows."""

CAPTUM_METHODS = (
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "gradcam",
    "occlusion",
    "feature_ablation",
)
DEFAULT_METHODS = ("attention", "rollout")


@dataclass
class ModelResult:
    """One model's analysis of one clip: predictions, the frames it saw, and volumes for every method."""

    name: str
    description: str
    trained: bool
    frames: np.ndarray
    """uint8 (T, S, S, 3): exactly the crop the model saw (before normalisation)."""
    times: np.ndarray
    fps: float
    top5: list[tuple[str, float]]
    output: ModelOutput
    volumes: dict[str, np.ndarray] = field(default_factory=dict)
    """Volumes on token grids, keyed ``"attention/<stage>"``, ``"rollout"``, ``"gradcam/<stage>"``, ..."""
    footprints: dict[str, Footprint | None] = field(default_factory=dict)
    """Footprint of each volume's grid on the model input (``None`` = already at input resolution)."""
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def num_stages(self) -> int:
        return len(self.output.stages)

    def volume_keys(self) -> list[str]:
        return list(self.volumes)


class ModelCache:
    """Models built once and shared read-only; a lock per model guards hook-based (captum) work."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self._models: dict[str, torch.nn.Module] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> torch.nn.Module:
        with self._lock:
            if name not in self._models:
                self._models[name] = mvt.create_model(name, device=self.device)
                self._locks[name] = threading.Lock()
            return self._models[name]

    def lock(self, name: str) -> threading.Lock:
        self.get(name)
        return self._locks[name]


class ResultCache:
    """A bounded LRU of :class:`ModelResult` keyed by (clip hash, model, options)."""

    def __init__(self, max_items: int = 16) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple, ModelResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> ModelResult | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple, value: ModelResult) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _center_crop_uint8(frames: np.ndarray, spec: mvt.ModelSpec) -> np.ndarray:
    """The uint8 frames the model sees: short side to ``resize_size`` then the centre crop (T, S, S, 3)."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    h, w = x.shape[-2:]
    if min(h, w) != spec.resize_size:
        scale = spec.resize_size / min(h, w)
        size = (max(spec.crop_size, round(h * scale)), max(spec.crop_size, round(w * scale)))
        x = torch.nn.functional.interpolate(
            x, size=size, mode="bilinear", align_corners=False, antialias=True
        )
    h, w = x.shape[-2:]
    top, left = (h - spec.crop_size) // 2, (w - spec.crop_size) // 2
    x = x[:, :, top : top + spec.crop_size, left : left + spec.crop_size]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _read_clip_cached(path: str, num_frames: int, stride: int, size: int, start_s: float | None) -> mvt.Clip:
    """``mvt.read_clip``, shared by models that sample a clip the same way (keyed by the file's identity)."""
    st = os.stat(path)
    return _read_clip_lru(path, st.st_size, st.st_mtime_ns, num_frames, stride, size, start_s)


@lru_cache(maxsize=8)
def _read_clip_lru(path, _size, _mtime, num_frames, stride, size, start_s) -> mvt.Clip:
    return mvt.read_clip(path, num_frames=num_frames, stride=stride, size=size, start_s=start_s)


def top_k(logits: torch.Tensor, labels: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    probs = logits.float().softmax(-1)[0]
    vals, idx = probs.topk(min(k, probs.numel()))
    return [
        (labels[i] if i < len(labels) else f"class {i}", float(v))
        for v, i in zip(vals.tolist(), idx.tolist())
    ]


def stage_volume(output: ModelOutput, stage: int, head: str | int = "mean") -> tuple[np.ndarray, Footprint]:
    """``(volume, footprint)`` of the map that stands for ``stage`` (its last self-attention map)."""
    from . import map_volume
    from .maps import stage_map

    return map_volume(output, stage_map(output, stage), head=head)


def run_model(
    path: str | Path,
    name: str,
    *,
    models: ModelCache,
    start_s: float | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    target: int | None = None,
    progress: Progress | None = None,
    captum_options: dict | None = None,
) -> ModelResult:
    """Decode ``path`` for model ``name``, run it with attention capture, and compute ``methods``."""
    from . import attribute, rollout_volume

    def report(frac: float, what: str) -> None:
        if progress is not None:
            progress(frac, f"{name}: {what}")

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    report(0.0, "loading model")
    model = models.get(name)
    spec = model.spec
    timings["load model"] = time.perf_counter() - t0

    report(0.1, "decoding")
    t = time.perf_counter()
    clip = _read_clip_cached(str(path), spec.num_frames, spec.frame_stride, spec.resize_size, start_s)
    frames = _center_crop_uint8(clip.frames, spec)
    x = mvt.preprocess(frames, spec, device=models.device)
    timings["decode"] = time.perf_counter() - t

    report(0.3, "forward with attention")
    t = time.perf_counter()
    with torch.inference_mode():
        output = model.forward_with_attention(x)
    timings["forward + capture"] = time.perf_counter() - t
    for key, value in output.extras.get("stage_seconds", {}).items():
        timings[f"  {key}"] = value

    result = ModelResult(
        name=name,
        description=spec.description,
        trained=spec.trained,
        frames=frames,
        times=np.asarray(clip.times, dtype=np.float64),
        fps=float(clip.fps) / max(1, spec.frame_stride or 1),
        top5=top_k(output.logits, _safe_labels(spec)),
        output=output,
        timings=timings,
        notes=list(clip.notes),
    )
    if target is None:
        target = int(output.logits[0].argmax())

    for s in sorted({m.stage for m in output.attentions}):
        key = f"attention/{s}"
        result.volumes[key], result.footprints[key] = stage_volume(output, s)

    todo = [m for m in methods if m != "attention"]
    for i, method in enumerate(todo):
        report(0.5 + 0.5 * i / max(1, len(todo)), METHODS.get(method, method))
        t = time.perf_counter()
        if method == "rollout":
            vol, fp = rollout_volume(output, mode="attention", view=_rollout_view(output))
            result.volumes["rollout"], result.footprints["rollout"] = vol, fp
        elif method == "grad_rollout":
            with models.lock(name):
                grad_out = mvt.attention_gradients(model, x, target)
            vol, fp = rollout_volume(grad_out, mode="grad", view=_rollout_view(grad_out))
            result.volumes["grad_rollout"], result.footprints["grad_rollout"] = vol, fp
        elif method in CAPTUM_METHODS:
            opts = dict(captum_options or {})
            with models.lock(name):
                vol = attribute(model, x, method, target=target, **opts)
            result.volumes[method] = np.asarray(vol, dtype=np.float32)
            result.footprints[method] = None
        else:
            raise ValueError(f"unknown explanation method {method!r}; known: {sorted(METHODS)}")
        timings[METHODS.get(method, method)] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    report(1.0, "done")
    return result


def _rollout_view(output: ModelOutput) -> int | str:
    """Multiview models (MMViT) roll out onto every view (painted as a density); others onto their grid."""
    return "all" if len(output.extras.get("view_embeds", {})) > 1 else 0


def _safe_labels(spec: mvt.ModelSpec) -> tuple[str, ...]:
    try:
        return spec.labels
    except (KeyError, ImportError):
        return tuple(f"class {i}" for i in range(spec.num_classes or 0))


def frame_volume(result: ModelResult, key: str) -> np.ndarray:
    """A result's volume ``key`` upsampled to its frames: float32 (T, S, S)."""
    from . import to_frames

    vol = result.volumes[key]
    shape = result.frames.shape[:3]
    if vol.shape == shape:
        return vol.astype(np.float32, copy=False)
    return to_frames(vol, shape, footprint=result.footprints.get(key))


def render_overlay(result: ModelResult, key: str, *, alpha: float = 0.5, norm: str = "clip") -> np.ndarray:
    """Heat overlay of volume ``key`` on the frames the model saw: uint8 (T, S, S, 3)."""
    from . import overlay

    return overlay(result.frames, frame_volume(result, key), alpha=alpha, norm=norm)


def stage_strip(result: ModelResult, *, columns: int = 8, alpha: float = 0.5) -> np.ndarray:
    """One image: a row per stage (attention), plus rollout if computed, ``columns`` frames each."""
    from . import strip

    keys = [k for k in result.volumes if k.startswith("attention/")]
    keys += [k for k in ("rollout", "grad_rollout") if k in result.volumes]
    rows = [render_overlay(result, k, alpha=alpha) for k in keys]
    return strip(rows, labels=[_key_label(k) for k in keys], max_frames=columns)


def _key_label(key: str) -> str:
    if key.startswith("attention/"):
        return f"stage {int(key.split('/')[1]) + 1}"
    return METHODS.get(key, key)


def export(results: Sequence[ModelResult], out_dir: str | Path, *, key: str | None = None) -> dict[str, Path]:
    """Write overlay mp4s, the (T,H,W) volumes (.npz) and report.json for ``results`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    report = {"models": []}
    for r in results:
        safe = r.name.replace("/", "_")
        keys = [key] if key and key in r.volumes else list(r.volumes)
        for k in keys:
            video = out_dir / f"{safe}__{k.replace('/', '_')}.mp4"
            mvt.write_video(render_overlay(r, k), video, fps=max(1.0, r.fps))
            written[f"{r.name}:{k}"] = video
        npz = out_dir / f"{safe}__volumes.npz"
        np.savez_compressed(npz, **{k.replace("/", "_"): v for k, v in r.volumes.items()})
        written[f"{r.name}:npz"] = npz
        report["models"].append(
            {
                "name": r.name,
                "weights": r.description,
                "trained": r.trained,
                "top5": [{"label": lab, "prob": p} for lab, p in r.top5],
                "stages": [
                    {"stage": s.stage, "grid": list(s.grid), "channels": s.channels, "tokens": s.tokens}
                    for s in r.output.stages
                ],
                "volumes": {k: list(v.shape) for k, v in r.volumes.items()},
                "timings_s": r.timings,
                "notes": r.notes,
            }
        )
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, indent=2))
    written["report"] = path
    return written
