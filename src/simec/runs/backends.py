"""Backends of a dataset run, registered by name: they explore items and report outcomes.

A backend gets a ``RunTask`` (how to build the adapter, the configuration, the batch size), the
items still to do and a callback ``on_done(outcome)`` that it calls, in the driver process, as
each input finishes. The runner owns every write (result folders and the manifest), so all
backends produce the same folder layout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from ..errors import InputError
from ..registry import Registry
from .batches import chunks, explore_items
from .inputs import RunItem
from .types import ModelSpec, OnDone, Outcome, RunTask

__all__ = [
    "BACKENDS",
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


class Backend(Protocol):
    """Explores ``items`` and calls ``on_done`` once per input; the runner does every write."""

    name: str

    def run(
        self,
        task: RunTask,
        items: list[RunItem],
        on_done: OnDone,
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
        on_done: OnDone,
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


#: backend factories by name (API ``backend=...`` and the CLI's ``--backend``)
BACKENDS: Registry[Callable[[], Backend]] = Registry("backend")


def register_backend(name: str, factory: Callable[[], Backend], *, overwrite: bool = False) -> None:
    """Make a backend available by name (API ``backend=...`` and the CLI's ``--backend``)."""
    BACKENDS.register(name, factory, replace=overwrite)


def backend_names() -> list[str]:
    return BACKENDS.names()


def get_backend(name: str | Backend) -> Backend:
    if not isinstance(name, str):
        return name
    return BACKENDS.get(name)()


def _ray() -> Backend:
    from .ray_backend import RayBackend

    return RayBackend()


register_backend("local", LocalBackend)
register_backend("ray", _ray)
