"""Explore every input of a data set: one result folder per input and a manifest.

Layout of ``out``::

    run.json                       what was run: configuration, model, input source, versions
    manifest.jsonl                 one line per input: id, index, status, seed, result folder,
                                   stop reason, predictions, error (for inputs that failed)
    inputs/<id>/summary.json       the input's ExplorationResult (written atomically, the
    inputs/<id>/trajectory.safetensors   trajectory first, so summary.json means complete)

Results are written as each input (or batch) finishes. A run killed at any moment resumes with
``resume=True``: inputs whose folder is complete are kept (also when the kill came between the
folder and its manifest line), everything else is explored again, and the manifest ends with
exactly one line per input. Ctrl-C keeps what is finished and re-raises KeyboardInterrupt.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .._io import (
    atomic_write_json,
    check_output_dir,
    environment,
    remove_stale_temporaries,
    setting_differences,
)
from ..errors import InputError, OutputError
from ..explore import ExploreConfig
from ..explore.result import SUMMARY, TRAJECTORY
from ..fields import option
from ..models.base import ModelAdapter
from .backends import Backend, backend_names, get_backend
from .inputs import RunItem, source_fingerprint
from .lock import RunLock
from .manifest import DONE, Manifest, manifest_entry
from .types import ModelSpec, Outcome, RunTask

__all__ = ["RUN_FILE", "DatasetOptions", "run_dataset"]

RUN_FILE = "run.json"
FORMAT = "simec-dataset-run-1"
#: configuration fields that do not change results (not compared when resuming)
_RUN_LEVEL_EXTRA = ("argv", "input", "out", "resume", "backend", "workers", "batch_size")


def _complete(folder: Path) -> bool:
    return (folder / SUMMARY).is_file() and (folder / TRAJECTORY).is_file()


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that change results, flat: every config field (the seed included) and the
    result-changing entries of ``extra`` under their own names (dtype, device, space, ...)."""
    out = dict(config)
    extra = {k: v for k, v in (out.pop("extra", None) or {}).items() if k not in _RUN_LEVEL_EXTRA}
    for key, value in extra.items():
        out.setdefault(key, value)
    return json.loads(json.dumps(out, default=str))


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flat(item, f"{prefix}.{key}"))
    return out


def _model_record(model: Any) -> dict[str, Any]:
    if isinstance(model, ModelSpec):
        return {"spec": model.to_dict()}
    if isinstance(model, ModelAdapter):
        return json.loads(json.dumps({"adapter": model.describe()}, default=str))
    return {"factory": getattr(model, "__qualname__", type(model).__name__)}


def _adopt(out: Path, item: RunItem, seed: int) -> dict[str, Any] | None:
    """A complete result folder without a manifest line (killed in between): its entry."""
    folder = out / "inputs" / item.id
    if not _complete(folder):
        return None
    try:
        summary = json.loads((folder / SUMMARY).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if summary.get("config", {}).get("seed") != seed:
        return None
    return manifest_entry(item, seed, summary, result_dir=f"inputs/{item.id}")


def _same_data(inputs: Any) -> Any:
    """The input source without its size: a resumed run may explore more (or fewer) inputs."""
    source = dict((inputs or {}).get("source") or {})
    for key in ("limit", "count"):
        source.pop(key, None)
    return source


def _check_resumable(previous: dict[str, Any], current: dict[str, Any], out: Path) -> None:
    if previous.get("format") != FORMAT:
        raise InputError(f"{out}/{RUN_FILE} was not written by a simec dataset run")
    # a field missing from an older run.json had its default then (e.g. metric_blocks)
    saved = {**ExploreConfig().to_dict(), **previous["config"]}
    differences = setting_differences(_comparable(saved), current["comparable"])
    shown = {d.split(":", 1)[0] for d in differences}
    differences += [
        d
        for d in setting_differences(
            _flat(previous.get("model"), "model"), _flat(current["model"], "model")
        )
        if d.split(":", 1)[0].rsplit(".", 1)[-1] not in shown  # dtype, device: said above
    ]
    if _same_data(previous.get("inputs")) != _same_data(current["inputs"]):
        differences.append("the inputs")
    if differences:
        raise InputError(
            f"cannot resume the run in {out}, it was made with other settings ("
            + "; ".join(differences)
            + "); use the same options, or a new output folder"
        )


@dataclass(frozen=True)
class DatasetOptions:
    """How a dataset run goes: the options of ``simec explore --data/--inputs`` and the
    defaults of :func:`run_dataset` (``limit`` is the inputs' reader's)."""

    limit: int | None = option(None, "the first N inputs only", metavar="N", min=1)
    batch_size: int = option(
        1, "explore B inputs at once with batched Jacobians", metavar="B", min=1
    )
    backend: str = option(
        "local",
        "local (this process), ray (pip install 'simec[ray]') or a registered backend",
        choices=backend_names,
    )
    workers: int | None = option(
        None,
        "--backend ray: number of workers, one CPU each (default: all CPUs)",
        metavar="N",
        min=1,
    )
    resume: bool = option(
        False, "continue the dataset run in --out; finished inputs are kept, never redone"
    )


def run_dataset(
    model: ModelSpec | ModelAdapter | Callable[[], ModelAdapter],
    items: list[RunItem],
    out: str | os.PathLike,
    config: ExploreConfig | None = None,
    *,
    source: dict[str, Any] | None = None,
    backend: str | Backend = DatasetOptions.backend,
    batch_size: int = DatasetOptions.batch_size,
    workers: int | None = DatasetOptions.workers,
    resume: bool = DatasetOptions.resume,
    progress: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Explore every item (seed: ``config.seed + item.index``) and write ``out`` (see module).

    ``model``: a ``ModelSpec`` (a model directory; what the Ray backend ships to its workers),
    an adapter, or a function returning one. ``backend``: "local" (this process) or "ray", or
    any name given to ``register_backend``. ``batch_size`` inputs are explored together by
    ``explore_batch``. ``resume`` continues the run already in ``out`` (which must have the
    same options, model and inputs); without it an existing run there is an error. Returns
    counts: total, completed, stopped, failed, resumed (found done), and the manifest's path.
    """
    cfg = replace(config or ExploreConfig(), **options).validate()
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise InputError("input ids must be unique")
    runner = get_backend(backend)
    out = Path(out)
    source = source or {"kind": "items", "count": len(items)}
    config_record = cfg.to_dict()
    info: dict[str, Any] = {
        "format": FORMAT,
        "config": config_record,
        "model": _model_record(model),
        "inputs": {"source": source, "fingerprint": source_fingerprint(source, items)},
        "seeds": "config.seed + input index",
    }
    run_path = out / RUN_FILE
    check_output_dir(out)
    if run_path.is_file() and not resume:
        raise InputError(
            f"{out} already holds a dataset run: pass --resume (resume=True) to continue "
            "it, or choose another output folder"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {str(out)!r}: {exc.strerror or exc}") from None
    with RunLock(out):
        return _run_locked(
            runner, task_model=model, items=items, out=out, cfg=cfg, info=info,
            backend=backend, batch_size=batch_size, workers=workers, resume=resume,
            progress=progress,
        )  # fmt: skip


def _run_locked(
    runner: Backend,
    *,
    task_model: Any,
    items: list[RunItem],
    out: Path,
    cfg: ExploreConfig,
    info: dict[str, Any],
    backend: str | Backend,
    batch_size: int,
    workers: int | None,
    resume: bool,
    progress: bool,
) -> dict[str, Any]:
    """``run_dataset`` once the folder is checked and locked (see there)."""
    model = task_model
    run_path = out / RUN_FILE
    config_record = info["config"]
    history: list[dict[str, Any]] = []
    if run_path.is_file():
        if not resume:  # written since the check by a run that has ended
            raise InputError(
                f"{out} already holds a dataset run: pass --resume (resume=True) to continue "
                "it, or choose another output folder"
            )
        remove_stale_temporaries(out)
        try:
            previous = json.loads(run_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read {run_path}: {exc}") from exc
        _check_resumable(previous, {**info, "comparable": _comparable(config_record)}, out)
        history = list(previous.get("history", []))
    history.append(
        {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "backend": getattr(runner, "name", str(backend)),
            "batch_size": batch_size,
            "workers": workers,
        }
    )
    atomic_write_json(run_path, {**info, "environment": environment(), "history": history})

    manifest = Manifest(out)
    previous_entries = manifest.read()
    entries: dict[str, dict[str, Any]] = {}
    done: set[str] = set()
    for item in items:
        seed = cfg.seed + item.index
        entry = previous_entries.get(item.id)
        if (
            entry is not None
            and entry.get("status") in DONE
            and entry.get("seed") == seed
            and _complete(out / str(entry.get("result")))
        ):
            entries[item.id] = entry
            done.add(item.id)
            continue
        adopted = _adopt(out, item, seed)
        if adopted is not None:
            entries[item.id] = adopted
            done.add(item.id)
        elif entry is not None and entry.get("status") == "failed" and entry.get("seed") == seed:
            entries[item.id] = entry  # kept until it is tried again
    resumed = len(done)
    order = {item.id: item.index for item in items}

    def write_manifest() -> None:
        manifest.rewrite(sorted(entries.values(), key=lambda e: order.get(e["id"], 0)))

    write_manifest()
    todo = [item for item in items if item.id not in done]
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), initial=resumed, desc="inputs", unit="input")

    def on_done(outcome: Outcome) -> None:
        folder, summary = None, None
        if outcome.result is not None:
            folder = f"inputs/{outcome.item.id}"
            summary = outcome.result.summary()
            outcome.result.save(out / folder, summary=summary)
        entry = manifest_entry(
            outcome.item, outcome.seed, summary, result_dir=folder, error=outcome.error
        )
        # kept before the append: a SIGTERM raised inside the append (its fsync) must not let
        # the final rewrite of the manifest drop an input whose result is saved
        entries[outcome.item.id] = entry
        manifest.append(entry)
        if bar is not None:
            bar.update(1)

    task = RunTask(model=model, config=cfg, batch_size=batch_size)
    finished = False
    try:
        runner.run(task, todo, on_done, workers=workers)
        finished = True
    finally:
        if bar is not None:
            bar.close()
        history[-1]["ended"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        history[-1]["finished"] = finished
        try:
            write_manifest()
            atomic_write_json(run_path, {**info, "environment": environment(), "history": history})
        except OSError:
            if finished:
                raise
            # a write failed (e.g. a full disk) and the run stops on it: the appended manifest
            # lines and complete result folders stay, and --resume rebuilds the rest
    counts = {s: sum(e["status"] == s for e in entries.values()) for s in (*DONE, "failed")}
    return {
        "total": len(items),
        **counts,
        "resumed": resumed,
        "manifest": str(manifest.path),
    }
