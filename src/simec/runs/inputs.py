"""The inputs of a dataset run: IDX image data or a file with one input per line."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["RunItem", "idx_items", "line_items", "materialize", "source_fingerprint"]


@dataclass
class RunItem:
    """One input of a dataset run.

    ``id`` names its result folder and manifest entry (stable across resumes and backends);
    ``index`` is its position in the data set (its seed is ``config.seed + index``); ``raw`` is
    what the adapter gets (an image array), or for ``kind="line"`` the line as written, which
    ``materialize`` turns into an image path or a text once the adapter is known.
    """

    id: str
    index: int
    raw: Any
    description: str
    kind: str = "raw"  # "raw" (give raw to the adapter) or "line" (see materialize)
    base_dir: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def idx_items(
    root: str | os.PathLike,
    *,
    limit: int | None = None,
    split: str = "test",
    kind: str = "mnist",
) -> tuple[list[RunItem], dict[str, Any]]:
    """The first ``limit`` images of an IDX data set (MNIST layout), and the source record."""
    from ..data import load_idx_dataset

    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    data = load_idx_dataset(root, split=split, kind=kind)
    count = len(data) if limit is None else min(limit, len(data))
    items = [
        RunItem(
            id=f"{i:06d}",
            index=i,
            raw=np.ascontiguousarray(data.images[i]),
            description=f"{data.name}[{i}] label {data.classes[int(data.labels[i])]}",
            meta={"label": int(data.labels[i])},
        )
        for i in range(count)
    ]
    source = {
        "kind": "idx",
        "path": str(Path(root).resolve()),
        "split": split,
        "dataset": data.name,
        "limit": limit,
        "count": count,
    }
    return items, source


def line_items(
    path: str | os.PathLike, *, limit: int | None = None
) -> tuple[list[RunItem], dict[str, Any]]:
    """One input per non-blank line of a UTF-8 text file: an image path, or a text."""
    path = Path(path)
    if path.is_dir():
        raise InputError(
            f"inputs {str(path)!r} is a folder, not a file: give a text file with one input "
            "per line (an image path or a text)"
        )
    if not path.is_file():
        raise InputError(f"inputs file {str(path)!r} does not exist")
    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as exc:
        raise InputError(f"{str(path)!r} is not UTF-8 text: {exc}") from None
    lines = [line for line in lines if line]
    if not lines:
        raise InputError(f"{str(path)!r} holds no inputs (one image path or text per line)")
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    if limit is not None:
        lines = lines[:limit]
    base = str(path.resolve().parent)
    items = [
        RunItem(id=f"{i:06d}", index=i, raw=line, description=line, kind="line", base_dir=base)
        for i, line in enumerate(lines)
    ]
    source = {
        "kind": "lines",
        "path": str(path.resolve()),
        "limit": limit,
        "count": len(items),
        "sha256": digest,
    }
    return items, source


def materialize(item: RunItem, adapter: Any) -> Any:
    """The raw input to give ``adapter``: lines become image paths (vision models; relative
    paths are tried from the current folder, then from the inputs file's folder) or texts
    (text models; a line naming a .txt file reads that file, like ``--input``)."""
    if item.kind != "line":
        return item.raw
    line = str(item.raw)
    candidates = [Path(line)]
    if item.base_dir is not None and not Path(line).is_absolute():
        candidates.append(Path(item.base_dir) / line)
    if adapter.modality == "image":  # the line is a path
        for candidate in candidates:
            if candidate.is_file():
                return str(candidate)
        raise InputError(f"image file {line!r} does not exist")
    for candidate in candidates:
        if candidate.suffix == ".txt" and candidate.is_file():
            return candidate.read_text(encoding="utf-8").strip()
    return line


def source_fingerprint(source: dict[str, Any], items: list[RunItem]) -> str:
    """A short hash of the input source and the item ids (to refuse resuming another data set)."""
    text = json.dumps({"source": source, "ids": [i.id for i in items]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
