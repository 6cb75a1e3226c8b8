"""A family nobody wrote lens or the app for: register it with the zoo and it runs through the whole service
(analyse, every view, export) and the app's adapters, with no change outside this file."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import lens
import mvt
from mvt import zoo
from mvt.outputs import AttentionMap, Footprint, ModelOutput, StageInfo
from tests.test_app import make_moving_square

TUBELET = Footprint(stride=(2, 8, 8), kernel=(2, 8, 8))


class ToyNet(nn.Module):
    """One joint-attention block over a CLS token and 2×8×8 tubelets (one head), then a linear head."""

    def __init__(self, num_classes: int = 8, dim: int = 16) -> None:
        super().__init__()
        self.dim = dim
        self.embed = nn.Conv3d(3, dim, kernel_size=(2, 8, 8), stride=(2, 8, 8))
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.head = nn.Linear(dim, num_classes)
        self.stage_taps = nn.ModuleList([nn.Identity()])  # Grad-CAM reads the stage's (B, C, T, H, W) here

    def forward_with_attention(self, x: torch.Tensor, keep_weights: bool = False) -> ModelOutput:
        z = self.stage_taps[0](self.embed(x))  # (B, C, T', H', W')
        grid = tuple(int(g) for g in z.shape[2:])
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), z.flatten(2).transpose(1, 2)], 1)  # (B, 1+N, C)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        attn = (q @ k.transpose(1, 2) / math.sqrt(self.dim)).softmax(-1)  # (B, 1+N, 1+N)
        logits = self.head((tokens + attn @ v)[:, 0])
        amap = AttentionMap(
            stage=0,
            block=0,
            kind="joint",
            heads=1,
            q_grid=grid,
            k_grid=grid,
            num_prefix=1,
            head_mean=attn[:, None].detach(),  # (B, G=1, Nq, Nk)
            cls_row=attn[:, None, 0].detach(),  # (B, heads=1, Nk)
        )
        stage = StageInfo(0, grid, self.dim, math.prod(grid), 1, TUBELET)
        return ModelOutput(logits, [amap], [stage], tuple(int(s) for s in x.shape[2:]), TUBELET)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_attention(x).logits


@pytest.fixture
def toy_family(monkeypatch):
    """``lenstoy_t.untrained`` registered for this test only (the registry is restored afterwards)."""
    zoo.list_models()  # the real families first
    monkeypatch.setattr(zoo, "_ARCHS", dict(zoo._ARCHS))
    monkeypatch.setattr(zoo, "_SPECS", dict(zoo._SPECS))
    small = mvt.get_spec("hvt_t.untrained")  # input settings of the small SynthMotion configs
    zoo.register_arch(zoo.ArchEntry("lenstoy_t", "lenstoy", ToyNet), small)
    return "lenstoy_t.untrained"


def test_a_new_family_runs_through_the_service(toy_family, tmp_path):
    clip = make_moving_square(tmp_path / "clip.mp4", seed=5)
    service = lens.Service(out_dir=tmp_path / "out")
    analysis = service.analyse(clip, [toy_family, "mvit_t.untrained"], ["rollout", "saliency", "gradcam"])
    assert analysis.errors == []
    toy = analysis.results[0]
    assert len(toy.top5) == 5 and set(toy.volumes) == {
        lens.VolumeKey("attention", 0),
        lens.VolumeKey("rollout"),
        lens.VolumeKey("saliency"),
        lens.VolumeKey("gradcam"),
    }
    for method in ("attention", "rollout", "saliency", "gradcam"):
        panel = service.render(
            analysis, lens.Display(method, head="max" if method == "attention" else "mean")
        )[0]
        assert panel.overlay.is_file() and panel.strip.is_file()
        frames = mvt.probe(panel.overlay).num_frames  # every window the model saw, 16 frames each
        assert frames == len(panel.times) and frames % 16 == 0 and frames >= 16
    written = lens.write_export(analysis, tmp_path / "export")
    assert written[f"{toy_family}:npz"].is_file() and toy_family in written["report.json"].read_text()
    scores = service.faithfulness(analysis, steps=2)[toy_family]
    assert lens.VolumeKey("rollout") in scores and lens.VolumeKey("random") in scores
    assert toy_family in lens.default_models([toy_family, "mvit_t.untrained"])


def test_the_app_serves_it_without_changes(toy_family, tmp_path):
    from pathlib import Path

    import app
    from tests.test_app import run_compare

    clip = make_moving_square(tmp_path / "clip.mp4", seed=6)
    out, _ = run_compare(clip, [toy_family], methods=["rollout"], show="rollout")
    assert toy_family in out["title_0"] and out["download_0"]["value"].endswith(".mp4")
    assert f'data-model="{toy_family}"' in out["picture_0"]
    assert "lenstoy" not in Path(app.__file__).read_text()
