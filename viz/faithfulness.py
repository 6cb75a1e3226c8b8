"""Which explanation is right? Deletion/insertion curves, pointing game, mask IoU, and baselines.

Deletion and insertion (Petsiuk et al., "RISE", BMVC 2018), written for video and token cells:

* The clip is cut into a grid of *cells* of ``cell = (t, h, w)`` input voxels (frames, pixels, pixels),
  aligned to the model's token footprint: by default ``(2, 16, 16)``, which is the ViViT tubelet, the
  HVT patch (two frames) and the token stride of MViT's third stage. One grid for every model keeps AUCs
  comparable across models whose token grids differ. A cell's relevance is the mean of the
  explanation over its voxels (signed: no ``abs``, as RISE and xplique do).
* Cells are ranked most-relevant first with a *stable* sort: ties keep raster order (t, then h, then w),
  so results are deterministic. NaNs in the explanation count as least relevant.
* ``steps`` checkpoints: checkpoint ``k`` perturbs the first ``round(k * N / steps)`` cells of the
  ranking (``N`` cells). *Deletion* replaces those cells of the clip by the substrate; *insertion* starts
  from the substrate and puts those cells of the clip back. The substrate (:mod:`viz.perturb`;
  :data:`DEFAULT_SUBSTRATE`, chosen by measurement) is ``"impute"`` (deleted cells interpolated from the known
  ones in space and time, plus noise), ``"static"`` (the clip's temporal median), ``"blur"`` (the clip blurred
  by a separable Gaussian over T, H and W, normalised at the borders) or ``"mean"`` (each channel's mean
  over the clip), computed on the normalised input the model sees.
* At each checkpoint we record the *score* of the perturbed clip: a callable maps a batch of clips to one
  number each (``lens.explain.scoring.class_probability``: the softmax probability of the explained class;
  this module never sees a model). The x axis is the fraction of the
  clip's voxels perturbed (0 … 1), the AUC the trapezoid rule over it. Lower deletion AUC and higher
  insertion AUC mean a more faithful explanation. Deletion's last point is the substrate and insertion's
  first point is the substrate (and vice versa for the clip), so both curves cost ``2 * steps`` forwards,
  run in batches of ``batch_size``.

Localisation against a ground-truth mask (SynthMotion's actor masks):

* :func:`pointing_game` (Zhang et al., 2018, as Quantus ``PointingGame``): a hit if a location of the
  explanation's maximum lies in the mask. Ties count as a hit if *any* tied maximum is inside (Quantus's
  ``any(mask * (a == a.max()))``); ``ties="fraction"`` scores the fraction of tied maxima inside instead,
  which does not reward flat maps. An empty mask gives NaN.
* :func:`mask_iou`: IoU between the mask and the explanation's top voxels (by default as many voxels as
  the mask has).

Baselines: :func:`random_explanation` (uniform noise, seeded), :func:`center_bias` (a centred Gaussian
volume) and :func:`oracle` (the mask itself); ``lens.explain.methods`` registers them as explanation methods.

:func:`score_clip` scores several explanations of one clip, :func:`aggregate` averages over clips;
``viz.curves_figure`` plots curves (``lens.explain.scoring`` runs these with a model).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from mvt.outputs import Footprint

from .perturb import KNOWN_DEPENDENT, fill
from .perturb import blur as blur  # re-exported: the substrates live in viz.perturb
from .perturb import substrate_like as substrate_like

Grid3 = tuple[int, int, int]

Score = Callable[[torch.Tensor], torch.Tensor]
"""A batch of clips ``(B, 3, T, H, W)`` → one score each ``(B,)`` (e.g. the probability of the explained
class)."""

DEFAULT_CELL: Grid3 = (2, 16, 16)
"""Default perturbation cell (frames, pixels, pixels): ViViT tubelets, HVT patches, MViT's stage-3 tokens."""

SUBSTRATES = ("impute", "static", "blur", "mean")
"""Fills of deleted cells (:mod:`viz.perturb`); :data:`DEFAULT_SUBSTRATE` is the one the metric uses."""
DEFAULT_SUBSTRATE = "impute"
"""Chosen by measurement (``python -m bench.deletion --n 16 --seed 11``; oracle vs random deletion AUC,
lower = more hurt). With ``"blur"`` deleting the actor hurt ``mvit_t`` / ``mmvit_t`` *less* than deleting
random cells (oracle 0.681 / 0.700 vs random 0.478 / 0.561): a blurred actor still moves, and blurred cells
scattered over a sharp clip are edges the models react to. ``"mean"`` barely separates them (0.184 vs 0.196,
0.199 vs 0.190). With ``"impute"`` the oracle beats random on every shipped model (``mvit_t`` 0.186 vs 0.369,
``mmvit_t`` 0.180 vs 0.393, ``hvt_t`` 0.173 vs 0.520, ``vivit_t1`` 0.138 vs 0.414, ``vivit_t2`` 0.216 vs
0.525; bench/README.md has every model), and so it does with ``"static"`` (larger gaps, e.g. ``mvit_t`` 0.194
vs 0.447). Imputation is the default because it assumes nothing about the video: the static fill is the
temporal median, exact for SynthMotion's still background but a smear on a clip whose camera moves."""


@dataclass(frozen=True)
class Curves:
    """Deletion and insertion curves of one explanation for one clip.

    ``fractions`` (float64, ``steps + 1``) is the fraction of the clip's voxels perturbed at each
    checkpoint, from 0 to 1; ``deletion`` and ``insertion`` the score there. AUCs are trapezoids over
    ``fractions`` (lower deletion / higher insertion = more faithful). ``target`` records which class the
    score was the probability of (set by the caller that chose it; -1 if unknown).
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    target: int = -1
    cell: Grid3 = DEFAULT_CELL
    substrate: str = "blur"
    meta: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-ready: lists and plain floats."""
        return {
            "fractions": [float(v) for v in self.fractions],
            "deletion": [float(v) for v in self.deletion],
            "insertion": [float(v) for v in self.insertion],
            "deletion_auc": float(self.deletion_auc),
            "insertion_auc": float(self.insertion_auc),
            "target": int(self.target),
            "cell": list(self.cell),
            "substrate": self.substrate,
        }


def auc(fractions: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray) -> float:
    """Area under ``values`` over ``fractions`` by the trapezoid rule (a constant curve on [0, 1] gives it)."""
    x = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"auc needs two 1-D arrays of equal length >= 2, got {x.shape} and {y.shape}")
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) * 0.5))


# -- cells and substrates ----------------------------------------------------------------------------------


def cell_size(cells: Grid3 | Footprint | None, shape: Grid3) -> Grid3:
    """The cell size used for ``cells`` on a clip of ``shape`` (T, H, W).

    ``None`` → :data:`DEFAULT_CELL`; a :class:`mvt.Footprint` → its stride (one cell per token of that
    grid, boundaries at multiples of the stride); a tuple is used as given. Clipped to ``shape``.
    """
    if cells is None:
        size = DEFAULT_CELL
    elif isinstance(cells, Footprint):
        size = tuple(int(s) for s in cells.stride)
    else:
        size = tuple(int(c) for c in cells)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"a cell is (t, h, w) with positive sides, got {cells!r}")
    return tuple(min(c, n) for c, n in zip(size, shape))  # type: ignore[return-value]


def cell_ids(shape: Grid3, cell: Grid3) -> tuple[np.ndarray, Grid3]:
    """int64 ``(T, H, W)`` cell index of every voxel (raster order over cells) and the cell grid."""
    ids = [np.arange(n) // c for n, c in zip(shape, cell)]
    grid = tuple(int(i[-1]) + 1 for i in ids)
    out = (ids[0][:, None, None] * grid[1] + ids[1][None, :, None]) * grid[2] + ids[2][None, None, :]
    return out.astype(np.int64), grid  # type: ignore[return-value]


def cell_scores(explanation: np.ndarray, cell: Grid3) -> np.ndarray:
    """Mean of ``explanation`` (T, H, W) over each cell, in raster order; NaN voxels are ignored
    (a cell of only NaNs scores ``-inf``)."""
    vol = np.asarray(explanation, dtype=np.float64)
    ids, grid = cell_ids(vol.shape, cell)  # type: ignore[arg-type]
    n = int(np.prod(grid))
    ok = np.isfinite(vol)
    sums = np.bincount(ids[ok], weights=vol[ok], minlength=n)
    counts = np.bincount(ids[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
    return scores


# -- deletion / insertion ------------------------------------------------------------------------------------


def _as_volume(explanation: np.ndarray | torch.Tensor, shape: Grid3) -> np.ndarray:
    if isinstance(explanation, torch.Tensor):
        explanation = explanation.detach().float().cpu().numpy()
    vol = np.asarray(explanation)
    if vol.ndim == 4 and vol.shape[0] == 1:
        vol = vol[0]
    if tuple(vol.shape) != tuple(shape):
        raise ValueError(
            f"explanation has shape {tuple(vol.shape)} but the input clip is {tuple(shape)} (T, H, W); "
            "upsample token-grid volumes to the frames first (viz.to_frames)"
        )
    return vol


def _checkpoints(n_cells: int, steps: int) -> np.ndarray:
    steps = max(1, min(int(steps), n_cells))
    return np.unique(np.rint(np.arange(steps + 1) * n_cells / steps).astype(np.int64))


def deletion_insertion(
    score: Score,
    x: torch.Tensor,
    explanation: np.ndarray | torch.Tensor,
    *,
    cells: Grid3 | Footprint | None = None,
    steps: int = 16,
    substrate: str = DEFAULT_SUBSTRATE,
    blur_sigma: Sequence[float] | None = None,
    batch_size: int = 8,
    progress: Callable[[float], None] | None = None,
    seed: int = 0,
) -> Curves:
    """Deletion and insertion curves of ``explanation`` for clip ``x``.

    ``score`` maps ``(B, 3, T, H, W)`` to ``(B,)`` (see :data:`Score`). ``x`` is the normalised clip
    ``(1, 3, T, H, W)``; ``explanation`` a ``(T, H, W)`` volume at the same resolution. ``cells``: cell
    size, a token :class:`Footprint` (its stride) or ``None`` for :data:`DEFAULT_CELL`. See the module
    docstring for the procedure. ``progress(fraction)`` is called after every batch; ``seed`` seeds the
    noise of the ``impute`` and ``static`` fills.
    """
    if x.ndim != 5 or x.shape[0] != 1:
        raise ValueError(f"deletion_insertion expects one clip (1, C, T, H, W), got {tuple(x.shape)}")
    if substrate not in SUBSTRATES:
        raise ValueError(f"unknown substrate {substrate!r}; use one of {SUBSTRATES}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    shape: Grid3 = tuple(int(s) for s in x.shape[2:])  # type: ignore[assignment]
    vol = _as_volume(explanation, shape)
    cell = cell_size(cells, shape)
    ids, _ = cell_ids(shape, cell)
    scores = cell_scores(vol, cell)
    n_cells = scores.size
    order = np.argsort(-scores, kind="stable")  # most relevant first; ties keep raster order
    rank = np.empty(n_cells, dtype=np.int64)
    rank[order] = np.arange(n_cells)
    voxel_rank = torch.from_numpy(rank[ids]).to(x.device)  # (T, H, W)
    counts = np.bincount(rank[ids].ravel(), minlength=n_cells)  # voxels per ranked cell
    cum = np.concatenate([[0], np.cumsum(counts)])
    ks = _checkpoints(n_cells, steps)
    fractions = cum[ks] / float(cum[-1])

    x = x.detach()
    dependent = substrate in KNOWN_DEPENDENT
    base = None if dependent else fill(x, None, substrate, seed=seed, blur_sigma=blur_sigma).to(x.dtype)
    # Jobs: deletion at every checkpoint (k = 0 is the clip, k = last is the substrate), insertion
    # at the inner checkpoints; insertion's ends are deletion's ends swapped.
    jobs = [("del", int(k)) for k in ks] + [("ins", int(k)) for k in ks[1:-1]]
    values: dict[tuple[str, int], float] = {}
    with torch.no_grad():
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            # known voxels of each perturbed clip: deletion keeps all but the first k cells, insertion only them
            known = torch.stack(
                [(voxel_rank >= k) if mode == "del" else (voxel_rank < k) for mode, k in chunk]
            )[:, None]  # (b, 1, T, H, W)
            if dependent:
                batch = fill(x, known, substrate, seed=seed).to(x.dtype)
            else:
                batch = torch.where(known, x, base)
            out = torch.as_tensor(score(batch)).float().reshape(-1)  # (b,)
            for job, v in zip(chunk, out.tolist()):
                values[job] = float(v)
            if progress is not None:
                progress(min(1.0, (start + len(chunk)) / len(jobs)))
    deletion = np.asarray([values[("del", int(k))] for k in ks], dtype=np.float64)
    inner = [values[("ins", int(k))] for k in ks[1:-1]]
    insertion = np.asarray([deletion[-1], *inner, deletion[0]], dtype=np.float64)
    return Curves(
        fractions=fractions,
        deletion=deletion,
        insertion=insertion,
        deletion_auc=auc(fractions, deletion),
        insertion_auc=auc(fractions, insertion),
        cell=cell,
        substrate=substrate,
    )


# -- localisation --------------------------------------------------------------------------------------------


def _pair(explanation: np.ndarray | torch.Tensor, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(explanation, torch.Tensor):
        explanation = explanation.detach().float().cpu().numpy()
    vol = np.asarray(explanation, dtype=np.float64)
    m = np.asarray(mask).astype(bool)
    if vol.shape != m.shape:
        raise ValueError(
            f"explanation {vol.shape} and mask {m.shape} must have the same (T, H, W) shape; "
            "upsample the explanation to the frames first (viz.to_frames)"
        )
    return vol, m


TIE_TOLERANCE = 1e-6
"""Values within this fraction of the explanation's range (max - min) of its maximum count as maxima."""


def top_set(values: np.ndarray, tol: float = TIE_TOLERANCE) -> np.ndarray:
    """Boolean mask of the maxima of ``values`` (float64; NaN never a maximum): the entries within
    ``tol · (max - min)`` of the maximum, so float rounding (a flat token painted with weights that sum to
    1 up to 1e-16, or stored in float32) does not split one maximum into a few pixels."""
    vol = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(vol)
    if not finite.any():
        return np.zeros(vol.shape, dtype=bool)
    hi, lo = vol[finite].max(), vol[finite].min()
    return finite & (vol >= hi - tol * (hi - lo))


def pointing_game(
    explanation: np.ndarray | torch.Tensor, mask: np.ndarray, *, ties: str = "any", tol: float = TIE_TOLERANCE
) -> float:
    """1.0 if the explanation's maximum falls in ``mask``, 0.0 if not, NaN if the mask is empty.

    Both are ``(T, H, W)`` (any equal shapes). Maxima are found in float64 with a tolerance
    (:func:`top_set`). ``ties="any"`` (Quantus): a hit if any maximum is in the mask — note a constant map
    then always hits; ``ties="fraction"``: the fraction of the maxima in the mask. NaN voxels are ignored;
    an all-NaN explanation gives NaN.
    """
    vol, m = _pair(explanation, mask)
    if not m.any() or not np.isfinite(vol).any():
        return float("nan")
    top = top_set(vol, tol)
    if ties == "any":
        return float(bool((top & m).any()))
    if ties == "fraction":
        return float((top & m).sum() / top.sum())
    raise ValueError(f"ties must be 'any' or 'fraction', got {ties!r}")


def mask_iou(
    explanation: np.ndarray | torch.Tensor, mask: np.ndarray, top_fraction: float | None = None
) -> float:
    """IoU of ``mask`` with the explanation's top ``top_fraction`` of voxels (default: the mask's share).

    Voxels are ranked by value with a stable sort (ties in raster order; NaN last). Empty mask → NaN.
    """
    vol, m = _pair(explanation, mask)
    if not m.any():
        return float("nan")
    frac = m.mean() if top_fraction is None else float(top_fraction)
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    k = max(1, int(round(frac * vol.size)))
    flat = np.where(np.isfinite(vol), vol, -np.inf).ravel()
    top = np.zeros(flat.size, dtype=bool)
    top[np.argsort(-flat, kind="stable")[:k]] = True
    mf = m.ravel()
    return float((top & mf).sum() / (top | mf).sum())


# -- baselines -----------------------------------------------------------------------------------------------


def random_explanation(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """float32 uniform [0, 1) noise of ``shape`` from ``numpy.random.default_rng(seed)`` (ties have
    probability ~0)."""
    return np.random.default_rng(seed).random(tuple(int(s) for s in shape), dtype=np.float32)


def center_bias(shape: Sequence[int], sigma: Sequence[float] = (0.5, 0.25, 0.25)) -> np.ndarray:
    """float32 Gaussian volume centred in ``shape`` (T, H, W); ``sigma`` per axis as a fraction of its
    length (default: wide in time, a quarter of the frame in space). Peak value 1."""
    shape = tuple(int(s) for s in shape)
    if len(sigma) != len(shape):
        raise ValueError(f"sigma needs one value per axis of {shape}")
    out = np.ones((), dtype=np.float64)
    for axis, (n, s) in enumerate(zip(shape, sigma)):
        c = (n - 1) / 2.0
        g = np.exp(-0.5 * ((np.arange(n) - c) / max(s * n, 1e-6)) ** 2)
        out = np.multiply.outer(out, g) if axis else g
    return np.asarray(out, dtype=np.float32).reshape(shape)


def oracle(mask: np.ndarray) -> np.ndarray:
    """The ground-truth mask as an explanation: float32, 1 on the mask, 0 elsewhere."""
    return np.asarray(mask).astype(np.float32)


# -- several explanations of one clip ------------------------------------------------------------------------


def score_clip(
    score: Score,
    x: torch.Tensor,
    explanations: Mapping[Hashable, np.ndarray | torch.Tensor],
    *,
    mask: np.ndarray | None = None,
    cells: Grid3 | Footprint | None = None,
    steps: int = 16,
    substrate: str = DEFAULT_SUBSTRATE,
    batch_size: int = 8,
    progress: Callable[[float, str], None] | None = None,
) -> dict:
    """Score several explanations of one clip ``x`` (1, 3, T, H, W) with one ``score``.

    ``explanations`` maps a name to a (T, H, W) volume at the clip's resolution (add the baselines: :func:`random_explanation`,
    :func:`center_bias`, :func:`oracle`). Returns, per name, ``{"curves": Curves, "pointing_game": float,
    "mask_iou": float}``; the last two are NaN without ``mask`` (bool (T, H, W), aligned with the clip).
    """
    out: dict = {}
    for i, (k, v) in enumerate(explanations.items()):
        if progress is not None:
            progress(i / max(1, len(explanations)), f"deletion/insertion: {k}")
        curves = deletion_insertion(
            score, x, v, cells=cells, steps=steps, substrate=substrate, batch_size=batch_size
        )
        out[k] = {
            "curves": curves,
            "pointing_game": pointing_game(v, mask) if mask is not None else float("nan"),
            "mask_iou": mask_iou(v, mask) if mask is not None else float("nan"),
        }
    if progress is not None:
        progress(1.0, "faithfulness done")
    return out


METRICS = ("deletion_auc", "insertion_auc", "pointing_game", "mask_iou")


def aggregate(scores: Sequence[Mapping[str, Mapping]]) -> dict[str, dict[str, float]]:
    """Mean over clips of :func:`score_clip` outputs: ``{metric: {method: mean}}`` for
    :data:`METRICS` (NaNs, e.g. empty masks, are skipped; a method missing everywhere is left out).

    This is the shape ``python -m mvt evaluate --json`` reports under ``"deletion_auc"``, ... .
    """
    values: dict[str, dict[str, list[float]]] = {m: {} for m in METRICS}
    for clip in scores:
        for method, s in clip.items():
            c = s.get("curves")
            row = {
                "deletion_auc": c.deletion_auc if c is not None else float("nan"),
                "insertion_auc": c.insertion_auc if c is not None else float("nan"),
                "pointing_game": s.get("pointing_game", float("nan")),
                "mask_iou": s.get("mask_iou", float("nan")),
            }
            for metric, v in row.items():
                values[metric].setdefault(method, []).append(float(v))
    out: dict[str, dict[str, float]] = {}
    for metric, per in values.items():
        out[metric] = {}
        for method, vs in per.items():
            arr = np.asarray(vs, dtype=np.float64)
            arr = arr[np.isfinite(arr)]
            if arr.size:
                out[metric][method] = float(arr.mean())
    return out
