"""ViViT against transformers: logit and attention equivalence with ``VivitForVideoClassification``, the
checkpoint converter (both key namings), a full-size hub-layout checkpoint and the parameter counts. Only these
tests need transformers; the four variants are tested without it in ``test_vivit_variants.py``."""

from __future__ import annotations

import re

import pytest
import torch

from mvt import zoo
from mvt.models import vivit
from mvt.models.vivit import ViViT, config_from_hf, convert_hf_vivit
from mvt.weights import WeightsError

from .test_vivit_variants import _clip

transformers = pytest.importorskip("transformers")

# -- transformers reference ------------------------------------------------------------------------------------


def _hf_model(attn: str = "eager", **kw):
    cfg = transformers.VivitConfig(
        image_size=32,
        num_frames=4,
        hidden_size=64,
        num_attention_heads=4,
        num_hidden_layers=2,
        intermediate_size=128,
        num_labels=7,
        **kw,
    )
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    model = transformers.VivitForVideoClassification(cfg).eval()
    with torch.no_grad():  # HF zero-inits cls/pos and sets LN to identity; randomise everything
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model


_LEGACY = (  # transformers-5 name -> the hub file's transformers-4 name (inverse of conversion_mapping.py)
    (r"vivit\.layers\.(\d+)\.attention\.(q|k|v)_proj\.", None),
    (r"vivit\.layers\.(\d+)\.attention\.o_proj\.", r"vivit.encoder.layer.\1.attention.output.dense."),
    (r"vivit\.layers\.(\d+)\.mlp\.fc1\.", r"vivit.encoder.layer.\1.intermediate.dense."),
    (r"vivit\.layers\.(\d+)\.mlp\.fc2\.", r"vivit.encoder.layer.\1.output.dense."),
    (r"vivit\.layers\.(\d+)\.", r"vivit.encoder.layer.\1."),
)


def _to_legacy(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _LEGACY:
            m = re.match(pattern, key)
            if m:
                if repl is None:
                    which = {"q": "query", "k": "key", "v": "value"}[m.group(2)]
                    repl = rf"vivit.encoder.layer.\1.attention.attention.{which}."
                new = re.sub(pattern, repl, key, count=1)
                break
        out[new] = value
    return out


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_model1_matches_transformers(attn):
    hf = _hf_model(attn)
    ours = ViViT(config_from_hf(hf.config.to_dict()), num_classes=7).eval()
    zoo.load_state_dict_strict(ours, hf.state_dict(), convert_hf_vivit)
    x = _clip()
    with torch.no_grad():
        ref = hf(pixel_values=x.permute(0, 2, 1, 3, 4)).logits  # HF takes (B, T, C, H, W)
        fast = ours(x)
        captured = ours.forward_with_attention(x).logits
    assert ref.abs().max() > 0.1  # the comparison is not between near-zero logits
    assert (fast - ref).abs().max() <= 1e-4
    assert (captured - ref).abs().max() <= 1e-4


def test_model1_attention_matches_transformers_eager():
    hf = _hf_model("eager")
    ours = ViViT(config_from_hf(hf.config.to_dict()), num_classes=7).eval()
    zoo.load_state_dict_strict(ours, hf.state_dict(), convert_hf_vivit)
    x = _clip()
    with torch.no_grad():
        ref = hf(pixel_values=x.permute(0, 2, 1, 3, 4), output_attentions=True).attentions
        out = ours.forward_with_attention(x)
    assert len(ref) == len(out.attentions) == 2
    for r, m in zip(ref, out.attentions):  # r: (B, heads, N, N)
        torch.testing.assert_close(m.probs()[:, 0].float(), r.mean(1), atol=1e-5, rtol=0)
        torch.testing.assert_close(m.cls_row, r[:, :, 0], atol=1e-5, rtol=0)


def test_converter_reads_legacy_hub_names():
    hf = _hf_model()
    legacy = _to_legacy(hf.state_dict())
    assert "vivit.encoder.layer.1.attention.attention.query.weight" in legacy
    assert "vivit.encoder.layer.0.intermediate.dense.bias" in legacy
    assert not any(k.startswith("vivit.layers.") for k in legacy)
    legacy["vivit.pooler.dense.weight"] = torch.zeros(64, 64)  # VivitModel's unused pooler is dropped
    legacy["vivit.pooler.dense.bias"] = torch.zeros(64)
    ours = ViViT(config_from_hf(hf.config.to_dict()), num_classes=7).eval()
    zoo.load_state_dict_strict(ours, legacy, convert_hf_vivit)
    x = _clip()
    with torch.no_grad():
        ref = hf(pixel_values=x.permute(0, 2, 1, 3, 4)).logits
        assert (ours(x) - ref).abs().max() <= 1e-4
    # the fused qkv is query, key, value stacked in that order
    qkv = ours.encoder.blocks[1].attn.qkv.weight
    torch.testing.assert_close(qkv[64:128], legacy["vivit.encoder.layer.1.attention.attention.key.weight"])


def test_converter_fails_loudly():
    state = _to_legacy(_hf_model().state_dict())
    with pytest.raises(KeyError, match="unknown ViViT checkpoint keys"):
        convert_hf_vivit({**state, "vivit.embeddings.mystery": torch.zeros(1)})
    broken = dict(state)
    del broken["vivit.encoder.layer.0.attention.attention.value.bias"]
    with pytest.raises(ValueError, match="layer 0: bias of query/key/value incomplete"):
        convert_hf_vivit(broken)
    ours = ViViT(config_from_hf(_hf_model().config.to_dict()), num_classes=7)
    missing = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    with pytest.raises(WeightsError, match="missing keys"):
        zoo.load_state_dict_strict(ours, missing, convert_hf_vivit, what="vivit test")
    with pytest.raises(WeightsError, match="unknown ViViT checkpoint keys"):
        zoo.load_state_dict_strict(ours, {**state, "extra.thing": torch.zeros(1)}, convert_hf_vivit)
    # our own names pass through (e.g. a checkpoint saved from this model)
    assert convert_hf_vivit(ours.state_dict()).keys() == ours.state_dict().keys()


# -- weights from the Hugging Face cache ----------------------------------------------------------------------


@pytest.mark.slow
def test_fake_hf_cache_full_size_checkpoint_loads(hf_cache):
    """A random full-size checkpoint in the hub's layout and key names loads through create_model offline."""
    torch.manual_seed(0)
    hf = transformers.VivitForVideoClassification(transformers.VivitConfig(num_labels=400))
    assert sum(p.numel() for p in hf.parameters()) == 88_954_000
    state = _to_legacy(hf.state_dict())
    del hf
    sha = vivit.HF_REVISION  # the pinned commit: a cached file at that snapshot resolves with no request
    repo = hf_cache / "models--google--vivit-b-16x2-kinetics400"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    (repo / "snapshots" / sha).mkdir(parents=True)
    torch.save(state, repo / "snapshots" / sha / "pytorch_model.bin")

    assert "vivit_b_16x2.k400" in zoo.list_models("vivit*", available_only=True)
    model = zoo.create_model("vivit_b_16x2.k400")
    assert model.spec.trained and model.spec.label_set == "kinetics400" and model.spec.num_frames == 32
    own = model.state_dict()
    torch.testing.assert_close(own["head.weight"], state["classifier.weight"], rtol=0, atol=0)
    torch.testing.assert_close(
        own["encoder.pos_embed"], state["vivit.embeddings.position_embeddings"], rtol=0, atol=0
    )
    torch.testing.assert_close(
        own["encoder.blocks.11.attn.qkv.weight"][1536:],
        state["vivit.encoder.layer.11.attention.attention.value.weight"],
        rtol=0,
        atol=0,
    )


def test_full_size_parameter_counts():
    """Model 1 has exactly HF's parameters; models 2-4 match the paper's Table 2 (ViViT-B/16x2, K400 head) to
    within its 0.1M precision (the paper lists model 1's 88.954M as 88.9)."""
    with torch.device("meta"):
        hf = transformers.VivitForVideoClassification(transformers.VivitConfig(num_labels=400))
        counts = {n: sum(p.numel() for p in vivit.build(n).parameters()) for n in vivit.CONFIGS if "_b_" in n}
    assert counts["vivit_b_16x2"] == sum(p.numel() for p in hf.parameters()) == 88_954_000
    paper = {"vivit_b_16x2_fe": 115.1, "vivit_b_16x2_fsa": 117.3, "vivit_b_16x2_fdp": 88.9}
    for name, millions in paper.items():
        assert abs(counts[name] / 1e6 - millions) < 0.1, (name, counts[name])
