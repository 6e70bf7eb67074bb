"""Reproductions of the papers' experiments, as resumable runs that write tables and figures."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_write_json, environment, setting_differences
from ..errors import InputError

# options that only say how much to run, or where: a resumed run may change them (etas and
# segment_sets of the interpretations experiment name its rows, they do not change how a row
# is made)
_RESUMABLE_CHANGES = ("out", "device", "images", "posts", "repetitions", "etas", "segment_sets")


def _with_defaults(saved: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """``saved`` with the keys an older config.json lacks set to the option's default then
    (today's default), also inside nested configs (e.g. a new ``ExploreConfig`` field)."""
    out = dict(saved)
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name not in out:
            if f.default is not MISSING:
                out[f.name] = f.default
            elif f.default_factory is not MISSING and is_dataclass(value):
                out[f.name] = asdict(f.default_factory())
        elif is_dataclass(value) and isinstance(out[f.name], dict):
            out[f.name] = _with_defaults(out[f.name], value)
    return out


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
        before = _with_defaults(before, cfg)
        differences = setting_differences(before, now, ignore=_RESUMABLE_CHANGES)
        if differences:
            raise InputError(
                f"cannot resume the experiment in {out}, its rows were made with other "
                "settings (" + "; ".join(differences) + "); use the same options, or a new "
                "output folder"
            )
    atomic_write_json(path, {"config": now, "environment": environment()})
