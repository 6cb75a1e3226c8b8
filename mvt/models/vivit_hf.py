"""Checkpoint conversion for ViViT: Hugging Face ``VivitForVideoClassification`` state dicts (transformers 4
names, as in the hub file ``google/vivit-b-16x2-kinetics400``, and transformers 5 names) onto
:class:`mvt.models.vivit.ViViT`'s keys. A pure function with a rename table; unknown or missing keys fail loudly."""

from __future__ import annotations

import re

import torch

_HF_RENAMES: tuple[tuple[str, str], ...] = (
    # transformers 4 (the hub file) and 5 share the embeddings / final norm / classifier names
    (r"vivit\.embeddings\.cls_token", "encoder.cls_token"),
    (r"vivit\.embeddings\.position_embeddings", "encoder.pos_embed"),
    (r"vivit\.embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.\1"),
    (r"vivit\.layernorm\.(weight|bias)", r"encoder.norm.\1"),
    (r"classifier\.(weight|bias)", r"head.\1"),
    # transformers 4 blocks
    (r"vivit\.encoder\.layer\.(\d+)\.layernorm_before\.(weight|bias)", r"encoder.blocks.\1.norm1.\2"),
    (r"vivit\.encoder\.layer\.(\d+)\.layernorm_after\.(weight|bias)", r"encoder.blocks.\1.norm2.\2"),
    (
        r"vivit\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)",
        r"qkv:\1.\2.\3",
    ),
    (
        r"vivit\.encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)",
        r"encoder.blocks.\1.attn.proj.\2",
    ),
    (r"vivit\.encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"encoder.blocks.\1.mlp.fc1.\2"),
    (r"vivit\.encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"encoder.blocks.\1.mlp.fc2.\2"),
    # transformers 5 blocks
    (r"vivit\.layers\.(\d+)\.layernorm_before\.(weight|bias)", r"encoder.blocks.\1.norm1.\2"),
    (r"vivit\.layers\.(\d+)\.layernorm_after\.(weight|bias)", r"encoder.blocks.\1.norm2.\2"),
    (r"vivit\.layers\.(\d+)\.attention\.(q|k|v)_proj\.(weight|bias)", r"qkv:\1.\2.\3"),
    (r"vivit\.layers\.(\d+)\.attention\.o_proj\.(weight|bias)", r"encoder.blocks.\1.attn.proj.\2"),
    (r"vivit\.layers\.(\d+)\.mlp\.fc1\.(weight|bias)", r"encoder.blocks.\1.mlp.fc1.\2"),
    (r"vivit\.layers\.(\d+)\.mlp\.fc2\.(weight|bias)", r"encoder.blocks.\1.mlp.fc2.\2"),
)
_HF_DROPPED = (r"vivit\.pooler\.dense\.(weight|bias)",)
"""``VivitModel``'s pooler: not part of the classification model (the head reads the CLS token directly)."""
_OWN_KEY = re.compile(r"(patch_embed|encoder|temporal_encoder|head)\.")
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}


def convert_hf_vivit(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a Hugging Face ``VivitForVideoClassification`` state dict (transformers 4 or 5 names) onto ours.

    Separate query/key/value projections are stacked into our fused ``attn.qkv``. A state dict already in our
    names passes through unchanged. Raises ``KeyError`` on a key it does not know and ``ValueError`` on an
    incomplete q/k/v triple.
    """
    if state and all(_OWN_KEY.match(k) for k in state):
        return dict(state)
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    unknown = []
    for key, value in state.items():
        if any(re.fullmatch(p, key) for p in _HF_DROPPED):
            continue
        for pattern, repl in _HF_RENAMES:
            if re.fullmatch(pattern, key):
                new = re.sub(pattern, repl, key)
                break
        else:
            unknown.append(key)
            continue
        if new.startswith("qkv:"):
            layer, which, kind = new[4:].split(".")
            qkv.setdefault((layer, kind), {})[_QKV_ORDER[which]] = value
        elif new in out:
            raise ValueError(f"checkpoint holds {new!r} twice (mixed transformers-4 and -5 names?)")
        else:
            out[new] = value
    if unknown:
        raise KeyError(f"{len(unknown)} unknown ViViT checkpoint keys, e.g. {unknown[:3]}")
    for (layer, kind), parts in sorted(qkv.items()):
        if sorted(parts) != [0, 1, 2]:
            raise ValueError(f"layer {layer}: {kind} of query/key/value incomplete (have {sorted(parts)})")
        out[f"encoder.blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts[0], parts[1], parts[2]], dim=0)
    return out
