"""Per-input rows of an experiment: frozen dataclasses written as one JSON file each.

A row is written atomically to ``out/rows/<name>.json`` as soon as its input is done, so an
interrupted experiment resumes where it stopped; ``load_rows`` reads them back as the same
dataclasses (nested dataclass fields and lists of them included).
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from .._io import atomic_write_bytes
from ..errors import InputError

__all__ = ["from_dict", "load_row", "load_rows", "save_row"]

T = TypeVar("T")


def _convert(kind: Any, value: Any) -> Any:
    if isinstance(kind, type) and is_dataclass(kind) and isinstance(value, Mapping):
        return from_dict(kind, value)
    origin = get_origin(kind)
    if origin is list and isinstance(value, list):
        (item,) = get_args(kind)
        return [_convert(item, v) for v in value]
    if origin in (Union, types.UnionType) and value is not None:
        inner = [a for a in get_args(kind) if a is not type(None)]
        if len(inner) == 1:  # Optional[X]
            return _convert(inner[0], value)
    return value


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """``cls`` (a dataclass) from its ``asdict`` form; a missing field takes its default."""
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{cls.__name__} has no fields {unknown}")
    try:
        return cls(**{k: _convert(hints[k], v) for k, v in data.items()})
    except TypeError as err:  # a required field is missing
        raise InputError(f"not a {cls.__name__}: {err}") from None


def save_row(path: Path, row: Any, *, indent: int | None = None) -> None:
    """Write ``row`` (a dataclass) atomically as JSON."""
    atomic_write_bytes(path, (json.dumps(asdict(row), indent=indent) + "\n").encode())


def load_row(path: Path, cls: type[T]) -> T:
    try:
        return from_dict(cls, json.loads(path.read_text()))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the row {path}: {err}") from None


def load_rows(folder: Path, cls: type[T]) -> list[T]:
    """Every ``*.json`` row in ``folder``, in file-name order."""
    return [load_row(path, cls) for path in sorted(folder.glob("*.json"))]
