"""The Ray backend: batches of inputs spread over Ray actors, each holding one model copy.

Needs the optional dependency ``ray`` (``pip install 'simec[ray]'``). If Ray is not initialised
yet, a local instance with ``workers`` CPUs is started and shut down at the end; otherwise the
running instance (``ray.init(address=...)`` done by the caller) is used. Each actor reserves one
CPU (and 1/workers of a GPU when the model runs on CUDA), loads the model once, and explores
one batch at a time; the driver hands the next batch to whichever actor finishes first and
writes every result itself, so the folder layout is the local backend's. Workers on the
driver's machine end within a second of the driver, even one killed with SIGKILL.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import InputError, ModelError, SimecError
from .batches import chunks, explore_items
from .inputs import RunItem
from .types import OnDone, Outcome, RunTask

__all__ = ["RayBackend"]


def watch_driver(
    host: str, pid: int, *, interval: float = 1.0, on_gone: Callable[[], None] | None = None
) -> threading.Thread | None:
    """End this process (or call ``on_gone``) once process ``pid`` on ``host`` has ended.

    Ray notices a driver killed with SIGKILL only after about two minutes; its workers would
    go on exploring until then. A worker on another machine cannot see the driver's PID: no
    watch there (returns None)."""
    if socket.gethostname() != host:
        return None

    def alive() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - exists, owned by someone else
            return True
        return True

    def watch() -> None:
        while alive():
            time.sleep(interval)
        (on_gone or (lambda: os._exit(0)))()

    thread = threading.Thread(target=watch, name="simec-driver-watch", daemon=True)
    thread.start()
    return thread


class _RayWorker:
    """Lives in a Ray actor: one adapter, many batches; ends with its driver."""

    def __init__(self, task: RunTask, threads: int, driver: tuple[str, int] | None = None) -> None:
        import torch

        if driver is not None:
            watch_driver(*driver)
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
        driver = (socket.gethostname(), os.getpid())
        actors = [
            actor_class.remote(task, threads, driver) for _ in range(min(count, len(batches)))
        ]
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
