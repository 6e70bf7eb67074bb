"""Reproductions of the papers' experiments, as resumable runs that write tables and figures."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

from .._io import atomic_write_json, environment, setting_differences
from ..errors import InputError

# options that only say how much to run, or where: a resumed run may change them (etas and
# segment_sets of the interpretations experiment name its rows, they do not change how a row
# is made)
_RESUMABLE_CHANGES = ("out", "device", "images", "posts", "repetitions", "etas", "segment_sets")


def start_or_resume(
    out: Path, cfg: Any, *, upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> None:
    """Write ``out/config.json``; refuse to resume a folder whose rows used other settings.

    Rows already in ``out/rows`` are reused on a resume, so mixing settings would silently
    mix results in one table. ``upgrade`` turns a config saved in an older form into today's.
    """
    now = asdict(cfg)
    path = out / "config.json"
    has_rows = any((out / "rows").glob("*.json"))
    if path.is_file() and has_rows:
        try:
            before = json.loads(path.read_text())["config"]
        except (ValueError, KeyError) as err:
            raise InputError(f"{path} is unreadable ({err}); use a new output folder") from err
        if upgrade is not None:
            before = upgrade(before)
        # a key missing from an older config.json had the option's default then
        defaults = {f.name: f.default for f in fields(cfg) if f.default is not MISSING}
        before = {**{k: v for k, v in defaults.items() if k not in before}, **before}
        differences = setting_differences(before, now, ignore=_RESUMABLE_CHANGES)
        if differences:
            raise InputError(
                f"cannot resume the experiment in {out}, its rows were made with other "
                "settings (" + "; ".join(differences) + "); use the same options, or a new "
                "output folder"
            )
    atomic_write_json(path, {"config": now, "environment": environment()})
