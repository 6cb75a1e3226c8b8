"""``python -m mvt.train``'s flags keep their spelling and meaning: every recipe in ``mvt/assets/weights/README.md``
parses onto the config it always meant, the defaults are the old ones, and a checkpoint's ``config`` metadata
has the same settings under the same names (no training run here)."""

from __future__ import annotations

import json
import re

import pytest

from mvt import assets
from mvt.train import TrainConfig
from mvt.train.cli import build_parser, parse
from mvt.train.config import flat_names
from mvt.train.run import run_metadata

README = assets.WEIGHTS / "README.md"

# The command line as it was written by hand before the parser was generated: flag -> (setting, how the value
# is read). ``None`` settings are not training settings (they are not stored in the config).
OLD_FLAGS: dict[str, tuple[str | None, object]] = {
    "--model": ("arch", str),
    "--minutes": ("minutes", float),
    "--cpu-minutes": ("cpu_minutes", float),
    "--init": ("init", str),
    "--max-minutes": ("max_minutes", float),
    "--curriculum": ("curriculum", float),
    "--steps": ("steps", int),
    "--seed": ("seed", int),
    "--batch-size": ("batch_size", int),
    "--lr": ("lr", float),
    "--weight-decay": ("weight_decay", float),
    "--eval-clips": ("eval_clips", int),
    "--eval-seed": ("eval_seed", int),
    "--warmup-steps": ("warmup_steps", int),
    "--log-every": ("log_every", int),
    "--buffer-clips": ("buffer_clips", int),
    "--fresh-per-step": ("fresh_per_step", int),
    "--no-augment": ("augment", "off"),
    "--warm-start": ("warm_start", str),
    "--motion-init": ("motion_init", "on"),
    "--teacher": ("teacher", str),
    "--hint-weight": ("hint_weight", float),
    "--hint-stage": ("hint_stage", int),
    "--teacher-stage": ("teacher_stage", int),
    "--kd-weight": ("kd_weight", float),
    "--focus-classes": ("focus_classes", "commas"),
    "--focus-share": ("focus_share", float),
    "--mask-weight": ("mask_weight", float),
    "--mask-stage": ("mask_stage", int),
    "--step-class-weight": ("step_class_weight", float),
    "--step-class-stage": ("step_class_stage", int),
    "--trainable": ("trainable", "commas"),
    "--frame-cache": ("frame_cache", int),
    "--eval-every": ("eval_every", int),
    "--threads": (None, int),
    "--out": (None, str),
}

# The old TrainConfig's defaults (the flat settings a checkpoint's metadata records).
OLD_DEFAULTS = {
    "seed": 0,
    "steps": None,
    "minutes": 15.0,
    "cpu_minutes": None,
    "max_minutes": None,
    "curriculum": 0.3,
    "batch_size": 16,
    "lr": 1e-3,
    "min_lr_ratio": 0.01,
    "warmup_steps": 20,
    "weight_decay": 0.05,
    "label_smoothing": 0.1,
    "grad_clip": 1.0,
    "eval_clips": 200,
    "eval_seed": None,
    "log_every": 10,
    "init": None,
    "buffer_clips": 0,
    "fresh_per_step": 4,
    "augment": True,
    "eval_every": 0,
    "eval_every_clips": 96,
    "warm_start": None,
    "motion_init": False,
    "teacher": None,
    "hint_weight": 1.0,
    "hint_stage": 1,
    "teacher_stage": 0,
    "kd_weight": 0.0,
    "focus_classes": (),
    "focus_share": 0.0,
    "mask_weight": 0.0,
    "mask_stage": -1,
    "step_class_weight": 0.0,
    "step_class_stage": 0,
    "trainable": (),
    "frame_cache": 0,
}


def _old_meaning(tokens: list[str]) -> dict[str, object]:
    """The settings a command line set, read with the old parser's rules (independent of the new one)."""
    out: dict[str, object] = {}
    i = 0
    while i < len(tokens):
        name, kind = OLD_FLAGS[tokens[i]]
        if kind in ("on", "off"):
            value, i = kind == "on", i + 1
        else:
            text = tokens[i + 1]
            value = tuple(c for c in text.split(",") if c) if kind == "commas" else kind(text)  # type: ignore[operator]
            i += 2
        if name is not None:
            out[name] = value
    return out


def _readme_recipes() -> tuple[list[list[str]], list[str]]:
    """The README's command lines (``…`` = its common flags; a table row's phases get ``--model`` and, after
    "`--init` that", an ``--init`` file) and the lone flags its prose names."""
    text = README.read_text()
    common = re.search(r"Common flags\s+are written as `…`: `([^`]*)`", text)
    assert common, "the README no longer says what `…` stands for"
    spans = lambda s: [m.replace("…", common.group(1)).split() for m in re.findall(r"`([^`]*--[^`]*)`", s)]  # noqa: E731
    commands, lone = [], []
    for line in text.splitlines():
        row = re.match(r"\| `(\w+)\.synth` \|", line)
        if not row:
            continue
        current, after_init = None, False
        for tokens in spans(line):
            if tokens == ["--init"]:
                after_init = True
                continue
            if tokens[0] == "--model" or after_init or current is None:
                current = [] if tokens[0] == "--model" else ["--model", row.group(1)]
                current += ["--init", "previous.safetensors"] if after_init else []
                commands.append(current)
                after_init = False
            current.extend(tokens)
    prose = text.split("What did not work", 1)[1]
    for tokens in spans(prose):
        (lone.append(tokens[0]) if len(tokens) == 1 else commands.append(["--model", "vivit_t2", *tokens]))
    return commands, lone


COMMANDS, LONE_FLAGS = _readme_recipes()


def test_the_readme_has_the_recipes():
    assert len(COMMANDS) >= 12 and {"--frame-cache", "--teacher", "--mask-weight"} <= set(LONE_FLAGS)
    assert any("--frame-cache" in c for c in COMMANDS) and any("--motion-init" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c)[:60])
def test_every_readme_recipe_maps_onto_the_config_it_always_meant(command):
    cfg, args = parse(command)
    meant = _old_meaning(command)
    flat = cfg.flat()
    for name, value in {**OLD_DEFAULTS, **meant}.items():
        assert flat[name] == value, (name, flat[name], value)
    assert flat["arch"] == meant["arch"]
    assert args.threads == (int(command[command.index("--threads") + 1]) if "--threads" in command else None)


def test_every_old_flag_is_still_spelled_the_same():
    known = {s for a in build_parser()._actions for s in a.option_strings}
    assert set(OLD_FLAGS) <= known, sorted(set(OLD_FLAGS) - known)
    assert set(LONE_FLAGS) <= known
    with pytest.raises(SystemExit):  # --model is still required
        parse(["--steps", "3"])


def test_defaults_and_metadata_names_are_the_old_ones():
    cfg = TrainConfig.from_flat(arch="hvt_t")
    assert flat_names() == ["arch", *sorted(OLD_DEFAULTS, key=list(cfg.flat()).index)]
    assert cfg.flat() == {"arch": "hvt_t", **OLD_DEFAULTS}
    spec = __import__("mvt").get_spec("hvt_t")
    meta = run_metadata(
        cfg, spec, steps=7, scheduled=9, accuracy=0.5, shuffled=0.25, minutes=1.0, cpu_minutes=2.0
    )
    assert json.loads(meta["config"]) == {
        "arch": "hvt_t",
        **{k: list(v) if isinstance(v, tuple) else v for k, v in OLD_DEFAULTS.items()},
        "steps": 7,
        "scheduled_steps": 9,
    }
    assert set(meta) == {
        "arch", "config", "spec", "classes", "label_set", "seed", "eval_seed", "eval_clips", "accuracy",
        "shuffled_accuracy", "steps", "batch_size", "minutes", "cpu_minutes", "threads", "commit", "lineage",
    }  # fmt: skip
    assert meta["eval_seed"] == "1000003" and meta["accuracy"] == "0.5000" and meta["batch_size"] == "16"


@pytest.mark.parametrize("path", sorted(assets.WEIGHTS.glob("*.synth.safetensors")), ids=lambda p: p.name)
def test_shipped_checkpoints_configs_read_back(path):
    """Every setting a shipped file records is still a setting; the newest files round-trip exactly."""
    from mvt.train import read_metadata

    recorded = json.loads(read_metadata(path)["config"])
    recorded.pop("scheduled_steps")
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()}
    cfg = TrainConfig.from_flat(**settings)
    assert {k: v for k, v in cfg.flat().items() if k in settings} == settings


def test_unknown_settings_are_refused():
    with pytest.raises(TypeError, match="unknown training settings \\['lrate'\\]"):
        TrainConfig.from_flat(arch="x", lrate=1.0)
    assert (
        TrainConfig.from_flat(arch="x").replace(lr=0.5, teacher="t.safetensors").aux.teacher
        == "t.safetensors"
    )
