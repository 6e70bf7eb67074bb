"""The public entry points: ``explore`` (one input) and ``explore_batch`` (many, batched).

Where the paper's algorithms live (SiMEC paper, arXiv 2410.06019):

* Algorithm 1 (SiMEC) ``simec.explore.simec``; Algorithm 2 (SiMExp) ``simec.explore.simexp``;
  their shared step size and directions ``simec.geometry.steps``; one step as a pure function
  ``simec.explore.proposal``; accept/retry/stop ``simec.explore.policy``; a walk as a list of
  records ``simec.explore.walk``; accept a point, then propose the next step
  ``simec.explore.walker``; how a step is made (fresh Jacobian, or reused:
  ``simec.explore.reuse``) ``simec.explore.stepper``; the one walk loop ``simec.explore.driver``.
* Algorithm 4 (segments) ``simec.explore.segments``; line 11 (feasible box) ``simec.explore.box``.
* Eq. (5), the pullback metric, ``simec.geometry.pullback``; its spectrum
  ``simec.geometry.spectrum``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..errors import InputError
from ..geometry.metrics import get_output_metric
from ..models.base import ModelAdapter
from .box import Box, feasible_box
from .config import ExploreConfig
from .driver import batch_key, drive_group
from .guided import walk_toward
from .result import ExplorationResult
from .summary import batched_logits, reset_peak_memory, walk_result
from .walker import Walker

__all__ = ["batched_logits", "explore", "explore_batch", "feasible_box"]


def _prepare_config(config: ExploreConfig | None, options: dict[str, Any]) -> ExploreConfig:
    return replace(config or ExploreConfig(), **options).validate()


def _named_box(box: Box | str | None, options: dict[str, Any]) -> Box | None:
    """``box`` given by name ("input", "embedding-bounds") is the config's ``box`` option."""
    if isinstance(box, str):
        options["box"] = box
        return None
    return box


def _progress_bar(cfg: ExploreConfig, total: int, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{cfg.algorithm} ({cfg.method})", unit="step")


def explore(
    adapter: ModelAdapter,
    raw_input: Any,
    config: ExploreConfig | None = None,
    *,
    box: Box | str | None = None,
    progress: bool = False,
    toward: Any = None,
    **options: Any,
) -> ExplorationResult:
    """Walk the input space of ``adapter``'s model from ``raw_input``.

    ``toward``: a target (raw input, or a tensor of the explored shape): the walk is then the
    guided SiMEC of ``simec.explore.guided`` (toward the target inside the class; no box).

    ``config`` holds every option (see :class:`ExploreConfig`); keyword ``options`` override its
    fields, e.g. ``explore(adapter, image, algorithm="simexp", steps=500, seed=1)``. ``box`` is a
    (lower, upper) pair broadcastable to the embedding shape, or a name of ``ExploreConfig.box``
    ("input": the per-dimension range of the original embeddings, the default;
    "embedding-bounds": the final version's analytic bounds, ``simec.explore.box``). Ctrl-C
    stops the walk and returns what was done so far (stop_reason "interrupted").
    """
    box = _named_box(box, options)
    if toward is not None:
        if box is not None:
            raise InputError("a guided walk (toward=...) does not take a box")
        if options.get("metric_blocks", getattr(config, "metric_blocks", "joint")) != "joint":
            raise InputError(
                "a guided walk (toward=...) uses the joint metric: metric_blocks='joint'"
            )
        return walk_toward(adapter, raw_input, toward, config, **options)
    cfg = _prepare_config(config, options)
    metric = get_output_metric(cfg.output_metric)
    walk = Walker(adapter, adapter.prepare(raw_input), cfg, metric, box)
    reset_peak_memory(walk.setup.start.device)
    bar = _progress_bar(cfg, cfg.steps, progress)
    t0 = time.perf_counter()
    try:
        drive_group([walk], bar)  # a group of one: the single (possibly compiled) Jacobian
        walk.settle()
    finally:
        if bar is not None:
            bar.close()
    return walk_result(walk, time.perf_counter() - t0)


def _batches(walks: list[Walker], batch_size: int | None, cfg: ExploreConfig) -> list[list[int]]:
    """Indices of the walks run together: same ``batch_key``, at most ``batch_size`` each."""
    groups: dict[tuple, list[int]] = {}
    for i, walk in enumerate(walks):
        groups.setdefault(batch_key(walk), []).append(i)
    size = batch_size or len(walks) or 1
    batches = [
        members[j : j + size] for members in groups.values() for j in range(0, len(members), size)
    ]
    return batches


def _walks(
    adapter: ModelAdapter,
    raw_inputs: Sequence[Any],
    cfg: ExploreConfig,
    seeds: Sequence[int] | None,
    box: Box | None,
) -> list[Walker]:
    raw_inputs = list(raw_inputs)
    seeds = [int(s) for s in seeds] if seeds is not None else [cfg.seed] * len(raw_inputs)
    if len(seeds) != len(raw_inputs):
        raise InputError(f"got {len(seeds)} seeds for {len(raw_inputs)} inputs")
    metric = get_output_metric(cfg.output_metric)
    return [
        Walker(adapter, adapter.prepare(raw), replace(cfg, seed=seed), metric, box)
        for raw, seed in zip(raw_inputs, seeds)
    ]


def explore_batch(
    adapter: ModelAdapter,
    raw_inputs: Sequence[Any],
    config: ExploreConfig | None = None,
    *,
    seeds: Sequence[int] | None = None,
    box: Box | str | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    **options: Any,
) -> list[ExplorationResult]:
    """Explore several inputs at once; the same results as ``explore`` on each, in order.

    ``seeds`` gives each input its own seed (default: ``config.seed`` for all, i.e. exactly the
    runs ``explore(adapter, raw, config)`` would make). Inputs whose explored tensors and model
    inputs have the same shapes share batched Jacobians (at most ``batch_size`` at a time, all
    by default); others are batched with their own kind (texts of different token counts, for
    instance). Every walk keeps its own generator, spectrum and stop reason; a walk that stops
    leaves the batch. A model that cannot be vmapped is run one input at a time (with a
    warning). ``elapsed_seconds`` of each result is the wall time of its batch; ``result.batch``
    says which batch it was in. The compiled Jacobian (``compile``) serves batches too: one
    graph per batch shape, compiled at its first use (a walk that stops makes a smaller batch,
    compiled anew), eager on any failure. An input
    that cannot be explored (unreadable, flat output at the start, ...) raises, as ``explore``
    would. Ctrl-C stops every walk and returns what was done (stop_reason "interrupted").
    """
    box = _named_box(box, options)
    cfg = _prepare_config(config, options)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    walks = _walks(adapter, raw_inputs, cfg, seeds, box)
    if walks:
        reset_peak_memory(walks[0].setup.start.device)
    batches = _batches(walks, batch_size, cfg)
    results: list[ExplorationResult | None] = [None] * len(walks)
    bar = _progress_bar(cfg, cfg.steps * len(walks), progress)
    try:
        for number, members in enumerate(batches):
            group = [walks[i] for i in members]
            t0 = time.perf_counter()
            drive_group(group, bar)
            for walk in group:
                walk.settle()
            elapsed = time.perf_counter() - t0
            for position, i in enumerate(members):
                info = {"index": number, "size": len(members), "position": position}
                results[i] = walk_result(walks[i], elapsed, info)
            if any((walks[i].stop_reason or "").startswith("interrupted") for i in members):
                for i in (i for later in batches[number + 1 :] for i in later):
                    walks[i].stop_reason = "interrupted at step 0"
                    walks[i].settle()
                    results[i] = walk_result(walks[i], 0.0, {"index": -1, "size": 0})
                break
    finally:
        if bar is not None:
            bar.close()
    return [r for r in results if r is not None]
