"""Upsampling with true footprints, deterministic colours, overlays, strips, import hygiene."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import viz
from mvt.outputs import Footprint


@pytest.mark.parametrize("paint", ["box", "tent", "nearest"])
@pytest.mark.parametrize(
    "fp, shape, cell",
    [
        (Footprint((2, 16, 16), (2, 16, 16)), (8, 64, 64), (2, 1, 3)),  # ViViT tubelets: exact tiling
        (Footprint((2, 4, 4), (3, 7, 7), (1, 3, 3)), (8, 32, 32), (1, 3, 5)),  # MViT patch embed: overlaps
        (Footprint((2, 32, 32), (15, 63, 63), (7, 31, 31)), (16, 224, 224), (3, 2, 4)),  # MViT stage 4
    ],
)
def test_hot_token_lights_exactly_its_footprint(fp, shape, cell, paint):
    """box and tent light the token's whole footprint; nearest-centre lights its cell: a box inside the
    footprint, ``[centre - stride/2, centre + stride/2)`` where neighbours exist. Nothing outside the
    footprint."""
    grid = tuple((n + 2 * p - k) // s + 1 for n, s, k, p in zip(shape, fp.stride, fp.kernel, fp.padding))
    vol = np.zeros(grid, np.float32)
    vol[cell] = 1.0
    frames = viz.to_frames(vol, shape, footprint=fp, paint=paint)
    assert frames.shape == shape and frames.dtype == np.float32
    lo = [c * s - p for c, s, p in zip(cell, fp.stride, fp.padding)]
    window = tuple(slice(max(a, 0), min(a + k, n)) for a, k, n in zip(lo, fp.kernel, shape))
    inside = np.zeros(shape, bool)
    inside[window] = True
    assert (frames[~inside] == 0).all()
    if paint == "nearest":
        centre = [a + (k - 1) / 2 for a, k in zip(lo, fp.kernel)]
        cellbox = tuple(
            slice(max(int(np.ceil(c - s / 2)), 0), min(int(np.ceil(c + s / 2)), n))
            for c, s, n in zip(centre, fp.stride, shape)
        )
        lit = np.zeros(shape, bool)
        lit[cellbox] = True
        np.testing.assert_array_equal(frames > 0, lit & inside)
        assert (frames[frames > 0] == 1.0).all()  # its own value, unblended
        return
    assert (frames[inside] > 0).all()
    # the token's stride cell (covered by it alone when kernels do not overlap) is fully lit
    if fp.kernel == fp.stride:
        assert (frames[inside] == 1.0).all()
    if paint == "box":
        return
    # tent: it peaks in the stride cell around its own centre (no ring where fewer kernels overlap)
    peak = np.unravel_index(np.argmax(frames), shape)
    for a, k, s, q in zip(lo, fp.kernel, fp.stride, peak):
        assert abs(q - (a + (k - 1) / 2)) <= s / 2


def test_to_frames_without_footprint_is_trilinear_and_constant_preserving():
    vol = np.full((2, 3, 3), 0.25, np.float32)
    frames = viz.to_frames(vol, (4, 12, 12))
    assert frames.shape == (4, 12, 12)
    np.testing.assert_allclose(frames, 0.25, rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        viz.to_frames(np.zeros((3, 3)), (4, 12, 12))


def test_colormap_luts_are_fixed():
    lut = viz.colormap("inferno")
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert tuple(lut[0]) == (0, 0, 4) and tuple(lut[-1]) == (252, 255, 164)
    assert tuple(viz.colormap("viridis")[0]) == (68, 1, 84)
    assert tuple(viz.colormap("viridis")[-1]) == (253, 231, 37)
    turbo = viz.colormap("turbo")
    assert tuple(turbo[0]) == (35, 23, 27) and tuple(turbo[-1]) == (144, 13, 0)
    luminance = lut.astype(float) @ [0.299, 0.587, 0.114]
    assert (np.diff(luminance) >= -0.5).all()  # inferno rises in brightness (up to rounding of the anchors)
    assert luminance[-1] - luminance[0] > 200
    with pytest.raises(ValueError, match="unknown colormap"):
        viz.colormap("jet")


def _clip(seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    vol = rng.random((2, 4, 4)).astype(np.float32)
    return frames, vol


def test_overlay_is_deterministic_and_blends():
    frames, vol = _clip()
    fp = Footprint((2, 4, 4), (2, 4, 4))
    a = viz.overlay(frames, vol, footprint=fp)
    b = viz.overlay(frames.copy(), vol.copy(), footprint=fp)
    assert a.dtype == np.uint8 and a.shape == frames.shape
    assert a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(viz.overlay(frames, vol, alpha=0.0), frames)
    full = viz.overlay(frames, viz.to_frames(vol, (4, 16, 16), fp), alpha=1.0, cmap="viridis")
    lut = viz.colormap("viridis")
    assert {tuple(c) for c in full.reshape(-1, 3)} <= {tuple(c) for c in lut}
    # the hottest pixel gets the top colour of the map, the coldest the bottom one
    hot = np.unravel_index(np.argmax(viz.to_frames(vol, (4, 16, 16), fp)), (4, 16, 16))
    assert tuple(full[hot]) == tuple(lut[-1])


def test_frame_normalisation_stretches_each_frame():
    vol = np.stack([np.full((4, 4), 0.1), np.full((4, 4), 0.9)]).astype(np.float32)
    vol[0, 0, 0], vol[1, 0, 0] = 0.0, 1.0
    clip_norm = viz.normalize(vol, "clip")
    frame_norm = viz.normalize(vol, "frame")
    assert clip_norm[0].max() == pytest.approx(0.1)
    assert frame_norm[0].max() == pytest.approx(1.0) and frame_norm[1].min() == pytest.approx(0.0)
    np.testing.assert_array_equal(viz.normalize(np.ones((2, 3, 3)), "clip"), 0.0)


def test_strip_layout_and_labels():
    frames, vol = _clip()
    rows = [viz.overlay(frames, vol), frames]
    img = viz.strip(rows, labels=["stage 1", "input"], max_frames=3, gap=2, label_width=40)
    assert img.dtype == np.uint8 and img.shape == (16 * 2 + 2, 40 + 3 * 16 + 2 * 2, 3)
    np.testing.assert_array_equal(img[18:34, 40:56], frames[0])
    assert (img[:, :40] < 255).any()  # the labels were drawn
    assert (
        img.tobytes()
        == viz.strip(rows, labels=["stage 1", "input"], max_frames=3, gap=2, label_width=40).tobytes()
    )


def test_strip_wraps_long_labels_instead_of_cutting_them():
    rows = [np.zeros((2, 96, 96, 3), np.uint8) + 255]
    short = viz.strip(rows, labels=["Attention"], max_frames=1)
    long = viz.strip(rows, labels=["Attention rollout through pooling"], max_frames=1)

    def inked_rows(img: np.ndarray) -> np.ndarray:
        return np.flatnonzero((img[:, :96] < 128).any(axis=(1, 2)))

    one, wrapped = inked_rows(short), inked_rows(long)
    assert np.ptp(one) < 12 < np.ptp(wrapped)  # one line vs more than one line of the default font
    assert (long[:, :96] < 128).sum() > 2.5 * (short[:, :96] < 128).sum()  # every word is drawn
    assert wrapped.min() < one.min() and wrapped.max() > one.max()  # centred on the row


def test_viz_import_loads_no_gradio_matplotlib_plotly_or_captum():
    code = (
        "import sys, viz\n"
        "bad = [m for m in ('gradio', 'matplotlib', 'plotly', 'captum') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_uncovered_pixels_get_the_volume_minimum():
    # kernel 3 < stride 4: every 4th pixel column/row is covered by no token
    fp = Footprint((1, 4, 4), (1, 3, 3))
    vol = np.linspace(0.5, 1.0, 16, dtype=np.float32).reshape(1, 4, 4)
    frames = viz.to_frames(vol, (1, 16, 16), footprint=fp)
    np.testing.assert_allclose(frames[0, 3::4, :], 0.5)
    np.testing.assert_allclose(frames[0, :3, :3], 0.5)
    np.testing.assert_allclose(frames[0, 12:15, 12:15], 1.0)
    assert frames.min() == pytest.approx(0.5)  # no 0 stretches the colour scale


def test_contrast_scale_keeps_one_hot_value_from_washing_out_the_map_and_the_bar_says_its_colours():
    rng = np.random.default_rng(0)
    vol = rng.uniform(0.0, 1.0, size=(4, 8, 8)).astype(np.float32)
    vol[0, 0, 0] = 100.0  # one hot token (e.g. a sink)
    lo, hi = viz.value_range(vol, "contrast")
    assert lo >= 0.0 and hi < 2.0, "the scale ends at the 99.5th percentile, not at the one hot value"
    clip = viz.normalize(vol, "clip")
    contrast = viz.normalize(vol, "contrast")
    assert contrast.min() == 0.0 and contrast.max() == 1.0 and contrast[0, 0, 0] == 1.0
    assert np.median(contrast) > 10 * np.median(clip), "the rest of the map is readable"
    assert viz.value_range(vol, "clip") == (float(vol.min()), 100.0)
    np.testing.assert_array_equal(viz.normalize(np.full((2, 3, 3), 5.0), "contrast"), 0.0)
    stops = viz.colorbar("inferno", 5)
    lut = viz.colormap("inferno")
    assert stops[0] == "#{:02x}{:02x}{:02x}".format(*lut[0]) and stops[-1] == "#{:02x}{:02x}{:02x}".format(
        *lut[255]
    )
    assert len(stops) == 5 and all(len(s) == 7 for s in stops)
    assert [s[-2:] for s in viz.colorbar("gray", 3, alpha=1.0)] == ["00", "b4", "ff"], (
        "opacity α·√v as the overlay"
    )
    with pytest.raises(ValueError):
        viz.value_range(vol, "loud")
