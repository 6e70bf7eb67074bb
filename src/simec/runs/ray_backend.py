"""The Ray backend: batches of inputs spread over Ray actors, each holding one model copy.

Needs the optional dependency ``ray`` (``pip install 'simec[ray]'``). If Ray is not initialised
yet, a local instance with ``workers`` CPUs is started and shut down at the end; otherwise the
running instance (``ray.init(address=...)`` done by the caller) is used. Each actor reserves one
CPU (and 1/workers of a GPU when the model runs on CUDA), loads the model once, and explores
one batch at a time; the driver hands the next batch to whichever actor finishes first and
writes every result itself, so the folder layout is the local backend's.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

from ..errors import InputError, ModelError, SimecError
from .batches import chunks, explore_items
from .inputs import RunItem
from .types import OnDone, Outcome, RunTask

__all__ = ["RayBackend"]


class _RayWorker:
    """Lives in a Ray actor: one adapter, many batches."""

    def __init__(self, task: RunTask, threads: int) -> None:
        import torch

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        torch.set_num_threads(max(1, threads))
        self.task = task
        self.adapter = task.adapter()

    def ready(self) -> bool:
        return True

    def run(self, items: list[RunItem]) -> list[Outcome]:
        return list(explore_items(self.adapter, self.task, items))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(
            "the ray backend needs Ray: pip install 'simec[ray]' (or pip install ray)"
        ) from None
    return ray


class RayBackend:
    """After ``run``: ``timings`` = {"startup_s": starting Ray and the actors, loading the model
    in each; "explore_s": from the first batch handed out to the last result written}."""

    name = "ray"

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
        ray = _import_ray()
        if workers is not None and workers < 1:
            raise InputError(f"workers must be at least 1, got {workers}")
        if not items:
            return
        t0 = time.perf_counter()
        started = not ray.is_initialized()
        if started:
            count = workers or os.cpu_count() or 1
            ray.init(
                num_cpus=count,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="ERROR",
            )
        available = int(ray.cluster_resources().get("CPU", 1))
        count = workers or available
        threads = max(1, available // count)
        batches = deque(chunks(items, task.batch_size))
        options: dict[str, Any] = {"num_cpus": 1}
        if task.device.startswith("cuda"):
            options["num_gpus"] = 1.0 / count
        actor_class = ray.remote(**options)(_RayWorker)
        actors = [actor_class.remote(task, threads) for _ in range(min(count, len(batches)))]
        pending: dict[Any, Any] = {}
        try:
            for ready in [actor.ready.remote() for actor in actors]:
                _get(ray, ready)  # every model loaded (or its error raised) before any input
            t1 = time.perf_counter()
            for actor in actors:
                pending[actor.run.remote(batches.popleft())] = actor
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                actor = pending.pop(ready[0])
                for outcome in _get(ray, ready[0]):
                    on_done(outcome)
                if batches:
                    pending[actor.run.remote(batches.popleft())] = actor
            self.timings = {"startup_s": t1 - t0, "explore_s": time.perf_counter() - t1}
        finally:
            for actor in actors:
                ray.kill(actor)
            if started:
                ray.shutdown()


def _get(ray: Any, ref: Any) -> list[Outcome]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, SimecError):
            raise cause from None
        raise ModelError(f"a Ray worker failed: {cause or exc}") from exc
    except ray.exceptions.RayActorError as exc:
        raise ModelError(f"a Ray worker died (could it load the model?): {exc}") from exc
