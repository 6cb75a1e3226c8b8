"""``python -m mvt.train``: the command line, generated from :class:`~mvt.train.config.TrainConfig`'s fields.

Each field ``name`` is the flag ``--name`` with dashes (or its ``flag`` metadata: ``arch`` is ``--model``),
with the field's type, default and help. A ``bool`` that defaults to ``False`` is a switch (``--motion-init``);
one that defaults to ``True`` is switched off by its flag (``--no-augment``); a ``tuple[str, ...]`` is written
comma-separated (``--focus-classes rotate_cw,rotate_ccw``). Two flags are not training settings and are not
stored in the config: ``--threads`` and ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from dataclasses import MISSING, Field, fields
from typing import Any

import torch

from .config import GROUPS, TrainConfig


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))


def _setting_fields() -> list[tuple[Field, Any]]:
    """(field, type) of every setting, top level then group by group."""
    out = []
    for cls in (TrainConfig, *GROUPS.values()):
        hints = _hints(cls)
        out += [(f, hints[f.name]) for f in fields(cls) if f.name not in GROUPS]
    return out


def _scalar(kind: Any) -> tuple[type, bool]:
    """The element type of ``kind`` and whether ``None`` is allowed (``int | None`` → ``(int, True)``)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0], True
    return kind, False


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)


def flag_of(f: Field) -> str:
    """The command-line flag of a config field."""
    if "flag" in f.metadata:
        return f.metadata["flag"]
    return "--" + f.name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m mvt.train``: one flag per config field, plus ``--threads`` and ``--out``."""
    p = argparse.ArgumentParser(
        prog="python -m mvt.train",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a small model of a family on SynthMotion and ship its weights (see mvt.train).",
    )
    for f, kind in _setting_fields():
        help_text, flag = f.metadata.get("help", ""), flag_of(f)
        default = f.default if f.default is not MISSING else None
        if kind is bool:
            action = "store_false" if default else "store_true"
            p.add_argument(flag, dest=f.name, action=action, default=default, help=help_text)
        elif typing.get_origin(kind) is tuple:
            p.add_argument(flag, dest=f.name, type=_comma_list, default=default, help=help_text)
        else:
            scalar, _ = _scalar(kind)
            required = f.default is MISSING and f.default_factory is MISSING
            p.add_argument(flag, dest=f.name, type=scalar, default=default, required=required, help=help_text)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", default=None, help="directory for <arch>.synth.safetensors (omit to not save)")
    return p


def parse(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """The config a command line asks for, and the parsed namespace (for ``threads`` and ``out``)."""
    args = build_parser().parse_args(argv)
    settings = {f.name: getattr(args, f.name) for f, _ in _setting_fields()}
    return TrainConfig.from_flat(**settings), args


def main(argv: list[str] | None = None) -> int:
    from .run import train

    cfg, args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train(cfg, out=args.out, log=lambda s: print(s, flush=True))
    return 0
