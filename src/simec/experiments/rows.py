"""Per-input rows of an experiment: frozen dataclasses written as one JSON file each.

A row is written atomically to ``out/rows/<name>.json`` as soon as its input is done, so an
interrupted experiment resumes where it stopped; ``load_rows`` reads them back as the same
dataclasses (nested dataclass fields, lists and dicts of them included). ``make_rows`` lets several
processes share one folder: each claims a row (``claim_row``, an ``flock`` on
``rows/.<name>.lock``) before making it and leaves the rows others hold to them.
"""

from __future__ import annotations

import fcntl
import json
import os
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from .._io import atomic_write_bytes
from ..errors import InputError

__all__ = ["claim_row", "from_dict", "load_row", "load_rows", "make_rows", "save_row"]

T = TypeVar("T")


def _convert(kind: Any, value: Any) -> Any:
    if isinstance(kind, type) and is_dataclass(kind) and isinstance(value, Mapping):
        return from_dict(kind, value)
    origin = get_origin(kind)
    if origin is list and isinstance(value, list):
        (item,) = get_args(kind)
        return [_convert(item, v) for v in value]
    if origin is dict and isinstance(value, Mapping):
        key, item = get_args(kind)
        return {k: _convert(item, v) for k, v in value.items()}
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


@contextmanager
def claim_row(path: Path, *, wait: bool = False) -> Iterator[bool]:
    """Claim the row ``path`` for this process: yields True when no other process holds it
    (``wait``: block until none does), False when another holds it. An ``flock`` on
    ``<folder>/.<name>.lock``, dropped by the kernel when the process ends however it ends; the
    lock file is removed once the row exists."""
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            if path.is_file():
                lock.unlink(missing_ok=True)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def make_rows(
    jobs: Sequence[tuple[Path, Callable[[], Any]]],
    *,
    done: Callable[[], None] | None = None,
    stale: Callable[[Path], bool] | None = None,
) -> int:
    """Make and save (``save_row``) each row ``path`` of ``jobs`` (path, make) not on disk yet
    (or on disk but ``stale(path)``: made with other settings, made again); a row another
    process is making is left to it, then waited for at the end (and made here if that process
    stopped without it). ``done`` is called once per job (a progress bar). Returns the number
    of rows this process made."""

    def missing(path: Path) -> bool:
        return not path.is_file() or (stale is not None and stale(path))

    made = 0
    later = []
    for path, make in jobs:
        if missing(path):
            with claim_row(path) as mine:
                if not mine:
                    later.append((path, make))
                    continue
                if missing(path):
                    save_row(path, make())
                    made += 1
        if done is not None:
            done()
    for path, make in later:
        with claim_row(path, wait=True):
            if missing(path):
                save_row(path, make())
                made += 1
        if done is not None:
            done()
    return made
