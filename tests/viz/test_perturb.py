"""Fills of deleted cells: imputation keeps what is known and interpolates the rest smoothly; the static fill
keeps what does not move; noise has the clip's own level; curves are reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from viz.faithfulness import deletion_insertion
from viz.perturb import FILLS, fill, noise_level, push_pull, static_fill


def test_push_pull_keeps_known_voxels_and_fills_smoothly():
    t, h, w = torch.meshgrid(torch.arange(8.0), torch.arange(16.0), torch.arange(16.0), indexing="ij")
    ramp = (0.1 * t + 0.2 * h + 0.3 * w)[None, None]  # (1, 1, 8, 16, 16)
    known = torch.ones_like(ramp, dtype=torch.bool)
    known[..., 4:12, 4:12] = False  # a hole in every frame
    out = push_pull(ramp, known)
    assert torch.equal(out[known], ramp[known])
    hole = out[~known] - ramp[~known]
    assert hole.abs().max() < 3.0 and hole.abs().mean() < 1.0  # close to the ramp, no zeros or blocks
    assert out[~known].std() > 0.5  # it varies across the hole like the ramp does
    nothing = push_pull(ramp, torch.zeros_like(known))
    torch.testing.assert_close(nothing, ramp.mean().expand_as(ramp))


def test_static_fill_removes_what_moves():
    clip = torch.zeros(1, 3, 9, 8, 8)
    clip[:, :, :, :4] = 1.0  # static top half
    for i in range(9):
        clip[:, :, i, 6, i % 8] = 5.0  # a dot moving along the bottom row
    out = static_fill(clip, seed=0)
    assert noise_level(clip).abs().max() == 0  # no noise in this clip, so none is added
    assert torch.equal(out[:, :, :, :4], clip[:, :, :, :4]) and (out[:, :, :, 6] == 0).all()


def test_noise_level_matches_the_clip():
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(1, 3, 16, 32, 32, generator=g) * 0.1 + torch.linspace(0, 1, 32)
    assert noise_level(clip).flatten().tolist() == pytest.approx([0.1] * 3, rel=0.1)


@pytest.mark.parametrize("kind", FILLS)
def test_fills_are_reproducible_and_keep_known_cells(kind):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 4, 16, 16, generator=g)
    known = torch.rand(2, 1, 4, 16, 16, generator=g) > 0.5
    a, b = fill(x, known, kind, seed=3), fill(x, known, kind, seed=3)
    assert a.shape == (2, 3, 4, 16, 16) and torch.equal(a, b)
    assert torch.equal(a[known.expand_as(a)], x.expand_as(a)[known.expand_as(a)])
    with pytest.raises(ValueError, match="substrate"):
        fill(x, known, "zeros")


def test_deletion_with_imputation_runs_and_ends_at_the_fill():
    x = torch.randn(1, 3, 4, 16, 16, generator=torch.Generator().manual_seed(2))

    def score(batch: torch.Tensor) -> torch.Tensor:
        return batch[:, 0, :, 4:8, 4:8].mean(dim=(1, 2, 3)).sigmoid()

    expl = np.zeros((4, 16, 16), np.float32)
    expl[:, 4:8, 4:8] = 1.0
    c = deletion_insertion(score, x, expl, cells=(2, 4, 4), steps=4, substrate="impute", seed=5)
    again = deletion_insertion(score, x, expl, cells=(2, 4, 4), steps=4, substrate="impute", seed=5)
    np.testing.assert_array_equal(c.deletion, again.deletion)
    assert c.deletion[0] == pytest.approx(float(score(x)[0]))
    assert c.insertion[-1] == pytest.approx(float(score(x)[0]))
