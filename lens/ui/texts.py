"""The page's fixed words (headings, explanations beside controls), kept out of ``app.py``'s layout."""

INTRO = """# mvt-lens
Where do video transformers look? Compare MViT, MMViT, ViViT and HVT on one clip, frame by frame."""
FAITHFULNESS = """Which explanation is right? Deletion removes the most relevant token cells first (lower area = more
faithful); insertion adds them to a clip imputed from nothing (higher = more faithful). `random` and `center`
are baselines every method should beat. Each row names the class it explains; `(shown)` marks the method its
panel shows."""
FAITHFULNESS_TABLE = [
    "model",
    "class explained",
    "method",
    "deletion AUC (lower better)",
    "insertion AUC (higher better)",
]
INT8 = "int8 linear layers: faster on a CPU, approximate (not the models as trained; no gradient methods)"
SINKS = "keys that take attention whatever the clip shows"
