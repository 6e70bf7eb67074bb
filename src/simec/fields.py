"""Config dataclass fields that carry their command-line help, written in one call.

``option(default, help, metavar=..., min=..., ...)`` is ``dataclasses.field(default=default,
metadata={"help": help, "metavar": ..., "min": ...})``: the metadata keys ``simec.cli.options``
reads (``help``, ``help_off``, ``metavar``, ``choices``, ``min``, ``gt``), only those given.
"""

from __future__ import annotations

from dataclasses import field, fields
from typing import Any

from .errors import InputError

__all__ = ["check_choices", "option"]

#: the metadata keys ``simec.cli.options`` reads
KEYS = ("help_off", "metavar", "choices", "min", "gt")


def option(default: Any, help: str | None = None, **metadata: Any) -> Any:
    """A dataclass field with ``default`` and the command-line ``metadata`` given."""
    unknown = set(metadata) - set(KEYS)
    if unknown:
        raise TypeError(f"option() got unknown metadata {sorted(unknown)}; known: {KEYS}")
    if help is not None:
        metadata = {"help": help, **metadata}
    return field(default=default, metadata=metadata)


def check_choices(cfg: Any, *names: str) -> None:
    """``InputError`` naming the field and its choices when a field ``names`` of the config
    dataclass ``cfg`` holds a value outside its ``choices`` (for configs built in Python, which
    argparse did not check)."""
    declared = {f.name: f for f in fields(cfg)}
    for name in names:
        value, choices = getattr(cfg, name), declared[name].metadata["choices"]
        if value not in choices:
            label = name.replace("_", " ")
            raise InputError(f"unknown {label} {value!r}: choose one of {', '.join(choices)}")
