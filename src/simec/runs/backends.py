"""Backends of a dataset run, registered by name: they explore items and report outcomes.

A backend gets a ``RunTask`` (how to build the adapter, the configuration, the batch size), the
items still to do and a callback ``on_done(outcome)`` that it calls, in the driver process, as
each input finishes. The runner owns every write (result folders and the manifest), so all
backends produce the same folder layout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import InputError, SimecError
from ..explore import ExplorationResult, ExploreConfig, explore, explore_batch
from ..models.base import ModelAdapter
from .inputs import RunItem, materialize

__all__ = [
    "Backend",
    "LocalBackend",
    "ModelSpec",
    "Outcome",
    "RunTask",
    "backend_names",
    "explore_items",
    "get_backend",
    "register_backend",
]


@dataclass(frozen=True)
class ModelSpec:
    """A model directory and how to load it: what a remote worker needs to build the adapter."""

    path: str
    space: str = "embeddings"
    device: str = "cpu"
    dtype: str = "float32"
    truncation: bool = False

    def load(self) -> ModelAdapter:
        from ..models import load_adapter

        return load_adapter(
            self.path,
            space=self.space,  # type: ignore[arg-type]
            device=self.device,
            dtype=self.dtype,
            truncation=self.truncation,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": os.path.abspath(self.path),
            "space": self.space,
            "device": self.device,
            "dtype": self.dtype,
            "truncation": self.truncation,
        }


@dataclass
class RunTask:
    """Everything a worker needs: the model (a ModelSpec, an adapter, or a function returning
    one), the exploration configuration and how many inputs to explore as one batch."""

    model: ModelSpec | ModelAdapter | Callable[[], ModelAdapter]
    config: ExploreConfig
    batch_size: int = 1

    def adapter(self) -> ModelAdapter:
        if isinstance(self.model, ModelSpec):
            return self.model.load()
        if isinstance(self.model, ModelAdapter):
            return self.model
        return self.model()

    @property
    def device(self) -> str:
        if isinstance(self.model, ModelSpec):
            return self.model.device
        return str(getattr(self.model, "device", "cpu"))


@dataclass
class Outcome:
    """One finished input: its result, or the error that stopped it."""

    item: RunItem
    seed: int
    result: ExplorationResult | None = None
    error: str | None = None


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
    return [items[i : i + size] for i in range(0, len(items), size)]


class Backend(Protocol):
    name: str

    def run(
        self,
        task: RunTask,
        items: list[RunItem],
        on_done: Callable[[Outcome], None],
        *,
        workers: int | None = None,
    ) -> None: ...


class LocalBackend:
    """This process, one batch after another. After ``run``: ``timings`` = {"startup_s":
    building the adapter, "explore_s": exploring and writing every input}."""

    name = "local"

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def run(
        self,
        task: RunTask,
        items: list[RunItem],
        on_done: Callable[[Outcome], None],
        *,
        workers: int | None = None,
    ) -> None:
        if workers not in (None, 1):
            raise InputError("the local backend runs one worker; use backend='ray' for more")
        if not items:
            return
        t0 = time.perf_counter()
        adapter = task.adapter()
        t1 = time.perf_counter()
        for chunk in chunks(items, task.batch_size):
            for outcome in explore_items(adapter, task, chunk):
                on_done(outcome)
        self.timings = {"startup_s": t1 - t0, "explore_s": time.perf_counter() - t1}


_BACKENDS: dict[str, Callable[[], Backend]] = {}


def register_backend(name: str, factory: Callable[[], Backend], *, overwrite: bool = False) -> None:
    """Make a backend available by name (API ``backend=...`` and the CLI's ``--backend``)."""
    if name in _BACKENDS and not overwrite:
        raise InputError(f"backend {name!r} is already registered")
    _BACKENDS[name] = factory


def backend_names() -> list[str]:
    return list(_BACKENDS)


def get_backend(name: str | Backend) -> Backend:
    if not isinstance(name, str):
        return name
    try:
        return _BACKENDS[name]()
    except KeyError:
        raise InputError(f"unknown backend {name!r}; choose one of {backend_names()}") from None


def _ray() -> Backend:
    from .ray_backend import RayBackend

    return RayBackend()


register_backend("local", LocalBackend)
register_backend("ray", _ray)
