"""Which models a comparison starts with, and how models are offered: policy as data plus small functions.

*Model sets* (:data:`MODEL_SETS`): **Kinetics-400** — one real pretrained model per family, downloaded on
first use —, **Motion (SSv2)** — MViTv2-S trained on Kinetics-400 beside the same architecture trained on
Something-Something v2 — and **SynthMotion** — the small models trained here, shipped in the repository, one
per family (:func:`default_models`). :func:`default_set` picks Kinetics-400 when every one of its models can be had now
(cached, or downloadable: network and no offline setting), SynthMotion otherwise. Every registered model is
offered (:func:`model_choices`), cached or not: its label says whether it is shipped, cached, what it downloads
on first use, or why it is unavailable. Nothing outside the registry names a family: a new family is picked
up by registering it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import Executor

import mvt
from mvt.checkpoints import is_source
from mvt.prefetch import weights_status

from ..core.request import MAX_MODELS
from ..explain.methods import choices as method_choices
from ..render.timeline import markdown_text

FAMILY_ORDER = ("mvit", "mmvit", "vivit", "hvt")
"""The order families appear in (others follow, by name)."""

TAG_PREFERENCE = ("synth", "k400", "k400init", "in1k")
"""Trained weights first, the SynthMotion demo weights before the large public checkpoints (they run in
well under a second on a CPU and were trained on the examples' kind of clip)."""

FALLBACK = ("untrained", "synthmotion")
"""(tag, label set) of the fallback: the untrained small config."""

KINETICS = "Kinetics-400"
MOTION = "Motion (SSv2)"
SYNTHMOTION = "SynthMotion"
CUSTOM = "custom"
SET_NAMES = (KINETICS, MOTION, SYNTHMOTION, CUSTOM)
"""The choices of the app's *model set* control; ``custom`` is any other selection."""

KINETICS_SET = ("mvit_v2_s.k400", "mmvit_s.k400init", "vivit_b_16x2.k400", "hvt_s_1.in1k")
"""One real pretrained model per family: MViT v2-S (torchvision), MMViT with MViT v2-S towers (predicts as MViT
v2-S until it is fine-tuned), ViViT-B (the hub's google/vivit-b-16x2-kinetics400) and HVT-S-1 (an ImageNet
model, run per frame)."""

MOTION_SET = ("mvit_v2_s.k400", "mvit_v2_s.ssv2")
"""One architecture (MViTv2-S) trained on Kinetics-400, where the scene often gives the class away, and on
Something-Something v2, where only the motion does (PySlowFast's release): where does each look on one clip?"""

MODEL_SETS = {KINETICS: KINETICS_SET, MOTION: MOTION_SET}
"""The fixed model sets by name (SynthMotion's follows what is shipped; ``custom`` has none of its own)."""


def _families(names: list[str]) -> list[str]:
    found = {mvt.get_spec(n).family for n in names}
    known = [f for f in FAMILY_ORDER if f in found]
    return known + sorted(found - set(known))


def default_models(available: list[str] | None = None, max_models: int = MAX_MODELS) -> list[str]:
    """One model per family from ``available`` (default: every model whose weights load offline): the
    SynthMotion set."""
    names = mvt.list_models(available_only=True) if available is None else list(available)
    names = [n for n in names if mvt.get_spec(n).checkpoint is None]  # never a user's checkpoint
    picked: list[str] = []
    for family in _families(names):
        fam = [n for n in names if mvt.get_spec(n).family == family]
        hit = next((n for tag in TAG_PREFERENCE for n in fam if n.endswith("." + tag)), None)
        if hit is None:
            tag, label_set = FALLBACK
            hit = next(
                (n for n in fam if n.endswith("." + tag) and mvt.get_spec(n).label_set == label_set), None
            )
        if hit is not None:
            picked.append(hit)
    return picked[:max_models]


def set_models(name: str) -> list[str]:
    """The models of the set called ``name`` (``custom`` has none of its own: an empty list)."""
    if name in MODEL_SETS:
        known = set(mvt.list_models())
        return [n for n in MODEL_SETS[name] if n in known][:MAX_MODELS]
    if name == SYNTHMOTION:
        return default_models()
    if name == CUSTOM:
        return []
    raise ValueError(f"unknown model set {name!r}; known: {SET_NAMES}")


def set_of(models: list[str] | None) -> str:
    """The set whose models are exactly ``models`` (in any order), else ``custom``."""
    chosen = sorted(models or [])
    for name in (*MODEL_SETS, SYNTHMOTION):
        if chosen and chosen == sorted(set_models(name)):
            return name
    return CUSTOM


def default_set(*, probe: bool = True) -> str:
    """Kinetics-400 when all its models are cached or can be downloaded now, else SynthMotion.

    ``probe`` asks the network (a TCP connect per host, answers reused for a minute); without it only the
    caches and the offline settings decide."""
    names = set_models(KINETICS)
    if len(names) == len(KINETICS_SET) and all(weights_status(n, probe=probe).available for n in names):
        return KINETICS
    return SYNTHMOTION


def status_text(name: str, *, probe: bool = True) -> str:
    """How a model's weights stand, in a few words: ``shipped``, ``cached``, ``downloads 132 MB on first use``,
    ``unavailable: not cached and MVT_OFFLINE is set``; empty for untrained models (their description says so)."""
    kind = mvt.get_spec(name).weights.kind
    if kind == "none":
        return ""
    if kind == "file":
        return "shipped"
    return weights_status(name, probe=probe).describe()


def model_label(name: str, status: str | None = None) -> str:
    """How a model is offered: ``name — status — what its weights are — their licence and data terms`` (the name
    first, so a short chip still says which model it is)."""
    spec = mvt.get_spec(name)
    parts = [name, status, spec.description, spec.weights.licence]
    return " — ".join(p for p in parts if p)


def _order(names: list[str]) -> list[str]:
    """The Kinetics-400 set, then the SynthMotion set, then other trained models, then untrained ones."""
    first = [n for n in set_models(KINETICS) + set_models(SYNTHMOTION) if n in names]
    trained = [n for n in names if n not in first and mvt.get_spec(n).trained]
    rest = [n for n in names if n not in first and n not in trained]
    return first + trained + rest


def model_choices(
    *, probe: bool = False, pool: Executor | None = None, mine: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """``(label, name)`` of every registered model, cached or not (see :func:`model_label`), and of the users'
    checkpoints only those in ``mine`` (a session's own, first). ``probe`` asks the network whether
    downloads would work and how large they are (answers are cached; on ``pool``'s threads in parallel, e.g.
    the service's ``threads.pool("probe", 8)``), so that an unreachable host shows as unavailable instead of
    downloadable."""
    listed = mvt.list_models()
    own = [n for n in mine if n in listed]
    names = own + _order([n for n in listed if mvt.get_spec(n).checkpoint is None])
    ask = pool.map if pool is not None else map
    statuses = list(ask(lambda n: status_text(n, probe=probe), names))
    return [(model_label(n, s), n) for n, s in zip(names, statuses)]


def grouped(reasons: dict[str, str]) -> list[tuple[str, str]]:
    """``{model: reason}`` as ``(names, reason)`` with the models that share a reason named together
    (``"a, b and c"``), in the order they first appear."""
    by_reason: dict[str, list[str]] = {}
    for name, why in reasons.items():
        by_reason.setdefault(why, []).append(name)
    out = []
    for why, names in by_reason.items():
        joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        out.append((joined, why))
    return out


def availability(names: list[str] | None, *, probe: bool = True) -> list[str]:
    """A sentence for each chosen model whose weights are not on disk: what Compare will download, or why it
    cannot run (offline; models with the same reason in one sentence), so that picking one says so at once
    instead of stalling later. Markdown: what comes from outside (a typed name, an error's text) is escaped."""
    notes, blocked = [], {}
    for n in names or []:
        if is_source(n):  # never looked up here: it would read or fetch what it names
            notes.append(markdown_text(f"{n}: add a checkpoint of your own with “Add a model”."))
            continue
        try:
            spec = mvt.get_spec(n)
        except KeyError as e:
            notes.append(markdown_text(str(e.args[0] if e.args else e)))  # a name anyone may type
            continue
        if spec.weights.kind not in ("url", "hf"):
            continue
        st = weights_status(n, probe=probe)
        if st.state == "downloadable":
            notes.append(f"{n}: Compare {st.describe()} ({spec.weights.display_name}).")
        elif st.state == "unavailable":
            blocked[markdown_text(n)] = markdown_text(st.reason)
    for who, why in grouped(blocked):
        many = " and " in who
        notes.append(
            f"{who} cannot run here: {'their' if many else 'its'} weights are {why}. Pick the SynthMotion set, "
            f"or run `python -m mvt download {who.replace(',', '').replace(' and ', ' ')}` on a machine with "
            "internet and copy the cache over."
        )
    return notes


def set_status(name: str, *, probe: bool = True) -> str:
    """How a model set stands here, in a few words: ``ready`` (every weight on disk), ``downloads 1.1 GB on
    first use`` (with how many sizes are unknown until asked), or ``unavailable here: <why>``."""
    from mvt.weights.source import format_size

    names = [n for n in set_models(name) if mvt.get_spec(n).weights.kind in ("url", "hf")]
    states = [weights_status(n, probe=probe) for n in names]
    if blocked := [s for s in states if s.state == "unavailable"]:
        return f"unavailable here: its weights are {blocked[0].reason}"
    todo = [s for s in states if s.state == "downloadable"]
    if not todo:
        return "ready"
    known = sum(s.size for s in todo if s.size is not None)
    unknown = sum(s.size is None for s in todo)
    if not known:
        return "downloads its weights on first use (size unknown)"
    more = f" + {unknown} file{'s' if unknown > 1 else ''} of unknown size" if unknown else ""
    return f"downloads {format_size(known)}{more} on first use"


def unavailable(names: list[str], *, probe: bool = True) -> dict[str, str]:
    """The chosen models that cannot run here, each with why (weights neither on disk nor downloadable)."""
    out = {}
    for n in names:
        try:
            spec = mvt.get_spec(n) if not is_source(n) else None
        except KeyError:
            continue
        if spec is None:
            continue
        if (
            spec.weights.kind in ("url", "hf")
            and (st := weights_status(n, probe=probe)).state == "unavailable"
        ):
            out[n] = st.reason
    return out


def needs_weights(name: str) -> bool:
    """Whether ``name``'s weights are still to be downloaded (not on disk; the network is not asked)."""
    if is_source(name):
        return False
    try:
        kind = mvt.get_spec(name).weights.kind
    except KeyError:
        return False
    return kind in ("url", "hf") and weights_status(name, probe=False).state != "cached"


def models_field() -> dict:
    """The models picker's settings: every model labelled with how its weights stand, the SynthMotion set
    chosen, at most :data:`MAX_MODELS`."""
    return {
        "choices": model_choices(),
        "value": set_models(SYNTHMOTION),
        "multiselect": True,
        "max_choices": MAX_MODELS,
        "allow_custom_value": True,
        "label": f"Models (up to {MAX_MODELS})",
        "info": "Each says what its weights are: shipped, cached, or what it downloads.",
    }


def take_suggested_js() -> str:
    """The browser's side of the page load (a JS function ``(suggested, set, models) -> set``): the suggested
    set is taken only while the picker still holds what the page opened with (the SynthMotion set), so a
    person who chose models, a set or added a checkpoint before the network probe answered keeps them."""
    first = json.dumps(sorted(set_models(SYNTHMOTION)), separators=(",", ":"))  # as JSON.stringify writes it
    return (
        f"(suggested, set, models) => (suggested && set === {json.dumps(SYNTHMOTION)} && "
        f"JSON.stringify([...(models || [])].sort()) === {json.dumps(first)}) ? suggested : set"
    )


def also_field() -> dict:
    """The "also compute" picker's settings: the methods beyond the shown one (rollout chosen)."""
    return {
        "choices": method_choices(("rollout", "gradient", "captum")),
        "value": ["rollout"],
        "label": "Also compute (captum methods take longer)",
    }
