"""SynthMotion generator: determinism, balanced labels, masks that cover the actor, no single-frame cue."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mvt import synth
from mvt.synth import CLASSES, SynthConfig, generate, label_for

QUIET = SynthConfig(frame_noise=0.0)  # no temporal noise: everything that changes is the actor
SMALL = {"frames": 8, "size": 48}


def test_shapes_and_dtypes():
    b = generate(3, 0, **SMALL)
    assert b.clips.shape == (3, 8, 48, 48, 3) and b.clips.dtype == np.uint8
    assert b.masks.shape == (3, 8, 48, 48) and b.masks.dtype == bool
    assert b.labels.shape == (3,) and b.labels.dtype == np.int64
    assert b.classes == CLASSES and len(CLASSES) >= 8 and len(b) == 3


def test_default_size_is_16x112():
    b = generate(1, 0)
    assert b.clips.shape == (1, 16, 112, 112, 3)


def test_deterministic_per_seed_and_independent_of_batching():
    a = generate(5, 7, **SMALL)
    b = generate(5, 7, **SMALL)
    np.testing.assert_array_equal(a.clips, b.clips)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.labels, b.labels)
    part = generate(2, 7, start=2, **SMALL)  # clips 2 and 3 of the same stream
    np.testing.assert_array_equal(part.clips, a.clips[2:4])
    np.testing.assert_array_equal(part.labels, a.labels[2:4])
    assert [label_for(i, 7) for i in range(5)] == a.labels.tolist()


def test_different_seeds_differ():
    a = generate(4, 0, **SMALL)
    b = generate(4, 1, **SMALL)
    assert not np.array_equal(a.clips, b.clips)
    assert not np.array_equal(a.masks, b.masks)


def test_labels_balanced_per_block():
    labels = generate(2 * len(CLASSES), 3, frames=2, size=32).labels
    assert np.bincount(labels, minlength=len(CLASSES)).tolist() == [2] * len(CLASSES)
    blocks = {tuple(label_for(b * len(CLASSES) + i, 3) for i in range(len(CLASSES))) for b in range(4)}
    assert len(blocks) > 1  # ...but not in a fixed order


def test_masks_cover_the_actor_and_only_the_actor():
    b = generate(len(CLASSES), 11, labels=list(range(len(CLASSES))), config=QUIET, **SMALL)
    for clip, mask, label in zip(b.clips, b.masks, b.labels):
        area = mask.sum(axis=(1, 2))
        assert (area > 0).all(), f"{CLASSES[label]}: empty mask in some frame"
        # Outside the actor nothing moves: any two frames agree wherever neither has the actor.
        for t in range(1, clip.shape[0]):
            free = ~mask[0] & ~mask[t]
            np.testing.assert_array_equal(clip[0][free], clip[t][free])
        # Inside the mask only the actor's two colours (body, stripes) appear.
        colours = np.unique(clip[mask], axis=0)
        assert len(colours) <= 2, f"{CLASSES[label]}: {len(colours)} colours under the mask"
        assert not (mask == mask[0]).all(), f"{CLASSES[label]}: the actor does not move"


def test_frame_noise_only_jitters_pixels():
    noisy = generate(3, 5, **SMALL)
    quiet = generate(3, 5, config=QUIET, **SMALL)
    np.testing.assert_array_equal(noisy.masks, quiet.masks)
    diff = noisy.clips.astype(np.float32) - quiet.clips.astype(np.float32)
    assert 2.0 < np.abs(diff).mean() < 10.0
    assert diff.std(axis=1).mean() > 2.0  # it changes from frame to frame


OPPOSITES = [
    ("move_left", "move_right"),
    ("move_up", "move_down"),
    ("rotate_cw", "rotate_ccw"),
    ("grow", "shrink"),
]


@pytest.mark.parametrize("pair", OPPOSITES, ids=lambda p: "-".join(p))
def test_opposite_classes_are_the_same_frames_played_backwards(pair):
    """A class and its opposite show exactly the same frames in reverse order, so no single frame (nor any
    unordered set of frames) can tell them apart: only the order of frames does."""
    a, b = (CLASSES.index(c) for c in pair)
    n = 6
    fwd = generate(n, 21, labels=[a] * n, config=QUIET, **SMALL)
    bwd = generate(n, 21, labels=[b] * n, config=QUIET, **SMALL)
    np.testing.assert_array_equal(fwd.masks, bwd.masks[:, ::-1])
    np.testing.assert_array_equal(fwd.clips, bwd.clips[:, ::-1])


def _frame_stats(masks: np.ndarray, size: int) -> tuple[float, float, float]:
    """Mean actor area and centroid (as fractions of the frame) pooled over clips and frames."""
    area = masks.sum(axis=(2, 3)).astype(np.float64)  # (N, T)
    ys, xs = np.arange(size) + 0.5, np.arange(size) + 0.5
    cy = (masks.sum(axis=3) * ys).sum(axis=2) / area
    cx = (masks.sum(axis=2) * xs).sum(axis=2) / area
    return area.mean() / size**2, cx.mean() / size, cy.mean() / size


def test_per_frame_size_and_position_do_not_depend_on_the_motion_kind():
    """Same scenes, different motion kinds: pooled per-frame actor size and position agree."""
    n, size = 48, 64
    stats = {
        name: _frame_stats(generate(n, 4, frames=8, size=size, labels=[CLASSES.index(name)] * n).masks, size)
        for name in ("move_left", "move_down", "rotate_cw", "grow")
    }
    areas = [s[0] for s in stats.values()]
    assert max(areas) / min(areas) < 1.15, stats
    for s in stats.values():
        assert abs(s[1] - 0.5) < 0.06 and abs(s[2] - 0.5) < 0.06, stats


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        generate(2, 0, labels=[0])
    with pytest.raises(ValueError):
        generate(1, 0, labels=[len(CLASSES)])
    with pytest.raises(ValueError):
        generate(1, 0, frames=1)


def test_shipped_examples_match_the_generator():
    """mvt/assets/examples holds the clips write_examples makes now (regenerate them when the generator changes)."""
    import json

    import mvt
    from mvt import assets
    from mvt.synth import EXAMPLE_CLASSES, EXAMPLE_SEED

    root = assets.EXAMPLES
    labels = json.loads((root / "labels.json").read_text())
    assert sorted(labels.values()) == sorted(EXAMPLE_CLASSES)
    expected = generate(
        len(EXAMPLE_CLASSES), EXAMPLE_SEED, labels=[CLASSES.index(c) for c in EXAMPLE_CLASSES]
    )
    for filename, name in labels.items():
        path = root / filename
        assert path.stat().st_size < 200_000, filename
        clip = mvt.read_clip(path, num_frames=16, stride=1, size=112)
        ref = expected.clips[EXAMPLE_CLASSES.index(name)]
        assert np.abs(clip.frames.astype(np.float32) - ref).mean() < 12.0, filename  # H.264 + resize only
    long = json.loads((root / "synth_10s.json").read_text())
    info = mvt.probe(root / "synth_10s.mp4")
    assert info.num_frames == long["segment_frames"] * len(long["classes"]) and 9.5 <= info.duration_s <= 11
    assert set(long["classes"]) == set(CLASSES)


STEPS = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}


def _motion(mask: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy, area ratio) of the actor between the first and the last frame of one clip's masks (T, H, W)."""
    ys, xs = np.nonzero(mask[0])
    ye, xe = np.nonzero(mask[-1])
    return xe.mean() - xs.mean(), ye.mean() - ys.mean(), len(xe) / len(xs)


@pytest.mark.parametrize("op", range(synth.NUM_SYMMETRIES))
def test_symmetries_map_each_class_to_the_class_the_transformed_clip_shows(op):
    """The label map is a permutation; transformed translations move the way the mapped class says and
    transformed grow/shrink clips change their area the way it says (rotations: the next test)."""
    mapped = [synth.symmetry_label(k, op) for k in range(len(CLASSES))]
    assert sorted(mapped) == list(range(len(CLASSES)))
    batch = generate(len(CLASSES), 5, labels=list(range(len(CLASSES))), config=QUIET, **SMALL)
    for k, mask in enumerate(batch.masks):
        moved = synth.apply_symmetry(mask, op)
        dx, dy, ratio = _motion(moved)
        name = CLASSES[mapped[k]]
        if name in ("move_left", "move_right", "move_up", "move_down"):
            expected = STEPS[name]
            assert np.sign(np.round([dx, dy], 0)).tolist() == list(expected), (op, CLASSES[k], dx, dy)
        elif name in ("grow", "shrink"):
            assert (ratio > 1.3) == (name == "grow") and (ratio < 0.77) == (name == "shrink"), (op, ratio)


@pytest.mark.parametrize("op", range(synth.NUM_SYMMETRIES))
def test_symmetries_flip_rotation_sense_by_parity(op):
    """A rotating actor's signed angular velocity (from the masks' second moments) keeps its sign under the
    op exactly when the mapped label keeps the sense of rotation."""
    cw = CLASSES.index("rotate_cw")
    batch = generate(4, 8, labels=[cw] * 4, config=replace(QUIET, turn_degrees=(40.0, 50.0)), **SMALL)
    for mask in batch.masks:
        moved = synth.apply_symmetry(mask, op)
        turn = _orientation(moved[-1]) - _orientation(moved[0])
        turn = (turn + np.pi / 2) % np.pi - np.pi / 2  # axis orientation is defined modulo pi
        if abs(turn) < 0.1:  # a nearly round shape: its axis says nothing
            continue
        assert (turn > 0) == (CLASSES[synth.symmetry_label(cw, op)] == "rotate_cw"), (op, turn)


def _orientation(mask: np.ndarray) -> float:
    """Angle of the principal axis of a mask (y down, so a positive change is clockwise on screen)."""
    ys, xs = np.nonzero(mask)
    x, y = xs - xs.mean(), ys - ys.mean()
    return 0.5 * np.arctan2(2 * (x * y).mean(), (x * x).mean() - (y * y).mean())


def test_symmetry_rejects_unknown_ops():
    with pytest.raises(ValueError):
        synth.apply_symmetry(np.zeros((2, 4, 4)), 16)


def test_apply_symmetries_maps_each_clip_mask_and_label_by_its_own_op():
    batch = synth.generate(3, 11, frames=4, size=32)
    ops = np.array([0, 9, 6])
    clips, labels, masks = synth.apply_symmetries(batch.clips, batch.labels, ops, batch.masks)
    for i, op in enumerate(ops):
        np.testing.assert_array_equal(clips[i], synth.apply_symmetry(batch.clips[i], int(op)))
        np.testing.assert_array_equal(masks[i], synth.apply_symmetry(batch.masks[i], int(op)))
        assert labels[i] == synth.symmetry_label(int(batch.labels[i]), int(op))
    assert synth.apply_symmetries(batch.clips, batch.labels, ops)[2] is None
