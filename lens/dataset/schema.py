"""Every field of a dataset run, defined once: the columns of a row (``results.parquet``, :data:`COLUMNS`), the
scores of each method in a row (:data:`SCORES`), and the numbers of a model's summary (:data:`SUMMARY`,
timings included: :data:`TIMINGS` says which row columns each sums). ``summary.json``, ``summary.html`` and
``python -m mvt evaluate`` all read them from here.

pyarrow is imported only when a table is built (it comes with ``requirements-scale.txt``); the rows
themselves are plain dicts (:mod:`lens.dataset.rows`), so ``evaluate`` runs without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    """One number: how a table heads it, what it means, and whether it is a rate (0/1 per clip: Wilson's
    interval) or a mean (the normal interval)."""

    label: str
    meaning: str
    rate: bool = False


SCORES: dict[str, Field] = {
    "pointing_game": Field(
        "PG pixel", "the map's maximum, painted on the clip, lies on the actor", rate=True
    ),
    "token_pointing_game": Field(
        "PG token", "the cell of the map's maximum token touches the actor", rate=True
    ),
    "ceiling_token": Field(
        "ceiling", "token pointing game of the best map on the same token grid", rate=True
    ),
    "ceiling_pixel": Field("ceiling px", "pixel pointing game of the best map on the same grid", rate=True),
    "chance": Field("chance", "token pointing game of a random token"),
    "deletion_auc": Field(
        "del AUC", "area under the deletion curve, most relevant cells first (lower: faithful)"
    ),
    "insertion_auc": Field("ins AUC", "area under the insertion curve (higher: more faithful)"),
    "flow_correlation": Field("flow ρ", "Spearman ρ with token flow (signed relevance)"),
    "flow_correlation_abs": Field("|flow| ρ", "Spearman ρ with the magnitude of token flow"),
    "sink_pointing_game": Field(
        "PG pixel, no sinks", "pixel pointing game with sink keys left out", rate=True
    ),
    "sink_token_pointing_game": Field(
        "PG token, no sinks", "token pointing game with sinks left out", rate=True
    ),
    "seconds": Field("s/clip", "seconds the method took on the clip"),
}
"""The fields of each entry of a row's ``scores`` (besides ``method``), per method; null where not computed."""

RANDOMISED: dict[str, Field] = {
    "pointing_game": SCORES["pointing_game"],
    "token_pointing_game": SCORES["token_pointing_game"],
    "deletion_auc": Field(
        "del AUC", "deletion AUC, scored by the randomised model's probability of the same class"
    ),
    "insertion_auc": Field("ins AUC", "insertion AUC, scored by the randomised model"),
    "similarity": Field("ρ trained", "Spearman ρ of the randomised model's map with the trained model's"),
}
"""The fields of each entry of a row's ``randomised`` (besides ``level`` and ``method``): the model-
randomisation sanity check (:mod:`lens.explain.randomise`); null where not computed."""

TIMINGS: dict[str, tuple[str, ...]] = {
    "seconds_per_clip": ("seconds_forward", "seconds_explain"),
    "seconds_scores_per_clip": ("seconds_scores",),
    "seconds_decode_per_clip": ("seconds_decode",),
    "seconds_randomised_per_clip": ("seconds_randomised",),
}
"""Each timing of a summary: the row columns it adds up per clip (its mean over the clips is the number)."""

SUMMARY: dict[str, Field] = {
    "clips": Field("clips", "rows of the model (clips analysed)"),
    "errors": Field("errors", "rows that hold an error instead of numbers"),
    "accuracy": Field("top-1", "prediction == label, over the labelled clips", rate=True),
    "shuffled_accuracy": Field(
        "frames shuffled", "top-1 with the frames in a seeded shuffled order", rate=True
    ),
    "seconds_per_clip": Field(
        "seconds / clip", "forward with attention + explanation methods: what a request costs"
    ),
    "seconds_scores_per_clip": Field("scoring s / clip", "statistics, pointing games, deletion / insertion"),
    "seconds_decode_per_clip": Field("decode s / clip", "decoding the clip for every sampling"),
    "seconds_randomised_per_clip": Field(
        "randomised s / clip", "the model-randomisation check: every method again per level, with scores"
    ),
}
"""A model's numbers in ``summary.json`` besides ``stages``, ``methods`` (:data:`SCORES` per method), the
deletion check and ``sinks``."""

COLUMNS: dict[str, tuple[str, str]] = {
    "index": ("int64", "position of the clip in the source listing (rows are sorted by it, then model)"),
    "clip_id": ("string", "the clip: its absolute path, or synth:SEED:INDEX"),
    "path": ("string", "the file read (null for SynthMotion)"),
    "sha256": ("string", "SHA-256 of the file's bytes (null for SynthMotion or when unreadable)"),
    "start_s": ("float64", "start time asked for, seconds (null: the model's own window)"),
    "model": ("string", "model name, arch.tag"),
    "label_name": ("string", "the true label as the source gives it (null: none)"),
    "label": ("int32", "that label as this model's class index (null: none, or not one of its classes)"),
    "error": ("string", "why the clip or the model failed (null: the row is a result)"),
    "pred": ("int32", "predicted class index"),
    "pred_name": ("string", "predicted class name"),
    "topk_classes": ("list<int32>", "top-k class indices, most probable first"),
    "topk_probs": ("list<float64>", "their softmax probabilities"),
    "correct": ("bool", "pred == label (null without a label)"),
    "shuffled_pred": ("int32", "prediction with the frames in a seeded shuffled order (--shuffled)"),
    "target": ("int32", "the class explained and scored (the label where known, else pred; --target)"),
    "stage_entropy": ("list<float64>", "per stage: normalised attention entropy, mean over its maps"),
    "stage_distance_px": ("list<float64>", "per stage: mean attention distance, pixels on the model input"),
    "stage_distance_frames": ("list<float64>", "per stage: mean attention distance, frames"),
    "scores": (
        "list<struct<method: string, " + ", ".join(f"{k}: float64" for k in SCORES) + ">>",
        "per method (per-stage methods at their last stage) and baseline (random, center; oracle with a "
        "mask): pointing game at pixel and token resolution, the ceilings of its token grid (the best "
        "possible map) and a random token's chance (null without a mask); deletion and insertion AUC (null "
        "unless scored); Spearman ρ with token flow, signed and of its magnitude (rollout, grad_rollout, "
        "attention; null without token_flow); pointing games with sink keys left out (attention, rollout; "
        "null without sinks); seconds the method took",
    ),
    "randomised": (
        "list<struct<level: string, method: string, " + ", ".join(f"{k}: float64" for k in RANDOMISED) + ">>",
        "the model-randomisation sanity check (--randomise): per level (top_block, top_half, whole) and "
        "explanation method, the pointing games (with a mask), deletion / insertion AUC (scored clips) and "
        "Spearman ρ with the trained map, of the same method on the model with those weights re-drawn",
    ),
    "sinks": (
        "list<struct<map_index: int32, stage: int32, block: int32, view: int32, key: int32, "
        "cell: list<int32>, rate: float64, share: float64, uniform: float64, padded: bool>>",
        "the model's sink keys (mvt.sinks; probed once per model with --sinks, empty otherwise)",
    ),
    "seconds_decode": ("float64", "decode seconds (the clip, all samplings; shared by its rows)"),
    "seconds_forward": ("float64", "forward with attention (and the shuffled forward)"),
    "seconds_explain": ("float64", "explanation methods"),
    "seconds_scores": ("float64", "attention statistics, pointing game, deletion / insertion"),
    "seconds_randomised": ("float64", "the model-randomisation check (null without --randomise)"),
    "worker": ("string", "host:pid of the process that computed the row"),
    "run": ("string", "id of the run (invocation) that wrote the row"),
}
"""Column → (Arrow type, meaning)."""


def _type(text: str):
    import pyarrow as pa

    simple = {
        "int64": pa.int64(),
        "int32": pa.int32(),
        "float64": pa.float64(),
        "string": pa.string(),
        "bool": pa.bool_(),
    }
    if text in simple:
        return simple[text]
    if text.startswith("list<struct<"):
        fields = text[len("list<struct<") : -2].split(", ")
        return pa.list_(pa.struct([pa.field(f.split(": ")[0], _type(f.split(": ")[1])) for f in fields]))
    if text.startswith("list<"):
        return pa.list_(_type(text[5:-1]))
    raise ValueError(f"unknown column type {text!r}")


def schema():
    """The :class:`pyarrow.Schema` of :data:`COLUMNS`."""
    import pyarrow as pa

    return pa.schema([pa.field(name, _type(t)) for name, (t, _) in COLUMNS.items()])


def to_table(rows: Iterable[Mapping[str, Any]]):
    """Rows (dicts; missing columns are null, extra keys ignored) as a table with :func:`schema`."""
    import pyarrow as pa

    names = list(COLUMNS)
    return pa.Table.from_pylist([{k: r.get(k) for k in names} for r in rows], schema=schema())


def markdown() -> str:
    """The schema as a markdown table (README's "Whole datasets" section shows it)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | `{t}` | {d} |" for n, (t, d) in COLUMNS.items()]
    return "\n".join(lines)
