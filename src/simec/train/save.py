"""Saving a trained model folder so that no reader ever sees a half-written file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._io import environment

__all__ = ["save_model", "training_log"]


def training_log(config: Any, history: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """The content of ``training_log.json``: the configuration, the history, ``fields`` (e.g.
    metrics) and the environment."""
    from dataclasses import asdict

    return {
        "config": asdict(config),
        "history": history,
        **fields,
        "environment": environment(),
    }


def save_model(
    out: str | os.PathLike,
    *pretrained: Any,
    files: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model folder: every object's ``save_pretrained`` (a model, a tokenizer) and
    ``files`` (name -> a str written as text, anything else as JSON).

    Everything is first written to a temporary folder next to ``out`` and then moved in file by
    file with ``os.replace``, so each file in ``out`` is always complete (old or new), and a
    crash while saving leaves the previous files intact. Other files in ``out`` are kept.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for obj in pretrained:
            obj.save_pretrained(tmp)
        for name, content in (files or {}).items():
            text = content if isinstance(content, str) else json.dumps(content, indent=2) + "\n"
            (tmp / name).write_text(text, encoding="utf-8")
        for path in sorted(tmp.rglob("*")):
            if path.is_file():
                target = out / path.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(path, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
