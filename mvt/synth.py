"""SynthMotion: procedural action clips whose class is a motion, with the actor's per-frame mask.

One *actor* (a striped shape) moves among static *distractors* drawn from the same shape/colour/size
distribution, on a textured background with per-frame sensor noise. The class is the actor's motion:
translation (left/right/up/down), rotation (cw/ccw: a rigid turn about a pivot outside the actor, so the
actor swings along an arc while it turns) or scaling (grow/shrink). What a single frame shows (shape, colour,
stripes, position, size, orientation) has nearly the same distribution for every class:

* a clip's motion is centred on the middle frame, so the pooled positions of ``move_left`` and
  ``move_right`` (and the pooled sizes of ``grow`` and ``shrink``) are mirror images of each other;
* classes that do not translate place the actor where a translating actor would be at a random frame,
  and classes that do not scale give it the size a scaling actor would have at a random frame, so the
  per-frame position and size distributions match across classes (rotating actors swing about a pivot that
  is kept far enough from the border, so their positions are somewhat less spread);
* orientation is uniform and independent of the motion; the actor has no motion blur or trail.

So only the change over time tells the class, and the masks say exactly where that evidence is.

Clips are deterministic per ``(seed, index)``: clip ``i`` of ``generate(n, seed, start=s)`` is the same
array for every ``n`` and ``s`` with ``s <= i < s + n``. Labels are balanced within each block of
``len(CLASSES)`` consecutive indices (a seeded permutation per block).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES: tuple[str, ...] = (
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "rotate_cw",
    "rotate_ccw",
    "grow",
    "shrink",
)

# Unit direction (dx, dy) in image coordinates (y points down) of each translation class.
_DIRECTIONS: dict[str, tuple[float, float]] = {
    "move_left": (-1.0, 0.0),
    "move_right": (1.0, 0.0),
    "move_up": (0.0, -1.0),
    "move_down": (0.0, 1.0),
}
_SHAPES = ("ellipse", "rectangle", "triangle", "cross", "diamond", "notched_ring")


@dataclass(frozen=True)
class SynthConfig:
    """Ranges of the generator's random parameters. Lengths are fractions of the frame size."""

    actor_radius: tuple[float, float] = (0.13, 0.17)
    """Half-size of the actor (and distractors) at the middle frame."""
    travel: tuple[float, float] = (0.3, 0.4)
    """Distance a translating actor covers over the clip."""
    turn_degrees: tuple[float, float] = (120.0, 180.0)
    """Angle a rotating actor turns over the clip (below 45 degrees per frame at 16 frames)."""
    pivot_radii: tuple[float, float] = (0.8, 1.2)
    """Distance from a rotating actor's centre to its pivot, in actor radii."""
    scale_factor: tuple[float, float] = (2.2, 2.6)
    """Size ratio last/first frame of a growing actor (first/last for shrinking)."""
    distractors: tuple[int, int] = (1, 2)
    """Inclusive range of the number of static distractors."""
    stripe_cycles: tuple[float, float] = (1.0, 1.8)
    """Stripe frequency inside a shape, in cycles per actor radius."""
    texture_amplitude: float = 35.0
    """Amplitude (grey levels) of the static low-frequency background texture."""
    grain: float = 8.0
    """Standard deviation of the static fine-grain background texture."""
    frame_noise: float = 5.0
    """Standard deviation of the per-frame (temporal) pixel noise."""


DEFAULT_CONFIG = SynthConfig()
EASY_CONFIG = SynthConfig(distractors=(0, 0), texture_amplitude=0.0, grain=0.0, frame_noise=2.0)
"""A plain SynthMotion (for a training curriculum): same motions and actors, no distractors, flat background."""


@dataclass(frozen=True)
class SynthBatch:
    """A batch of SynthMotion clips with labels and the actor's ground-truth masks."""

    clips: np.ndarray
    """uint8 ``(N, T, H, W, 3)``."""
    labels: np.ndarray
    """int64 ``(N,)``, indices into ``classes``."""
    masks: np.ndarray
    """bool ``(N, T, H, W)``: the actor's pixels in each frame (the actor is always on top)."""
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class _Look:
    """How one shape looks: everything except where it is, its size and its angle."""

    shape: int
    colour: np.ndarray  # (3,) float32, main colour
    stripe_colour: np.ndarray  # (3,) float32
    stripe_angle: float  # radians, in the shape's own frame
    stripe_cycles: float
    stripe_phase: float


def label_for(index: int, seed: int) -> int:
    """The label of clip ``index`` of stream ``seed`` (balanced within each block of ``len(CLASSES)``)."""
    k = len(CLASSES)
    block, pos = divmod(int(index), k)
    perm = np.random.default_rng([int(seed), 1, block]).permutation(k)
    return int(perm[pos])


def generate(
    n: int,
    seed: int,
    *,
    frames: int = 16,
    size: int = 112,
    start: int = 0,
    labels: Sequence[int] | None = None,
    config: SynthConfig = DEFAULT_CONFIG,
) -> SynthBatch:
    """Generate clips ``start .. start + n - 1`` of the SynthMotion stream ``seed``.

    ``labels`` forces the class of each clip (the scene is still drawn from ``(seed, index)``).
    """
    if n < 0 or frames < 2 or size < 32:
        raise ValueError(f"need n >= 0, frames >= 2 and size >= 32; got n={n}, frames={frames}, size={size}")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries for {n} clips")
    clips = np.empty((n, frames, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, frames, size, size), dtype=bool)
    out_labels = np.empty((n,), dtype=np.int64)
    grid = _pixel_grid(size)
    for j in range(n):
        index = start + j
        label = label_for(index, seed) if labels is None else int(labels[j])
        if not 0 <= label < len(CLASSES):
            raise ValueError(f"label {label} out of range for {len(CLASSES)} classes")
        rng = np.random.default_rng([int(seed), 0, index])
        clips[j], masks[j] = _render_clip(rng, CLASSES[label], frames, size, grid, config)
        out_labels[j] = label
    return SynthBatch(clips=clips, labels=out_labels, masks=masks, classes=CLASSES)


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    return coords[None, :], coords[:, None]  # x (1, W), y (H, 1)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _random_look(rng: np.random.Generator, config: SynthConfig) -> _Look:
    return _Look(
        shape=int(rng.integers(len(_SHAPES))),
        colour=rng.uniform(20.0, 255.0, size=3).astype(np.float32),
        stripe_colour=rng.uniform(0.0, 235.0, size=3).astype(np.float32),
        stripe_angle=float(rng.uniform(0.0, np.pi)),
        stripe_cycles=_uniform(rng, config.stripe_cycles),
        stripe_phase=float(rng.uniform(0.0, 1.0)),
    )


def _shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of ``shape`` in its own unit coordinates (extent about 1)."""
    au, av = np.abs(u), np.abs(v)
    name = _SHAPES[shape]
    if name == "ellipse":
        return u * u + (v * v) * (1.0 / 0.36) <= 1.0
    if name == "rectangle":
        return (au <= 1.0) & (av <= 0.55)
    if name == "triangle":  # apex at v = -1, base at v = 0.75
        return (v <= 0.75) & (au * 1.75 <= v + 1.0)
    if name == "cross":  # unequal arms, so a quarter turn is visible from the outline
        return ((au <= 1.0) & (av <= 0.28)) | ((au <= 0.28) & (av <= 0.75))
    if name == "diamond":
        return au + av * (1.0 / 0.65) <= 1.0
    if name == "notched_ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.2) & ~((u > 0) & (av <= 0.3))
    raise AssertionError(name)


def _draw(
    look: _Look,
    x: np.ndarray,
    y: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    radius: np.ndarray,
    angle: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise a shape at per-frame pose ``(cx, cy, radius, angle)`` (each ``(T,)``) on the grid ``x, y``.

    Returns the mask ``(T, H, W)`` and the colour ``(T, H, W, 3)`` (valid inside the mask).
    """
    cx, cy = cx[:, None, None], cy[:, None, None]  # (T, 1, 1)
    c = (np.cos(angle) / radius)[:, None, None].astype(np.float32)
    s = (np.sin(angle) / radius)[:, None, None].astype(np.float32)
    dx, dy = x[None] - cx, y[None] - cy  # (T, 1, W), (T, H, 1)
    u = c * dx + s * dy  # (T, H, W): shape frame, rotated by -angle and scaled to unit size
    v = c * dy - s * dx
    inside = _shape_mask(look.shape, u, v)
    phase = (u * np.cos(look.stripe_angle) + v * np.sin(look.stripe_angle)) * look.stripe_cycles
    stripe = (phase + look.stripe_phase) % 1.0 < 0.5  # (T, H, W)
    colour = np.where(stripe[..., None], look.stripe_colour, look.colour)  # (T, H, W, 3)
    return inside, colour


def _background(rng: np.random.Generator, size: int, config: SynthConfig) -> np.ndarray:
    """Static textured background ``(H, W, 3)`` float32: smooth colour blobs, stripes and grain."""
    base = rng.uniform(60.0, 190.0, size=3).astype(np.float32)
    cells = int(rng.integers(4, 9))
    coarse = rng.uniform(-1.0, 1.0, size=(cells, cells, 3)).astype(np.float32)
    interp = _linear_upsample_matrix(cells, size)  # (size, cells)
    smooth = (interp @ coarse.transpose(2, 0, 1) @ interp.T).transpose(1, 2, 0)  # (H, W, 3) bilinear upsample
    x, y = _pixel_grid(size)
    theta = rng.uniform(0.0, np.pi)
    period = rng.uniform(6.0, 16.0)
    waves = np.sin((x * np.cos(theta) + y * np.sin(theta)) * (2 * np.pi / period))  # (H, W)
    wave_colour = rng.uniform(-1.0, 1.0, size=3).astype(np.float32)
    grain = rng.standard_normal((size, size, 1), dtype=np.float32)
    bg = base + config.texture_amplitude * smooth
    bg += 0.4 * config.texture_amplitude * waves[..., None] * wave_colour
    bg += config.grain * grain
    return bg.astype(np.float32)


def _linear_upsample_matrix(cells: int, size: int) -> np.ndarray:
    """``(size, cells)`` matrix of linear interpolation weights from ``cells`` samples to ``size`` pixels."""
    pos = (np.arange(size, dtype=np.float32) + 0.5) * (cells - 1) / size  # in [0, cells - 1)
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    m = np.zeros((size, cells), dtype=np.float32)
    m[np.arange(size), lo] = 1.0 - frac
    m[np.arange(size), np.minimum(lo + 1, cells - 1)] += frac
    return m


def _render_clip(
    rng: np.random.Generator,
    motion: str,
    frames: int,
    size: int,
    grid: tuple[np.ndarray, np.ndarray],
    config: SynthConfig,
) -> tuple[np.ndarray, np.ndarray]:
    x, y = grid
    # Every random draw happens in the same order for every class, so scenes differ only by the motion.
    frame_pos = (np.arange(frames, dtype=np.float32) - (frames - 1) / 2) / (frames - 1)  # (T,) in [-0.5, 0.5]
    radius_mid = _uniform(rng, config.actor_radius) * size
    factor = _uniform(rng, config.scale_factor)
    travel = _uniform(rng, config.travel) * size
    turn = np.deg2rad(_uniform(rng, config.turn_degrees))
    angle0 = float(rng.uniform(0.0, 2 * np.pi))
    proxy_direction = list(_DIRECTIONS.values())[int(rng.integers(4))]  # for classes that do not translate
    proxy_t = float(frame_pos[int(rng.integers(frames))])  # a random frame, for the same purpose
    proxy_s = float(frame_pos[int(rng.integers(frames))])
    pivot_distance = _uniform(rng, config.pivot_radii) * radius_mid
    pivot_bearing = float(rng.uniform(0.0, 2 * np.pi))  # direction pivot -> actor at the middle frame

    # Pose per frame.
    if motion in ("grow", "shrink"):
        sign = 1.0 if motion == "grow" else -1.0
        radius = radius_mid * factor ** (sign * frame_pos)
    else:
        radius = np.full(frames, radius_mid * factor**proxy_s, dtype=np.float32)
    if motion in ("rotate_cw", "rotate_ccw"):  # y points down, so a growing angle turns clockwise on screen
        sign = 1.0 if motion == "rotate_cw" else -1.0
        angle = angle0 + sign * turn * frame_pos
    else:
        angle = np.full(frames, angle0, dtype=np.float32)
    direction = _DIRECTIONS.get(motion, proxy_direction)
    # Centre of the motion: keep the whole trajectory (at the largest possible size) inside the frame.
    margin = 1.05 * radius_mid * np.sqrt(factor) + 1.0
    travel = min(travel, size - 2 * margin)  # only binds on small frames (below ~80 px)
    offset = travel * (frame_pos if motion in _DIRECTIONS else np.full(frames, proxy_t, dtype=np.float32))
    half_travel = travel / 2
    along = rng.uniform(margin + half_travel, size - margin - half_travel)
    across = rng.uniform(margin, size - margin)
    mid_x, mid_y = (along, across) if direction[0] != 0 else (across, along)
    cx = (mid_x + direction[0] * offset).astype(np.float32)
    cy = (mid_y + direction[1] * offset).astype(np.float32)
    if motion in ("rotate_cw", "rotate_ccw"):  # swing about a pivot: the centre turns with the shape
        low, high = margin + pivot_distance, size - margin - pivot_distance
        px, py = np.clip(cx[0], low, high), np.clip(cy[0], low, high)
        bearing = pivot_bearing + (angle - angle0)  # (T,)
        cx = (px + pivot_distance * np.cos(bearing)).astype(np.float32)
        cy = (py + pivot_distance * np.sin(bearing)).astype(np.float32)

    actor_look = _random_look(rng, config)
    canvas = _background(rng, size, config)  # (H, W, 3)
    for _ in range(int(rng.integers(config.distractors[0], config.distractors[1] + 1))):
        look = _random_look(rng, config)
        r = np.float32(_uniform(rng, config.actor_radius) * size * factor ** float(rng.uniform(-0.5, 0.5)))
        m = 1.05 * r + 1.0
        pose = [np.array([v], dtype=np.float32) for v in rng.uniform(m, size - m, size=2)]
        inside, colour = _draw(
            look, x, y, pose[0], pose[1], np.array([r]), np.array([rng.uniform(0, 2 * np.pi)])
        )
        canvas = np.where(inside[0, ..., None], colour[0], canvas)

    mask, colour = _draw(actor_look, x, y, cx, cy, radius.astype(np.float32), angle.astype(np.float32))
    video = np.where(mask[..., None], colour, canvas[None])  # (T, H, W, 3)
    video += rng.standard_normal(video.shape, dtype=np.float32) * np.float32(config.frame_noise)
    return np.clip(video, 0.0, 255.0).astype(np.uint8), mask


# ----------------------------------------------------------------------------------------- symmetries

NUM_SYMMETRIES = 16
"""Label-preserving-up-to-relabelling transforms: bit 1 transposes H and W, bit 2 mirrors W, bit 4 mirrors H,
bit 8 plays the clip backwards (applied in that order). The generator's distributions are invariant under all
of them, so they are exact data augmentations once the label is mapped with :func:`symmetry_label`."""

_ROTATION_SIGN = {"rotate_cw": 1, "rotate_ccw": -1}
_SCALE_SIGN = {"grow": 1, "shrink": -1}


def symmetry_label(label: int, op: int) -> int:
    """The class a clip of class ``label`` shows after symmetry ``op`` (see :data:`NUM_SYMMETRIES`)."""
    name = CLASSES[label]
    transpose, mirror_w, mirror_h, backwards = (bool(op & b) for b in (1, 2, 4, 8))
    if name in _DIRECTIONS:
        dx, dy = _DIRECTIONS[name]
        if transpose:
            dx, dy = dy, dx
        dx, dy = -dx if mirror_w else dx, -dy if mirror_h else dy
        table, value = _DIRECTIONS, ((-dx, -dy) if backwards else (dx, dy))
    elif name in _ROTATION_SIGN:  # every reflection and the time reversal flip the sense of rotation
        table, value = (
            _ROTATION_SIGN,
            _ROTATION_SIGN[name] * (-1) ** (transpose + mirror_w + mirror_h + backwards),
        )
    else:
        table, value = _SCALE_SIGN, _SCALE_SIGN[name] * (-1 if backwards else 1)
    return CLASSES.index(next(k for k, v in table.items() if v == value))


def apply_symmetry(video: np.ndarray, op: int) -> np.ndarray:
    """Apply symmetry ``op`` to one clip ``(T, H, W, ...)`` (frames or masks); returns a view."""
    if not 0 <= op < NUM_SYMMETRIES:
        raise ValueError(f"symmetry {op} out of range 0..{NUM_SYMMETRIES - 1}")
    if op & 1:
        video = video.swapaxes(1, 2)  # (T, W, H, ...)
    if op & 2:
        video = video[:, :, ::-1]
    if op & 4:
        video = video[:, ::-1]
    if op & 8:
        video = video[::-1]
    return video


def apply_symmetries(
    clips: np.ndarray, labels: np.ndarray, ops: np.ndarray, masks: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Symmetry ``ops[i]`` on clip ``i`` of ``clips`` ``(N, T, H, W, 3)`` (and on its mask, if ``masks`` is
    given), each label mapped with :func:`symmetry_label`; returns ``(clips, labels, masks)`` as new arrays."""
    clips = np.stack([apply_symmetry(c, int(op)) for c, op in zip(clips, ops)])
    labels = np.array([symmetry_label(int(k), int(op)) for k, op in zip(labels, ops)])
    if masks is not None:
        masks = np.stack([apply_symmetry(m, int(op)) for m, op in zip(masks, ops)])
    return clips, labels, masks


EXAMPLE_CLASSES = ("move_left", "move_down", "rotate_cw", "rotate_ccw", "grow", "shrink")
EXAMPLE_SEED = 2026


def example_scenes(seed: int = EXAMPLE_SEED) -> dict[str, tuple[SynthBatch, float]]:
    """The app's example clips before upscaling: ``{filename: (batch, fps)}``.

    ``synth_<class>.mp4`` is a batch of one clip (8 fps); ``synth_10s.mp4`` a batch of 16 clips shown one after
    the other (25 fps). Each batch carries the actor's masks: the ground truth of where the motion is.
    """
    wanted = [CLASSES.index(c) for c in EXAMPLE_CLASSES]
    batch = generate(len(wanted), seed, labels=wanted)
    scenes: dict[str, tuple[SynthBatch, float]] = {}
    for i, name in enumerate(EXAMPLE_CLASSES):
        one = SynthBatch(
            batch.clips[i : i + 1], batch.labels[i : i + 1], batch.masks[i : i + 1], batch.classes
        )
        scenes[f"synth_{name}.mp4"] = (one, 8.0)
    order = [label_for(i, seed + 1) for i in range(2 * len(CLASSES))]
    scenes["synth_10s.mp4"] = (generate(len(order), seed + 1, labels=order), 25.0)
    return scenes


def write_examples(
    directory: str | os.PathLike, *, seed: int = EXAMPLE_SEED, upscale: int = 2
) -> dict[str, str]:
    """Write the app's example clips (:func:`example_scenes`) into ``directory`` and return ``{filename: class}``.

    * ``synth_<class>.mp4``: one 16-frame clip per class of :data:`EXAMPLE_CLASSES` (8 fps, H.264), exactly
      what a model trained on 16×112² clips sees, upscaled ``upscale``× (nearest) so it is viewable;
    * ``synth_10s.mp4``: 16 different scenes of 16 frames each, one after the other, at 25 fps (10.24 s),
      each class twice; the per-segment classes go to ``synth_10s.json``;
    * ``labels.json``: ``{filename: class}`` of the single-motion clips.
    """
    import json

    from .video import write_video

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)

    def big(clip: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(clip, upscale, axis=1), upscale, axis=2)  # (T, H*u, W*u, 3)

    labels: dict[str, str] = {}
    for filename, (batch, fps) in example_scenes(seed).items():
        if filename == "synth_10s.mp4":
            write_video(big(np.concatenate(list(batch.clips))), out / filename, fps, crf=30)
            segments = {"fps": 25, "segment_frames": 16, "classes": [CLASSES[k] for k in batch.labels]}
            (out / "synth_10s.json").write_text(json.dumps(segments, indent=1) + "\n")
        else:
            write_video(big(batch.clips[0]), out / filename, fps, crf=26)
            labels[filename] = CLASSES[int(batch.labels[0])]
    (out / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    return labels
