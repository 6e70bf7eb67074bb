"""manifest.jsonl: one JSON line per finished input, appended as each finishes.

Appends are single ``write`` calls of one line on a file opened with O_APPEND, flushed to disk;
a reader skips a line that does not parse (a write cut by a crash). Every (re)start and every
end of a run rewrites the file atomically with exactly one entry per input id, in input order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes
from .inputs import RunItem

__all__ = ["DONE", "MANIFEST", "Manifest", "manifest_entry"]

MANIFEST = "manifest.jsonl"
#: statuses of inputs whose result folder is complete (never recomputed on resume)
DONE = ("completed", "stopped")


def manifest_entry(
    item: RunItem,
    seed: int,
    summary: Mapping[str, Any] | None,
    *,
    result_dir: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """The manifest line of one input: ``summary`` is its result's summary (the content of
    ``summary.json``, see ``ExplorationResult.summary``), or None for an input that failed."""
    entry: dict[str, Any] = {
        "id": item.id,
        "index": item.index,
        "input": item.description,
        "seed": seed,
        **item.meta,
    }
    if summary is None:
        entry.update(status="failed", result=None, error=error)
        return entry
    stop = summary.get("stop_reason", "")
    labels, predicted = summary.get("labels") or [], summary.get("predicted") or [0]
    entry.update(
        status="completed" if stop == "completed" else "stopped",
        result=result_dir,
        stop_reason=stop,
        steps_completed=summary.get("steps_completed"),
        predicted_start=labels[predicted[0]] if labels else None,
        predicted_end=labels[predicted[-1]] if labels else None,
        elapsed_seconds=summary.get("elapsed_seconds"),
        batch_size=(summary.get("batch") or {}).get("size", 1),
    )
    return entry


class Manifest:
    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.path = Path(out_dir) / MANIFEST

    def read(self) -> dict[str, dict[str, Any]]:
        """The last entry written for each input id (unreadable lines are skipped)."""
        entries: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return entries
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                entries[entry["id"]] = entry
        return entries

    def append(self, entry: dict[str, Any]) -> None:
        data = (json.dumps(entry, allow_nan=True) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def rewrite(self, entries: list[dict[str, Any]]) -> None:
        """Replace the file atomically by ``entries`` (one line each, in the order given)."""
        text = "".join(json.dumps(e, allow_nan=True) + "\n" for e in entries)
        atomic_write_bytes(self.path, text.encode())
