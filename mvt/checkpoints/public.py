"""The seed papers' public checkpoints (:data:`mvt.zoo.PUBLIC_CHECKPOINTS`) in the registry, by name.

Each architecture is the PySlowFast config its file was trained with, written here as that YAML's ``MVIT``
section (:data:`VARIANTS`) and built by the same :func:`~.pyslowfast.config_from_cfg` that reads users' files.
A downloaded file's own ``cfg`` must build the same architecture (:func:`~.pyslowfast.convert_expecting`), so a
release that changed under its URL fails loudly instead of loading into the wrong model.
"""

from __future__ import annotations

from functools import partial

from .. import zoo
from ..labels import LABEL_SETS, SIZES
from ..models.mvit import MViT, MViTConfig
from ..weights import WHOLE, WeightsSource
from ..zoo import ArchEntry, ModelSpec, PublicCheckpoint
from .pyslowfast import config_from_cfg, convert_expecting


def _q_strides(depth: int, starts: tuple[int, ...], every_block: bool) -> list[list[int]]:
    """``MVIT.POOL_Q_STRIDE`` as the YAMLs list it: (1, 2, 2) at each stage start, (1, 1, 1) elsewhere when
    every block pools its queries (MViTv2)."""
    blocks = range(depth) if every_block else starts
    return [[i, 1, 2, 2] if i in starts else [i, 1, 1, 1] for i in blocks]


def _mvit(depth: int, dim: int, heads: int, starts: tuple[int, ...], *, v2: bool, **extra) -> dict:
    muls = [[i, 2.0] for i in starts]
    section = {
        "DEPTH": depth, "EMBED_DIM": dim, "NUM_HEADS": heads, "PATCH_KERNEL": [3, 7, 7],
        "PATCH_STRIDE": [2, 4, 4], "PATCH_PADDING": [1, 3, 3], "MLP_RATIO": 4.0, "QKV_BIAS": True,
        "MODE": "conv", "CLS_EMBED_ON": True, "DIM_MUL": muls, "HEAD_MUL": muls,
        "POOL_KV_STRIDE_ADAPTIVE": [1, 8, 8], "POOL_Q_STRIDE": _q_strides(depth, starts, v2),
    }  # fmt: skip
    if v2:
        section.update(
            USE_ABS_POS=False, REL_POS_SPATIAL=True, REL_POS_TEMPORAL=True, RESIDUAL_POOLING=True,
            DIM_MUL_IN_ATT=True, POOL_KVQ_KERNEL=[3, 3, 3],
        )  # fmt: skip
    else:
        section.update(SEP_POS_EMBED=True)
    section.update(extra)
    return section


VARIANTS: dict[str, dict] = {
    # configs/Kinetics/MVIT_B_32x3_CONV.yaml: DEPTH is written twice (16, then 24; YAML keeps the last) and
    # POOL_KVQ_KERNEL is unset, so every pooling kernel is its stride + 1 (k/v 1×9×9 in stage 0).
    "mvit_v1_b_32x3": {
        "MVIT": _mvit(24, 96, 1, (2, 5, 21), v2=False, DROPPATH_RATE=0.3),
        "DATA": {"NUM_FRAMES": 32, "TRAIN_CROP_SIZE": 224},
    },
    # configs/SSv2/MVITv2_S_16x4.yaml (= Kinetics/MVITv2_S_16x4.yaml but for the data and drop path)
    "mvit_v2_s": {"MVIT": _mvit(16, 96, 1, (1, 3, 14), v2=True), "DATA": {"NUM_FRAMES": 16}},
    # configs/Kinetics/MVITv2_B_32x3.yaml, configs/SSv2/MVITv2_B_32x3.yaml
    "mvit_v2_b_32x3": {"MVIT": _mvit(24, 96, 1, (2, 5, 21), v2=True), "DATA": {"NUM_FRAMES": 32}},
    # configs/Kinetics/MVITv2_L_40x3_test.yaml, configs/SSv2/MVITv2_L_40x3.yaml (its second
    # POOL_KV_STRIDE_ADAPTIVE, [1, 8, 8], is the one YAML keeps)
    "mvit_v2_l_40x3": {
        "MVIT": _mvit(48, 144, 2, (2, 8, 44), v2=True),
        "DATA": {"NUM_FRAMES": 40, "TRAIN_CROP_SIZE": 312},
    },
}
"""Architecture name → the PySlowFast config sections that build it (``MODEL.ARCH`` ``mvit`` implied)."""


def variant_config(arch: str) -> MViTConfig:
    """The :class:`MViTConfig` of a public architecture."""
    cfg = {"MODEL": {"ARCH": "mvit", "MODEL_NAME": "MViT"}, **VARIANTS[arch]}
    return config_from_cfg(cfg)[0]


def _build(config: MViTConfig, num_classes: int = 400) -> MViT:
    return MViT(config, num_classes=num_classes)


def _spec(entry: PublicCheckpoint, config: MViTConfig) -> ModelSpec:
    arch, tag = entry.name.split(".", 1)
    mean, std = entry.norm
    dataset = LABEL_SETS[entry.label_set]
    return ModelSpec(
        name=entry.name,
        arch=arch,
        tag=tag,
        num_frames=entry.num_frames,
        frame_stride=entry.frame_stride,  # type: ignore[arg-type]
        crop_size=entry.crop_size,
        resize_size=entry.resize_size,
        mean=mean,
        std=std,
        label_set=entry.label_set,
        num_classes=SIZES[entry.label_set],
        weights=WeightsSource(kind="url", url=entry.url, state_key=WHOLE),
        trained=True,
        description=f"{dataset}, {entry.release.split(' (')[0]} ({entry.top1:.1f} top-1)",
        convert=partial(convert_expecting, expected=config),
    )


def register_public() -> list[str]:
    """Register every :data:`mvt.zoo.PUBLIC_CHECKPOINTS` entry (and any architecture it needs); returns the
    names registered."""
    names = []
    for entry in zoo.PUBLIC_CHECKPOINTS:
        arch = entry.name.split(".", 1)[0]
        config = variant_config(arch)
        if arch not in zoo.list_archs():
            spec = _spec(entry, config)
            untrained = ModelSpec(name=f"{arch}.untrained", arch=arch, tag="untrained", **_inputs(spec))
            zoo.register_arch(ArchEntry(arch=arch, family="mvit", builder=partial(_build, config)), untrained)
        zoo.register_pretrained(_spec(entry, config))
        names.append(entry.name)
    return names


def _inputs(spec: ModelSpec) -> dict:
    keep = ("num_frames", "frame_stride", "crop_size", "resize_size", "mean", "std")
    return {k: getattr(spec, k) for k in keep} | {"label_set": "kinetics400"}
