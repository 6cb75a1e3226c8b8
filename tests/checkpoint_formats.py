"""Checkpoint files in other projects' real formats, written from a reference model's random weights.

Each writer starts from a model of an installed reference implementation (torchvision's MViT, transformers'
ViViT) or from mvt's own HVT, and writes its weights the way that project saves them, under that project's
key names (taken from its source: PySlowFast ``video_model_builder.MViT`` / ``attention.py`` and
``utils/checkpoint.py``; MMAction2 ``backbones/mvit.py``, ``heads/mvit_head.py`` and mmengine's checkpoint
layout; torchvision ``references/video_classification/train.py``; transformers ``save_pretrained``). A loader
that reads such a file back must give the reference model's logits.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torchvision.models.video.mvit as tvm
import yaml

from mvt.models.mvit import MViTConfig

# -- torchvision's MViT as the reference -------------------------------------------------------------------


def torchvision_mvit(cfg: MViTConfig, num_classes: int, seed: int = 0) -> tvm.MViT:
    """torchvision's MViT with ``cfg``'s blocks (random weights, eval mode): the reference for MViT files."""
    settings = []
    for bc in cfg.block_configs():
        q, kv = bc.q_pool, bc.kv_pool
        settings.append(
            tvm.MSBlockConfig(
                num_heads=bc.heads,
                input_channels=bc.dim_in,
                output_channels=bc.dim_out,
                kernel_q=list(q.kernel) if q else [1, 1, 1],
                kernel_kv=list(kv.kernel) if kv else [1, 1, 1],
                stride_q=list(q.stride) if q else [1, 1, 1],
                stride_kv=list(kv.stride) if kv else [1, 1, 1],
            )
        )
    torch.manual_seed(seed)
    model = tvm.MViT(
        spatial_size=(cfg.image_size, cfg.image_size),
        temporal_size=cfg.num_frames,
        block_setting=settings,
        residual_pool=cfg.residual_pool,
        residual_with_cls_embed=False,
        rel_pos_embed=cfg.rel_pos,
        proj_after_attn=cfg.dim_mul_in_att,
        num_classes=num_classes,
        patch_embed_kernel=cfg.patch_kernel,
        patch_embed_stride=cfg.patch_stride,
        patch_embed_padding=cfg.patch_padding,
    )
    with torch.no_grad():  # LayerNorms away from (1, 0) and relative tables away from 0, so a mix-up shows
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "0.weight")) and p.ndim == 1:
                p.normal_(1.0, 0.2)
            elif p.ndim == 1 or "rel_pos" in name:
                p.normal_(0.0, 0.2)
    return model.eval()


# -- PySlowFast --------------------------------------------------------------------------------------------

_TO_PYSLOWFAST = (
    ("conv_proj.", "patch_embed.proj."),
    ("attn.project.0.", "attn.proj."),
    ("mlp.0.", "mlp.fc1."),
    ("mlp.3.", "mlp.fc2."),
    (".project.", ".proj."),
    ("head.1.", "head.projection."),
)


def to_pyslowfast(
    tv_state: dict[str, torch.Tensor], *, separate_qkv: bool = False
) -> dict[str, torch.Tensor]:
    """torchvision MViT keys → PySlowFast ``MViT`` keys, with PySlowFast's leading batch axes."""
    out = {}
    for key, value in tv_state.items():
        if key.startswith("pos_encoding."):
            which = key.split(".")[1]
            new = {
                "class_token": "cls_token",
                "class_pos": "pos_embed_class",
                "spatial_pos": "pos_embed_spatial",
                "temporal_pos": "pos_embed_temporal",
            }[which]
            out[new] = value.reshape(1, 1, -1) if value.ndim == 1 else value[None]
            continue
        new = key
        for a, b in _TO_PYSLOWFAST:
            new = new.replace(a, b)
        for kind in ("q", "k", "v"):
            new = new.replace(f"attn.pool_{kind}.pool.", f"attn.pool_{kind}.")
            new = new.replace(f"attn.pool_{kind}.norm_act.0.", f"attn.norm_{kind}.")
        if separate_qkv and ".attn.qkv." in new:
            for kind, part in zip("qkv", value.chunk(3, dim=0)):
                out[new.replace(".attn.qkv.", f".attn.{kind}.")] = part.clone()
            continue
        out[new] = value
    return out


def pyslowfast_cfg(mvit: dict, data: dict, classes: int, dataset: str = "kinetics") -> str:
    """A ``cfg.dump()``-like YAML: the sections PySlowFast writes (a subset of their keys) and unrelated ones."""
    cfg = {
        "TRAIN": {"ENABLE": True, "DATASET": dataset, "BATCH_SIZE": 16, "CHECKPOINT_PERIOD": 10},
        "TEST": {"ENABLE": True, "DATASET": dataset, "NUM_SPATIAL_CROPS": 1 if dataset == "kinetics" else 3},
        "DATA": {"NUM_FRAMES": 16, "SAMPLING_RATE": 4, "TRAIN_JITTER_SCALES": [256, 320], "TRAIN_CROP_SIZE": 224,
                 "TEST_CROP_SIZE": 224, "MEAN": [0.45, 0.45, 0.45], "STD": [0.225, 0.225, 0.225],
                 "INPUT_CHANNEL_NUM": [3], **data},
        "MVIT": {"MODE": "conv", "ZERO_DECAY_POS_CLS": False, "DROPOUT_RATE": 0.0, "NORM": "layernorm",
                 "REV": {"ENABLE": False}, **mvit},
        "MODEL": {"ARCH": "mvit", "MODEL_NAME": "MViT", "NUM_CLASSES": classes, "DROPOUT_RATE": 0.5,
                  "LOSS_FUNC": "soft_cross_entropy", "HEAD_ACT": "softmax"},
        "SOLVER": {"BASE_LR": 0.0001, "OPTIMIZING_METHOD": "adamw", "MAX_EPOCH": 200},
        "DETECTION": {"ENABLE": False},
        "NUM_GPUS": 8,
        "OUTPUT_DIR": ".",
    }  # fmt: skip
    return yaml.safe_dump(cfg)


def pyslowfast_checkpoint(state: dict[str, torch.Tensor], cfg: str | None, *, epoch: int = 199) -> dict:
    """What ``slowfast/utils/checkpoint.py`` ``save_checkpoint`` passes to ``torch.save``."""
    params = [torch.nn.Parameter(v.clone()) for v in state.values() if v.is_floating_point()]
    opt = torch.optim.AdamW(params[:4] if len(params) > 4 else params, lr=1e-4)
    for p in opt.param_groups[0]["params"]:
        p.grad = torch.ones_like(p) * 1e-3
    opt.step()
    ckpt = {"epoch": epoch, "model_state": state, "optimizer_state": opt.state_dict()}
    if cfg is not None:
        ckpt["cfg"] = cfg
    return ckpt


def tiny_mvit_section(v2: bool) -> dict:
    """A 3-block MViT (widths 16 → 32 → 64) in PySlowFast's cfg terms: the same code paths as MViT-B, in
    milliseconds."""
    section = {
        "DEPTH": 3, "EMBED_DIM": 16, "NUM_HEADS": 1, "PATCH_KERNEL": [3, 7, 7], "PATCH_STRIDE": [2, 4, 4],
        "PATCH_PADDING": [1, 3, 3], "MLP_RATIO": 4.0, "QKV_BIAS": True, "CLS_EMBED_ON": True,
        "DIM_MUL": [[1, 2.0], [2, 2.0]], "HEAD_MUL": [[1, 2.0], [2, 2.0]], "POOL_KVQ_KERNEL": [3, 3, 3],
        "POOL_KV_STRIDE_ADAPTIVE": [1, 4, 4],
    }  # fmt: skip
    if v2:
        section.update(
            USE_ABS_POS=False, REL_POS_SPATIAL=True, REL_POS_TEMPORAL=True, RESIDUAL_POOLING=True,
            DIM_MUL_IN_ATT=True, POOL_Q_STRIDE=[[0, 1, 1, 1], [1, 1, 2, 2], [2, 1, 2, 2]],
        )  # fmt: skip
    else:
        section.update(SEP_POS_EMBED=True, POOL_Q_STRIDE=[[1, 1, 2, 2], [2, 1, 2, 2]])
    return section


TINY_DATA = {"NUM_FRAMES": 4, "SAMPLING_RATE": 2, "TRAIN_CROP_SIZE": 64, "TEST_CROP_SIZE": 64}


# -- MMAction2 ---------------------------------------------------------------------------------------------


def to_mmaction(tv_state: dict[str, torch.Tensor], stages: int) -> dict[str, torch.Tensor]:
    """torchvision MViT keys → an MMAction2 ``Recognizer3D`` (MViT backbone, MViTHead) state dict."""
    out = {}
    for key, value in tv_state.items():
        if key == "pos_encoding.class_token":
            out["backbone.cls_token"] = value.reshape(1, 1, -1)
            continue
        if key.startswith("norm."):
            out[f"backbone.norm{stages - 1}.{key.split('.')[1]}"] = value
            continue
        if key.startswith("head.1."):
            out[f"cls_head.fc_cls.{key.split('.')[2]}"] = value
            continue
        new = key.replace("conv_proj.", "patch_embed.projection.")
        for a, b in _TO_PYSLOWFAST[1:5]:
            new = new.replace(a, b)
        for kind in ("q", "k", "v"):
            new = new.replace(f"attn.pool_{kind}.pool.", f"attn.pool_{kind}.")
            new = new.replace(f"attn.pool_{kind}.norm_act.0.", f"attn.norm_{kind}.")
        out[f"backbone.{new}"] = value
    return out


MMACTION_CFG = """model = dict(
    type='Recognizer3D',
    backbone=dict(type='MViT', arch=dict(embed_dims=16, num_layers=3, num_heads=1, downscale_indices=[1, 2]),
                  temporal_size=4, spatial_size=64, adaptive_kv_stride=(1, 4, 4), drop_path_rate=0.1),
    data_preprocessor=dict(type='ActionDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], format_shape='NCTHW'),
    cls_head=dict(type='MViTHead', in_channels=64, num_classes=5, average_clips='prob'))
dataset_type = 'VideoDataset'
ann_file_test = 'data/mine/val_list_videos.txt'
test_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SampleFrames', clip_len=4, frame_interval=3, num_clips=5, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 72)),
    dict(type='CenterCrop', crop_size=64),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
"""
"""``meta['cfg']`` of a tiny MViTv2 recogniser as mmengine's ``Config.pretty_text`` writes it."""


def mmaction_checkpoint(state: dict[str, torch.Tensor], classes: list[str], cfg: str = MMACTION_CFG) -> dict:
    """An mmengine checkpoint as ``tools/train.py`` leaves it after ``publish_model`` (meta + state_dict)."""
    meta = {
        "mmengine_version": "0.10.4", "mmaction2_version": "1.2.0", "epoch": 100, "iter": 5000, "seed": 0,
        "experiment_name": "mvit-tiny_mine", "time": "20240101_000000", "cfg": cfg,
        "dataset_meta": {"classes": classes},
    }  # fmt: skip
    return {"meta": meta, "state_dict": state}


# -- torchvision references --------------------------------------------------------------------------------


def references_checkpoint(state: dict[str, torch.Tensor], **args) -> dict:
    """What ``references/video_classification/train.py`` saves after an epoch (no AMP, no EMA)."""
    params = [torch.nn.Parameter(v.clone()) for v in list(state.values())[:6] if v.is_floating_point()]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[20, 30])
    namespace = argparse.Namespace(
        data_path="/data/mine", train_dir="train", val_dir="val", model="mvit_v2_s", device="cuda", clip_len=16,
        frame_rate=15, clips_per_video=5, batch_size=24, epochs=45, workers=10, lr=0.01, momentum=0.9,
        weight_decay=1e-4, lr_milestones=[20, 30, 40], lr_gamma=0.1, lr_warmup_epochs=10,
        lr_warmup_method="linear", lr_warmup_decay=0.001, print_freq=10, output_dir="out", resume="",
        start_epoch=0, sync_bn=False, test_only=False, world_size=1, dist_url="env://", weights="KINETICS400_V1",
        amp=False, kinetics_version="400", val_resize_size=[256], val_crop_size=[224],
        train_resize_size=[256], train_crop_size=[224], distributed=False,
    )  # fmt: skip
    vars(namespace).update(args)
    return {
        "model": state,
        "optimizer": opt.state_dict(),
        "lr_scheduler": sched.state_dict(),
        "epoch": 44,
        "args": namespace,
    }


# -- Hugging Face ViViT ------------------------------------------------------------------------------------


def vivit_repo(folder: Path, labels: list[str], *, frames: int = 16, size: int = 32, seed: int = 0):
    """A ``VivitForVideoClassification`` fine-tune saved with ``save_pretrained`` (config.json with
    ``id2label``, model.safetensors) plus a ``preprocessor_config.json``; returns the model (the reference)."""
    import transformers

    config = transformers.VivitConfig(
        image_size=size, num_frames=frames, tubelet_size=[2, 16, 16], hidden_size=64, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=128, hidden_act="gelu_fast",
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
    )  # fmt: skip
    torch.manual_seed(seed)
    model = transformers.VivitForVideoClassification(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.normal_(1.0 if "layernorm" in name and name.endswith("weight") else 0.0, 0.2)
    model.save_pretrained(folder)
    processor = {
        "image_processor_type": "VivitImageProcessor", "do_resize": True, "size": {"shortest_edge": 36},
        "do_center_crop": True, "crop_size": {"height": size, "width": size}, "do_rescale": True,
        "rescale_factor": 0.00784313725490196, "offset": True, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2,
    }  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return model


def tiny_mmaction_file(path: Path, classes: list[str], seed: int = 4) -> Path:
    """A tiny MMAction2 MViTv2 fine-tune (3 blocks, 4 frames of 64²) with ``len(classes)`` classes named in
    its ``meta``: a checkpoint small enough to upload in a test (about 1 MB), with labels of its own."""
    from mvt.checkpoints.pyslowfast import config_from_cfg, parse_cfg

    n = len(classes)
    cfg, _ = config_from_cfg(parse_cfg(pyslowfast_cfg(tiny_mvit_section(True), TINY_DATA, n)))
    state = to_mmaction(torchvision_mvit(cfg, n, seed=seed).state_dict(), stages=3)
    text = MMACTION_CFG.replace("num_classes=5", f"num_classes={n}")
    torch.save(mmaction_checkpoint(state, classes, text), path)
    return path
