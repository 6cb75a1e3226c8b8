"""Pointing game: ties within a tolerance, the token-resolution game, coverage, chance and ceilings."""

from __future__ import annotations

import numpy as np
import pytest

import viz
from mvt.outputs import Footprint
from viz.faithfulness import pointing_game, top_set
from viz.pointing import ceilings, token_chance, token_coverage, token_pointing_game, token_touch

MVIT_KEYS = Footprint((4, 32, 32), (4, 60, 60), (0, 26, 26))
"""``mvit_t``'s last-stage key footprint: 60-px windows on a 32-px stride, 4-frame tubelets."""
SHAPE = (16, 112, 112)


def _hot(cell=(1, 1, 2), grid=(4, 4, 4)) -> np.ndarray:
    vol = np.zeros(grid)
    vol[cell] = 1.0
    return vol


def test_flat_hot_token_band_counts_as_one_maximum():
    """The issue's tie: a hot token painted with tents shows its value on a band; float32 rounding made
    the band differ by ~1.2e-7, so only 2 pixels were the maximum and a mask on the rest of the band
    scored 0. Maxima are now found in float64 within a tolerance of the range."""
    frames = viz.to_frames(_hot(), SHAPE, MVIT_KEYS, paint="tent")
    band = frames >= frames.max() - 1e-6
    assert band.sum() == 64  # 4 frames × 4 × 4 pixels that only this token's window covers
    rounded = frames.astype(np.float64)
    keep = tuple(np.argwhere(band)[:2].T)
    rounded[band] -= 1.2e-7
    rounded[keep] += 1.2e-7  # two pixels keep the exact maximum, as float32 arithmetic left them
    mask = band.copy()
    mask[keep] = False
    assert pointing_game(rounded, mask) == 1.0
    assert pointing_game(rounded, mask, tol=0.0) == 0.0  # what strict equality said
    assert top_set(rounded).sum() == 64
    assert pointing_game(frames, mask) == 1.0


def test_token_game_reads_the_token_not_the_painting():
    vol = _hot()  # token (1, 1, 2): frames 4-7; window rows 6-65, cols 38-97; cell rows 20-51, cols 52-83
    touch_cell = np.zeros(SHAPE, bool)
    touch_cell[5, 30, 60] = True  # one voxel inside its cell
    assert token_pointing_game(vol, MVIT_KEYS, touch_cell) == 1.0
    footprint_only = np.zeros(SHAPE, bool)
    footprint_only[5, 30, 45] = True  # inside its 60-px window, but in the neighbour's cell
    assert token_pointing_game(vol, MVIT_KEYS, footprint_only) == 0.0
    other_frames = np.zeros(SHAPE, bool)
    other_frames[0, 30, 60] = True  # right place, another tubelet
    assert token_pointing_game(vol, MVIT_KEYS, other_frames) == 0.0
    assert np.isnan(token_pointing_game(vol, MVIT_KEYS, np.zeros(SHAPE, bool)))
    # at pixel resolution (no footprint) it is the pixel game
    frames = viz.to_frames(vol, SHAPE, MVIT_KEYS)
    assert token_pointing_game(frames, None, touch_cell) == pointing_game(frames, touch_cell) == 1.0


def test_cells_partition_the_clip():
    mask = np.ones(SHAPE, bool)
    assert token_touch(mask, MVIT_KEYS, (4, 4, 4)).all()
    single = np.zeros(SHAPE, bool)
    single[7, 50, 99] = True
    assert token_touch(single, MVIT_KEYS, (4, 4, 4)).sum() == 1
    assert token_chance(single, MVIT_KEYS, (4, 4, 4)) == pytest.approx(1 / 64)


def test_coverage_and_ceilings():
    fp = Footprint((2, 16, 16), (2, 16, 16))  # tubelets
    grid = (8, 7, 7)
    mask = np.zeros(SHAPE, bool)
    mask[:, 16:40, 30:50] = True
    cov = token_coverage(mask, fp, grid)
    assert cov.shape == grid
    assert cov[3, 1, 2] == pytest.approx(1.0)  # rows 16-31 × cols 32-47: all inside the mask
    assert cov[3, 0, 0] == 0.0
    assert cov[3, 1, 1] == pytest.approx((16 * 2) / 256)  # rows 16-31 × cols 30-31
    c = ceilings(mask, fp, grid)
    assert c == {"token": 1.0, "pixel": 1.0}
    assert ceilings(mask, None, grid) == {"token": 1.0, "pixel": 1.0}
    # overlapping footprints: tent painting can lose the best token, nearest-centre cannot
    mvit = ceilings(mask, MVIT_KEYS, (4, 4, 4), paint="nearest")
    assert mvit["token"] == 1.0 and mvit["pixel"] == 1.0
