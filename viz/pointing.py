"""The pointing game at token resolution, and what the best possible token map scores (its ceiling).

The pixel pointing game (:func:`viz.faithfulness.pointing_game`) asks whether the maximum of an explanation
*painted onto the clip* lies on the actor. For a token map that mixes two things: which token the
explanation picks, and how the painting spreads that token's value over the pixels (a 60-px key footprint
on a 32-px stride, tent-blended, shows its own value only in a narrow band). Here the game is played on the
tokens themselves:

* **token pointing game**: take the map's maximum token(s) on its own grid (float64, ties within
  :data:`viz.faithfulness.TIE_TOLERANCE` of the range); a hit if the *cell* of a maximum token touches the
  actor mask. A token's cell is the part of the clip nearest to its centre among the positions its footprint
  covers (:func:`viz.geometry.axis_cover` ``mode="nearest"``): cells partition the clip, each lies inside its
  token's footprint and holds its centre, so a random token hits with probability "share of cells on the
  actor" (:func:`token_chance`) whatever the footprint overlap. A map already at pixel resolution (no
  footprint) has one-voxel cells: there the token game is the pixel game.
* **coverage** (:func:`token_coverage`): each token's share of its footprint box (clipped to the clip) that
  the actor covers. The coverage map is the best a token map can do on this grid; its scores are the
  **ceilings** (:func:`ceilings`): its token pointing game, and its pixel pointing game once painted.

Arrays in, floats out; masks are boolean ``(T, H, W)`` at the clip's resolution.
"""

from __future__ import annotations

import numpy as np

from mvt.outputs import Footprint

from .faithfulness import TIE_TOLERANCE, pointing_game, top_set
from .geometry import PAINT, axis_cover
from .render import to_frames


def _axes(footprint: Footprint, grid, shape, mode: str) -> list[np.ndarray]:
    return [
        axis_cover(int(n), int(g), int(s), int(k), int(p), mode)
        for n, g, s, k, p in zip(shape, grid, footprint.stride, footprint.kernel, footprint.padding)
    ]


def _per_token(mask: np.ndarray, axes: list[np.ndarray]) -> np.ndarray:
    """``Σ_{voxels} mask · a_t a_h a_w`` for every token: ``(t, h, w)`` float64."""
    m = np.asarray(mask, dtype=np.float64)
    ct, ch, cw = axes
    return np.einsum("THW,Tt,Hh,Ww->thw", m, ct, ch, cw, optimize=True)


def token_touch(mask: np.ndarray, footprint: Footprint, grid) -> np.ndarray:
    """Boolean ``grid``: the tokens whose cell touches ``mask``."""
    cells = [(a > 0).astype(np.float64) for a in _axes(footprint, grid, np.shape(mask), "nearest")]
    return _per_token(mask, cells) > 0


def token_coverage(mask: np.ndarray, footprint: Footprint, grid) -> np.ndarray:
    """float64 ``grid``: each token's fraction of its footprint box (clipped to the clip) on ``mask``."""
    boxes = _axes(footprint, grid, np.shape(mask), "box")
    covered = _per_token(mask, boxes)
    sizes = np.einsum("t,h,w->thw", *(b.sum(0) for b in boxes))
    return np.where(sizes > 0, covered / np.maximum(sizes, 1), 0.0)


def token_pointing_game(
    volume: np.ndarray, footprint: Footprint | None, mask: np.ndarray, *, tol: float = TIE_TOLERANCE
) -> float:
    """1.0 if a maximum token of ``volume`` (on its grid, painted with ``footprint``) has a cell touching
    ``mask``, 0.0 if not, NaN for an empty mask or an all-NaN volume. Without a footprint ``volume`` must be
    at the mask's resolution and this is :func:`viz.faithfulness.pointing_game`."""
    m = np.asarray(mask).astype(bool)
    vol = np.asarray(volume, dtype=np.float64)
    if footprint is None:
        return pointing_game(vol, m, tol=tol)
    if not m.any() or not np.isfinite(vol).any():
        return float("nan")
    return float(bool((top_set(vol, tol) & token_touch(m, footprint, vol.shape)).any()))


def token_chance(mask: np.ndarray, footprint: Footprint | None, grid) -> float:
    """The token pointing game of a uniformly random token: the share of tokens whose cell touches the mask
    (the share of mask voxels without a footprint); NaN for an empty mask."""
    m = np.asarray(mask).astype(bool)
    if not m.any():
        return float("nan")
    if footprint is None:
        return float(m.mean())
    return float(token_touch(m, footprint, grid).mean())


def ceilings(
    mask: np.ndarray, footprint: Footprint | None, grid, *, paint: str | None = None
) -> dict[str, float]:
    """``{"token", "pixel"}``: the pointing games (token and pixel) of the coverage map of ``grid`` — the
    best possible token map — with the pixel one painted by ``paint`` (default :data:`viz.geometry.PAINT`).
    Without a footprint (pixel-resolution maps) both are 1 for a nonempty mask."""
    m = np.asarray(mask).astype(bool)
    if not m.any():
        return {"token": float("nan"), "pixel": float("nan")}
    if footprint is None:
        return {"token": 1.0, "pixel": 1.0}
    cov = token_coverage(m, footprint, grid)
    painted = to_frames(cov, m.shape, footprint, paint=paint or PAINT, dtype=np.float64)
    return {"token": token_pointing_game(cov, footprint, m), "pixel": pointing_game(painted, m)}
