"""What every backend's worker does: explore a batch of items into outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import SimecError
from ..explore import ExplorationResult, explore, explore_batch
from ..models.base import ModelAdapter
from .inputs import RunItem, materialize
from .types import Outcome, RunTask

__all__ = ["chunks", "explore_items"]


def explore_items(adapter: ModelAdapter, task: RunTask, items: list[RunItem]) -> Iterator[Outcome]:
    """Explore ``items`` as one batch (seed of each: config.seed + its index).

    An input that cannot be read fails alone. If the batch raises (an input that cannot be
    explored, e.g. a flat output), its inputs are explored one at a time so that only the
    bad one fails (any exception is recorded as that input's error). A walk interrupted by
    Ctrl-C is not an outcome: KeyboardInterrupt is raised.
    """
    cfg = task.config
    ready: list[tuple[RunItem, Any]] = []
    for item in items:
        try:
            ready.append((item, materialize(item, adapter)))
        except SimecError as exc:
            yield Outcome(item, cfg.seed + item.index, error=f"{type(exc).__name__}: {exc}")
    if not ready:
        return
    seeds = [cfg.seed + item.index for item, _ in ready]
    try:
        results: list[ExplorationResult] | None = explore_batch(
            adapter, [raw for _, raw in ready], cfg, seeds=seeds, batch_size=task.batch_size
        )
    except Exception:  # noqa: BLE001 - explored one at a time below, each error recorded
        results = None
    if results is not None:
        for (item, _), seed, result in zip(ready, seeds, results):
            _check_not_interrupted(result)
            yield Outcome(item, seed, result=result)
        return
    for (item, raw), seed in zip(ready, seeds):
        try:
            result = explore(adapter, raw, cfg, seed=seed)
        except Exception as exc:  # noqa: BLE001 - recorded in the manifest, the run goes on
            yield Outcome(item, seed, error=f"{type(exc).__name__}: {exc}")
            continue
        _check_not_interrupted(result)
        yield Outcome(item, seed, result=result)


def _check_not_interrupted(result: ExplorationResult) -> None:
    if result.stop_reason.startswith("interrupted"):
        raise KeyboardInterrupt


def chunks(items: list[RunItem], size: int) -> list[list[RunItem]]:
    """``items`` cut into consecutive batches of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]
