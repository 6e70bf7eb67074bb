"""One walk in progress: accept the point reached, then propose the next step.

Each iteration of the walk loop (``simec.explore.driver.drive``) at the current point x reads as
Algorithms 1 and 2 read:

1. the model at x (``Evaluation``: the Jacobian and the spectrum of g, eq. 5, lines 3-4);
2. ``Walker.accept``: x is the candidate p_k a step reached; checked by ``policy`` (finite,
   within the divergence bound, finite output there), it is appended to the ``Walk`` (line 10),
   else the step is retried with half the size or the walk stops;
3. ``Walker.propose``: lines 5-8 (and the corrector, the per-step box) from p_k, made by the
   walk's stepper (``simec.explore.stepper``): the next candidate p_{k+1}.

A step just taken is a ``Candidate`` until its point is accepted; nothing is undone in place,
so an interrupt (Ctrl-C) between two statements leaves a consistent walk; ``settle`` checks and
records the last point reached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ..geometry.metrics import OutputMetric
from ..models.base import ModelAdapter, PreparedInput
from . import policy
from .box import Box
from .config import ExploreConfig
from .proposal import Proposal
from .reuse import Reuse
from .stepper import Candidate, Cost, Evaluation, Fresh, Setup, Stepper
from .walk import Step, Walk

__all__ = ["StepperFactory", "Walker", "make_stepper"]

#: builds a walk's stepper from its setup, its cost counter and its generator
StepperFactory = Callable[[Setup, Cost, torch.Generator], Stepper]


def make_stepper(setup: Setup, cost: Cost, generator: torch.Generator) -> Stepper:
    """The walk's stepper: ``Reuse`` with ``jacobian_reuse`` (SiMEC only), else ``Fresh``."""
    age = setup.reuse_age
    if age is not None:
        return Reuse(setup, cost, generator, age)
    return Fresh(setup, cost, generator)


class Walker:
    """One exploration: its setup, its stepper (``stepper``: a factory for another kind than
    ``make_stepper``'s, e.g. ``simec.explore.guided.Guided``), the step in flight and the
    records."""

    def __init__(
        self,
        adapter: ModelAdapter,
        prepared: PreparedInput,
        cfg: ExploreConfig,
        metric: OutputMetric,
        box: Box | None,
        stepper: StepperFactory | None = None,
    ) -> None:
        self.setup = Setup.build(adapter, prepared, cfg, metric, box)
        generator = torch.Generator(device=prepared.embeddings.device).manual_seed(cfg.seed)
        self.cost = Cost()
        self.stepper = (stepper or make_stepper)(self.setup, self.cost, generator)
        self.walk = Walk(cfg.record_every)
        self.candidate: Candidate | None = None
        self.recoveries: list[dict[str, Any]] = []  # a log of events, never undone
        self.stop_reason: str | None = None

    @property
    def cfg(self) -> ExploreConfig:
        return self.setup.cfg

    @property
    def x(self) -> Tensor:
        """The current point: the candidate's, else the last accepted one, else the start."""
        if self.candidate is not None:
            return self.candidate.point
        return self.walk.point if self.walk.steps else self.setup.start

    @property
    def done(self) -> int:
        """Steps taken: accepted ones, plus the candidate in flight."""
        return max(len(self.walk) - 1, 0) + (self.candidate is not None)

    @property
    def corrects(self) -> bool:
        """Each step is followed by corrector iterations (``corrector``, or reuse on)."""
        return self.cfg.corrector or self.setup.reuse_age is not None

    @property
    def active(self) -> bool:
        """Still needs the model: not stopped and fewer than ``steps`` steps taken."""
        return self.stop_reason is None and self.done < self.cfg.steps

    # -- one iteration: accept p_k, then propose the step to p_{k+1} ---------------------------
    def accept(self, evaluation: Evaluation) -> bool:
        """Line 10 for the point x reached: check it and append its record (True), or retry
        its step with half the size or stop (False)."""
        status = evaluation.status
        if self.candidate is not None and not self.candidate.checked:
            if not self._check(status.point_ok, status.distance):
                return False
        if not status.finite:
            self._fail(policy.output_failure(self.done, evaluation.failure))
            return False
        if self.candidate is not None or not self.walk.steps:
            self._record(evaluation.output, evaluation.logits)
        # else x is the last record already: the stepper dropped the step from it (reuse)
        restriction = self.setup.model_fn.restriction
        if restriction is not None:  # has the full model's top set changed at p_k?
            restriction.watch(len(self.walk) - 1, evaluation.logits)
        return True

    def propose(self, evaluation: Evaluation) -> None:
        """Lines 5-8 from the accepted p_k (the stepper's), or stop when no step exists."""
        if evaluation.vectors is not None:  # a fresh spectrum: ``policy.spectrum_stop`` or
            stop = self.stepper.stop(self.walk, evaluation)  # the stepper's own rule
            if stop is not None:
                self.stop_reason = stop
                return
        self.candidate = self.stepper.step(self.walk, evaluation)
        if self.setup.model_fn.restriction is not None:
            self._restricted_step(evaluation, fresh=evaluation.vectors is not None)

    def _restricted_step(self, evaluation: Evaluation, *, fresh: bool) -> None:
        """Output restriction: record what the step from p_k drops (one Jacobian-vector
        product of the full logits along its direction, when ``cfg.leakage`` asks for it here:
        every step, or steps from a ``fresh`` Jacobian), then switch to the classes the full
        model ranks on top at p_k if they changed (the stepper drops what used the old ones)."""
        restriction, c = self.setup.model_fn.restriction, self.candidate
        assert restriction is not None
        mode = self.cfg.leakage
        if c is not None:
            u = None  # not measured at this step: the dropped mass only
            if mode == "every-step" or (mode == "fresh" and fresh):
                v = c.proposal.direction.reshape(c.start.shape)
                _, u, how = self.setup.model_fn.logits_jvp(c.start, v)
                self.cost.add(1, 1)
                restriction.leakage_method = how
            restriction.measure(len(self.walk) - 1, evaluation.logits, u)
        if restriction.apply(int(evaluation.logits.shape[-1])):
            self.stepper.classes_changed()

    def _check(self, point_ok: bool, distance: float) -> bool:
        """Check the point the candidate reached; False if the walk retried or stopped."""
        assert self.candidate is not None
        failure = policy.point_failure(
            point_ok, distance, self.setup.bound, self.cfg.divergence_ratio, self.done
        )
        if failure is not None:
            self._fail(failure)
            return False
        self.candidate = replace(self.candidate, checked=True)
        return True

    def _fail(self, failure: policy.Failure) -> None:
        """A failed candidate: retry it with half the step size (``recover``), or stop."""
        c = self.candidate
        if c is not None and policy.retry(c.retries, self.cfg.recover):
            half = Proposal(c.proposal.direction, c.proposal.step_size / 2)
            entry = {"step": len(self.walk) - 1, "reason": failure.reason}
            self.recoveries.append({**entry, "step_size": half.step_size})
            self.candidate = self.stepper.retry(self.walk, c, half)
            return
        self.stop_reason = failure.stop_reason
        if c is not None:
            self.candidate = None if failure.rollback else replace(c, checked=True)

    def _record(self, y: Tensor, logits: Tensor) -> None:
        """The current point is good: append its record (with the candidate's step, if any)."""
        c, k = self.candidate, self.done
        if self.setup.model_fn.restriction is not None:  # records hold the full output
            y = self.setup.metric.output(logits)
        y0 = self.walk.steps[0].output if self.walk.steps else y
        record = Step(k, self.x, y, torch.softmax(logits, -1), torch.linalg.vector_norm(y - y0))
        remaining = self.stepper.remaining(self.x)
        if remaining is not None:
            record = replace(record, remaining_distance=remaining)
        if c is not None:
            record = replace(
                record,
                lambda_max=c.lambda_max,
                step_size=c.proposal.step_size,
                rank=c.rank,
                uncorrected_drift=c.uncorrected_drift,
                retries=c.retries,
                fresh=c.fresh,
                corrector_iterations=c.corrector_iterations,
            )
        self.candidate = None
        self.walk.append(record)

    # -- the end -------------------------------------------------------------------------------
    def settle(self) -> None:
        """Check the last point reached and evaluate the model there (no Jacobian needed)."""
        with torch.no_grad():
            while self.candidate is not None or not self.walk.steps:
                c = self.candidate
                if c is not None and not c.checked:
                    ok, distance, _ = self.setup.host_checks(c.point)
                    if not self._check(ok, distance):
                        continue
                y, logits = self.stepper.output(self.x)
                n = self.done
                if n > 0 and not (torch.isfinite(y).all() and torch.isfinite(logits).all()):
                    self._fail(policy.output_failure(n, "non-finite output"))
                    continue
                self._record(y, logits)
