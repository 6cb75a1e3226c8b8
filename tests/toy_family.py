"""A toy fifth family, written by following ``docs/adding-a-model.md``: one joint-attention block on tubelet
tokens with a CLS token. It proves that a family is one file plus one registration: nothing in ``app.py``,
``viz`` or the zoo knows it. (A real family lives in ``mvt/models/`` and is registered by its name in
``mvt/models/__init__.py``; this one lives in ``tests/`` and is registered for the duration of a test by
:func:`registered`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from mvt import zoo
from mvt.layers import ALL_CAPTURES, Capture, Recorder, capturing, init_linear_and_norm, record_attention
from mvt.models.contract import (
    check_clip,
    config_named,
    identity_taps,
    register_variant,
    synthmotion_spec,
    through_tap,
)
from mvt.outputs import Footprint, Grid, ModelOutput, StageInfo


@dataclass(frozen=True)
class ToyConfig:
    num_frames: int = 16
    image_size: int = 112
    tubelet: Grid = (4, 16, 16)
    dim: int = 32
    heads: int = 2

    @property
    def grid(self) -> Grid:
        return tuple(
            n // t for n, t in zip((self.num_frames, self.image_size, self.image_size), self.tubelet)
        )  # type: ignore[return-value]


TOY_CONFIGS = {"toy_t": ToyConfig()}


class Toy(nn.Module):
    """Tubelets → CLS + tokens → one pre-norm joint-attention block → CLS → linear head."""

    def __init__(self, cfg: ToyConfig, num_classes: int = 8):
        super().__init__()
        self.cfg = cfg
        n = 1 + cfg.grid[0] * cfg.grid[1] * cfg.grid[2]
        self.embed = nn.Conv3d(3, cfg.dim, cfg.tubelet, stride=cfg.tubelet)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, n, cfg.dim))
        self.norm1, self.norm = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.qkv, self.proj = nn.Linear(cfg.dim, 3 * cfg.dim), nn.Linear(cfg.dim, cfg.dim)
        self.head = nn.Linear(cfg.dim, num_classes)
        self.stage_taps = identity_taps(1)
        init_linear_and_norm(self)

    def _run(self, x: torch.Tensor, rec: Recorder | None) -> torch.Tensor:
        cfg = self.cfg
        x = check_clip(x, model="Toy", frames=cfg.num_frames, size=cfg.image_size)
        cells = self.embed(x).flatten(2).transpose(1, 2)  # (B, 3, T, H, W) -> (B, T'H'W', D)
        tok = torch.cat((self.cls_token.expand(len(x), -1, -1), cells), dim=1) + self.pos_embed  # (B, 1+N, D)
        tok = through_tap(self.stage_taps[0], tok, cfg.grid, num_prefix=1)  # before the last block (CLS head)
        if rec is not None:
            rec.enter_block(tok)
        b, n, d = tok.shape
        q, k, v = self.qkv(self.norm1(tok)).view(b, n, 3, cfg.heads, d // cfg.heads).permute(2, 0, 3, 1, 4)
        where = dict(
            stage=0, block=0, kind="joint", q_grid=cfg.grid, k_grid=cfg.grid, num_prefix=1, in_grid=cfg.grid
        )
        out = record_attention(q, k, v, rec, **where)  # (B, heads, N, d/heads)
        tok = tok + self.proj(out.transpose(1, 2).reshape(b, n, d))
        return self.head(self.norm(tok[:, 0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)

    captures = ALL_CAPTURES

    def forward_with_attention(self, x: torch.Tensor, *, capture: Capture = Capture.EAGER) -> ModelOutput:
        cfg = self.cfg
        with capturing(self, capture, x) as rec:
            logits = self._run(x, rec)
        embed = Footprint(stride=cfg.tubelet, kernel=cfg.tubelet)
        n = 1 + cfg.grid[0] * cfg.grid[1] * cfg.grid[2]
        stage = StageInfo(
            stage=0, grid=cfg.grid, channels=cfg.dim, tokens=n, num_prefix=1, footprint=embed, blocks=(0,)
        )
        return rec.output(logits, [stage], input_shape=tuple(x.shape[2:]), embed=embed, pooling="cls")


def build_toy(name: str, num_classes: int = 8) -> Toy:
    return Toy(config_named(TOY_CONFIGS, name, "Toy"), num_classes=num_classes)


def register() -> None:
    """The family's registration (a real family calls this at the end of its module)."""
    cfg = TOY_CONFIGS["toy_t"]
    register_variant(
        "toy",
        "toy_t",
        build_toy,
        synthmotion_spec("toy_t", num_frames=cfg.num_frames, crop_size=cfg.image_size),
    )


@contextmanager
def registered() -> Iterator[list[str]]:
    """The toy family in the zoo while open (the other tests never see it); yields its model names."""
    zoo.list_models()  # the real families first, so that removing the toy leaves them as they were
    register()
    try:
        yield zoo.list_models("toy*")
    finally:
        zoo.unregister_arch("toy_t")
