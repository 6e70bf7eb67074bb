"""Config dataclass fields that carry their command-line help, written in one call.

``option(default, help, metavar=..., min=..., ...)`` is ``dataclasses.field(default=default,
metadata={"help": help, "metavar": ..., "min": ...})``: the metadata keys ``simec.cli.options``
reads (``help``, ``help_off``, ``metavar``, ``choices``, ``min``, ``gt``), only those given.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

__all__ = ["option"]

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
