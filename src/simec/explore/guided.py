"""Guided SiMEC: walk toward a target without leaving the equivalence class of the start.

Not in the paper; built on Algorithm 1 (``simec.explore.simec``). At each step, instead of a
random null direction, the walk takes the projection of (target - p_k) onto the null space of
the pullback metric g(p_k) (eq. 5):

    v_k = P_null(p_k) (target - p_k),        d_k = ||v_k|| (the projected distance)
    delta_k = min(c / sqrt(lambda_max), cap, d_k)   (Algorithm 1 line 7, never past d_k)
    p_{k+1} = p_k + delta_k v_k / d_k, then the Gauss-Newton corrector back onto N(x) = N(p_0).

The walk stops when d_k <= ``tolerance`` * ||p_0 - target||: no null direction brings it closer,
so it cannot get nearer the target without changing the output; with ``patience`` P, also when
the remaining distance ||p_k - target|| has not fallen below 0.999 of its least value for P
steps (it stopped getting closer: e.g. the target lies on another piece of the level set; d_k
itself may grow for a while on a curved level set as the null space turns toward the target);
with ``max_seconds``, once it has run that long; at a rank-zero metric. Otherwise after K
steps. Every point records the remaining distance ||p_k - target|| / ||p_0 - target||.

It is a walk like every other: ``Guided`` is its stepper (``simec.explore.stepper``), its stop
rule ``policy.guided_stop``; ``Walker`` and the driver (``simec.explore.driver``) run it, with
batched Jacobians (``walk_toward_batch``: several walks at once), ``recover`` and the corrector
(always on). The last point is evaluated without a Jacobian (``Walker.settle``): a walk that
takes all its K steps ends "completed", whatever the rules would have said at p_K.

For a linear model N(x) = A x the null space is the same everywhere: the walk goes straight to
p_0 + P_null(target - p_0), i.e. it reaches the target exactly when target - p_0 lies in null(A)
and otherwise stops at the projection, at remaining distance ||P_row(target - p_0)|| / ||...||.

The walk does not project onto the feasible box (the target may lie outside the start's box):
its ``projection`` is recorded as "none".
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError, RankZeroMetricError
from ..geometry import steps
from ..geometry.metrics import get_output_metric
from ..geometry.spectrum import PullbackSpectrum
from ..models.base import ModelAdapter, PreparedInput
from . import policy
from .config import ExploreConfig
from .driver import batch_key, drive_group
from .proposal import Proposal
from .result import ExplorationResult
from .stepper import Candidate, Cost, Evaluation, Fresh, Setup
from .summary import walk_result
from .walk import Walk
from .walker import Walker

__all__ = ["Guided", "guided_direction", "null_part", "walk_toward", "walk_toward_batch"]


def null_part(basis: Tensor, x: Tensor, target: Tensor) -> tuple[Tensor, float]:
    """(unit v, d): the part of ``target - x`` orthogonal to the orthonormal columns ``basis``
    (n, r) (the non-null eigenvectors of g), normalised, and its length d (0: a zero vector)."""
    v = (target - x).reshape(-1)
    v = v - basis @ (basis.T @ v)
    length = float(torch.linalg.vector_norm(v))
    return (v / length if length > 0 else v), length


def guided_direction(spectrum: PullbackSpectrum, x: Tensor, target: Tensor) -> tuple[Tensor, float]:
    """(unit v, d): the null-space part of ``target - x`` (``spectrum.project_null``),
    normalised, and its length d (0 gives a zero vector)."""
    return null_part(spectrum.eigenvectors, x, target)


class Guided(Fresh):
    """The guided step toward ``target`` (a tensor of the input's embedding shape), then the
    corrector; its stop rule is ``policy.guided_stop`` (see the module docstring)."""

    def __init__(
        self,
        setup: Setup,
        cost: Cost,
        generator: torch.Generator,
        target: Tensor,
        *,
        tolerance: float = 1e-6,
        patience: int | None = None,
        max_seconds: float | None = None,
    ) -> None:
        super().__init__(setup, cost, generator)
        self.goal = target.to(setup.start)[setup.segments.rows]
        self.total = float(torch.linalg.vector_norm(self.goal - setup.start))
        if self.total == 0:
            raise InputError("the target is the input itself (distance 0)")
        self.tolerance, self.patience, self.max_seconds = tolerance, patience, max_seconds
        self.least, self.least_at = math.inf, 0  # the least remaining distance, and its step
        self.started = time.perf_counter()
        self.ahead: tuple[Tensor, float] | None = None  # (unit v, d) at the last point

    def remaining(self, x: Tensor) -> float:
        return float(torch.linalg.vector_norm(self.goal - x)) / self.total

    def stop(self, walk: Walk, evaluation: Evaluation) -> str | None:
        """The guided rules at p_k; the step's direction is kept for ``step``."""
        s, k = evaluation.status, len(walk) - 1
        projected = math.inf
        if s.rank > 0:
            assert evaluation.vectors is not None
            # contiguous: the layout of a spectrum's own eigenvectors (the same round-off)
            basis = evaluation.vectors[:, : s.rank].contiguous()
            self.ahead = null_part(basis, walk.point, self.goal)
            projected = self.ahead[1]
        remaining = walk.steps[-1].remaining_distance
        assert remaining is not None
        if remaining < policy.CLOSER * self.least:
            self.least, self.least_at = remaining, k
        elapsed = time.perf_counter() - self.started
        floor = self.tolerance * self.total
        stalled = k - self.least_at
        return policy.guided_stop(
            s.rank, k, projected, floor, stalled, self.patience, elapsed, self.max_seconds
        )

    def step(self, walk: Walk, evaluation: Evaluation) -> Candidate:
        """Line 7's step size, never past d, along the null-space part v of target - p_k."""
        s, jac, ahead = evaluation.status, evaluation.jacobian, self.ahead
        assert ahead is not None and jac is not None
        self.ahead = None
        setup, cfg = self.setup, self.setup.cfg
        size = steps.rule_step_size(
            cfg.step_rule,
            s.lambda_max,
            s.lambda_min if cfg.step_rule == "paper-final" else None,
            scale=setup.rule.c * cfg.step_multiplier,
            eta=cfg.eta * cfg.step_multiplier,
            cap=setup.cap,
        )
        proposal = Proposal(ahead[0], min(size, ahead[1]))
        return self._take(walk, walk.point, proposal, jac, s.lambda_max, s.rank, 0)


def _target(adapter: ModelAdapter, target: Any, prepared: PreparedInput) -> Tensor:
    """The target as a tensor of the input's embedding shape (a raw input is prepared)."""
    if isinstance(target, Tensor) and target.shape == prepared.embeddings.shape:
        x = target
    else:
        x = adapter.prepare(target).embeddings
    if x.shape != prepared.embeddings.shape:
        raise InputError(
            f"the target embeds to shape {tuple(x.shape)}, the input to "
            f"{tuple(prepared.embeddings.shape)}: give a target of the same size (same image "
            "size, or a text with the same number of tokens)"
        )
    return x.to(prepared.embeddings)


def _config(
    config: ExploreConfig | None, options: dict[str, Any], tolerance: float, patience: Any
) -> ExploreConfig:
    """The walk's settings (SiMEC, corrector on, no box projection), checked."""
    cfg = replace(config or ExploreConfig(), **options)
    extra = {**cfg.extra, "guided": True}
    cfg = replace(cfg, algorithm="simec", corrector=True, projection="none", extra=extra)
    cfg = cfg.validate()
    if cfg.box != "input":
        raise InputError("a guided walk (toward=...) does not take a box")
    if cfg.restricted:
        raise InputError("a guided walk (toward=...) does not take top_k/top_mass")
    if cfg.metric_blocks != "joint":
        raise InputError(
            "a guided walk (toward=...) takes the joint metric (metric_blocks='joint')"
        )
    if not 0 <= tolerance < 1:
        raise InputError(f"tolerance must lie in [0, 1), got {tolerance!r}")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise InputError(f"patience must be a positive integer, got {patience!r}")
    return cfg


def _walkers(
    adapter: ModelAdapter, pairs: Sequence[tuple[Any, Any]], cfg: ExploreConfig, **rules: Any
) -> list[Walker]:
    """One walker per (input, target), its stepper ``Guided`` (``rules``: its stop rules)."""
    metric = get_output_metric(cfg.output_metric)
    walkers = []
    for raw, target in pairs:
        prepared = adapter.prepare(raw)
        stepper = partial(Guided, target=_target(adapter, target, prepared), **rules)
        walkers.append(Walker(adapter, prepared, cfg, metric, None, stepper))
    return walkers


def _result(walker: Walker, elapsed: float, skip_critical: bool) -> ExplorationResult | None:
    """The walk's result; a walk that could not start (rank-zero metric at p_0) raises, or
    gives None with ``skip_critical``."""
    if len(walker.walk) == 1 and walker.stop_reason == policy.rank_zero(0):
        if skip_critical:
            return None
        raise RankZeroMetricError("the pullback metric is zero at the input")
    result = walk_result(walker, elapsed)
    return replace(result, input_description=f"{result.input_description} -> toward target")


def walk_toward_batch(
    adapter: ModelAdapter,
    pairs: Sequence[tuple[Any, Any]],
    config: ExploreConfig | None = None,
    *,
    tolerance: float = 1e-6,
    patience: int | None = None,
    max_seconds: float | None = None,
    skip_critical: bool = False,
    **options: Any,
) -> list[ExplorationResult | None]:
    """Guided walks from each input toward its target (``pairs``: (raw input, target)), run
    together: walks whose inputs have the same shapes share batched Jacobians (one at a time
    for a model that cannot be vmapped), each with its own stop rules and clock
    (``max_seconds`` counts from the start of its batch). The results of ``walk_toward`` on
    each pair, in order, up to the round-off of batched kernels; ``skip_critical``: None for a
    walk whose input is a critical point of the model (else it raises ``RankZeroMetricError``).
    """
    cfg = _config(config, options, tolerance, patience)
    rules = {"tolerance": tolerance, "patience": patience, "max_seconds": max_seconds}
    walkers = _walkers(adapter, pairs, cfg, **rules)
    groups: dict[tuple, list[Walker]] = {}
    for walker in walkers:
        groups.setdefault(batch_key(walker), []).append(walker)
    elapsed: dict[int, float] = {}
    for group in groups.values():
        t0 = time.perf_counter()
        for walker in group:
            assert isinstance(walker.stepper, Guided)
            walker.stepper.started = t0
        drive_group(group, None)
        for walker in group:
            walker.settle()
        elapsed.update({id(w): time.perf_counter() - t0 for w in group})
    return [_result(w, elapsed[id(w)], skip_critical) for w in walkers]


def walk_toward(
    adapter: ModelAdapter,
    raw_input: Any,
    target: Any,
    config: ExploreConfig | None = None,
    *,
    tolerance: float = 1e-6,
    patience: int | None = None,
    max_seconds: float | None = None,
    **options: Any,
) -> ExplorationResult:
    """Guided SiMEC from ``raw_input`` toward ``target`` (a raw input, or a tensor of the
    explored shape); see the module docstring. The corrector is always on (N(x) = N(p_0)).
    The result's ``remaining_distance`` has one value per point p_0 .. p_K. ``patience``: see
    the module docstring; ``max_seconds``: stop once the walk has run this long."""
    (result,) = walk_toward_batch(
        adapter,
        [(raw_input, target)],
        config,
        tolerance=tolerance,
        patience=patience,
        max_seconds=max_seconds,
        **options,
    )
    assert result is not None
    return result
