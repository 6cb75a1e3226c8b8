"""Files that ship inside the package, so that an installed wheel has them: the SynthMotion weights
(``weights/<arch>.synth.safetensors``, registered as ``<arch>.synth``), the example clips with their
metadata (``examples/``) and the evaluation of the shipped models the app quotes (``evaluation.synth.json``).

Paths only (no reads at import). ``pyproject.toml`` lists these files as package data; a test builds the wheel,
installs it into a fresh environment and runs the shipped models and an example from there.
"""

from pathlib import Path

DIR = Path(__file__).resolve().parent
"""This folder, wherever the package is (a checkout or site-packages)."""
WEIGHTS = DIR / "weights"
EXAMPLES = DIR / "examples"
EVALUATION = DIR / "evaluation.synth.json"
