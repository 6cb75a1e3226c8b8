"""A folder of real video files for the dataset tests: SynthMotion clips as mp4 (labels known) and two broken
files with video names (a text file, and a good mp4 cut after 2 kB)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mvt
from mvt import synth


@dataclass(frozen=True)
class ClipFolder:
    root: Path
    good: dict[Path, str]
    """Readable clips and their SynthMotion class."""
    broken: list[Path]


def write_clip_folder(root: Path, n_good: int = 4, seed: int = 11) -> ClipFolder:
    """``n_good`` 16-frame 112² SynthMotion mp4s (one in a subfolder), a text file called ``.mp4`` and a
    truncated mp4, plus a file that is not a video by name (ignored by folder sources)."""
    root.mkdir(parents=True, exist_ok=True)
    batch = synth.generate(n_good, seed)
    good = {}
    for i, (clip, label) in enumerate(zip(batch.clips, batch.labels)):
        folder = root / "sub" if i == n_good - 1 else root
        folder.mkdir(exist_ok=True)
        path = folder / f"clip_{i:02d}.mp4"
        mvt.write_video(clip, path, fps=8)
        good[path] = synth.CLASSES[int(label)]
    text = root / "notes_not_a_video.mp4"
    text.write_text("this is not a video\n")
    cut = root / "truncated.mp4"
    cut.write_bytes(next(iter(good)).read_bytes()[:2048])
    (root / "readme.txt").write_text("not picked up by a folder source\n")
    return ClipFolder(root, good, [text, cut])
