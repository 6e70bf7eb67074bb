"""One walk of SiMEC or SiMExp: a list of frozen records, one per accepted point.

``Walk.steps[k]`` is the k-th accepted point p_k (its output, probabilities, drift) and the step
that reached it (lambda_max, step size, rank at p_{k-1}, drift before the corrector, retries).
A step just taken is a ``Candidate`` until its point passes the checks of ``policy``: then it
becomes a record (one ``append``); a failed candidate is retried (a new candidate) or dropped.
Nothing is ever undone in place, so an interrupt (Ctrl-C) between two statements leaves a walk
whose records are consistent; it is settled like any other.

Which step to take is ``proposal`` (with the rules of ``simec`` / ``simexp``), what to do with
the point reached is ``policy``; the Jacobians and spectra come from ``driver``, batched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..errors import InputError
from ..geometry.metrics import OutputMetric
from ..models.base import ModelAdapter, PreparedInput
from . import policy, reuse
from .box import Box, embedding_bounds, project, resolve_box
from .closure import model_function
from .config import REUSE_MIN_ITERATIONS, RULES, ExploreConfig
from .corrector import Corrector, Outcome, chord
from .proposal import Proposal, move, propose
from .segments import Segments

__all__ = ["Candidate", "Lookahead", "Status", "Step", "Walk"]


class Status(NamedTuple):
    """What one step of one walk needs on the host, read back once per step for the batch."""

    point_ok: bool  # the current point is finite
    finite: bool  # the output, the Jacobian and G^1/2 J are finite there
    lambda_max: float
    rank: int
    distance: float  # ||x - x0|| over the explored segments
    lambda_min: float = 0.0  # the smallest non-null eigenvalue (0 at rank 0)


@dataclass(frozen=True)
class Step:
    """Accepted point p_k (``index`` k) and the step from p_{k-1} that reached it (None for p_0).

    ``point`` (explored rows) is kept for the stored trajectory (every ``record_every``-th
    point) and for the last record; dropped (None) otherwise, to save memory."""

    index: int
    point: Tensor | None
    output: Tensor
    probabilities: Tensor
    drift: Tensor
    lambda_max: float | None = None
    step_size: float | None = None
    rank: int | None = None
    uncorrected_drift: float | None = None
    retries: int = 0
    fresh: bool = True
    corrector_iterations: int | None = None


@dataclass(frozen=True)
class Candidate:
    """A step taken from the last accepted point ``start`` to ``point``, not yet accepted;
    ``checked``: the point passed ``policy.point_failure`` (its output is not known yet)."""

    start: Tensor
    proposal: Proposal
    jacobian: Tensor
    lambda_max: float
    rank: int
    point: Tensor
    uncorrected_drift: float | None
    retries: int = 0
    checked: bool = False
    fresh: bool = True
    corrector_iterations: int | None = None


@dataclass(frozen=True)
class Lookahead:
    """The next step of a Jacobian-reuse walk, drawn before its start was accepted: from
    ``start`` along ``proposal`` of ``basis`` to ``point``; ``evaluated``: (y, logits) there,
    when the model ran it in one batched call with ``start`` (``corrector.chord``'s ahead)."""

    start: Tensor
    proposal: Proposal
    basis: reuse.Basis
    point: Tensor
    evaluated: tuple[Tensor, Tensor] | None = None


class Walk:
    """One exploration: its settings, its generator, its records and the step in flight."""

    def __init__(
        self,
        adapter: ModelAdapter,
        prepared: PreparedInput,
        cfg: ExploreConfig,
        metric: OutputMetric,
        box: Box | None,
    ) -> None:
        self.adapter, self.prepared, self.cfg, self.metric = adapter, prepared, cfg, metric
        self.rule = RULES[cfg.algorithm]
        x0 = prepared.embeddings
        self.segments = Segments.select(x0, cfg.segments)
        if cfg.box == "embedding-bounds":
            if box is not None:
                raise InputError("give either box=(lower, upper) or box='embedding-bounds'")
            box = embedding_bounds(adapter)
        self.lower, self.upper = resolve_box(box, x0, self.segments.rows)
        self.generator = torch.Generator(device=x0.device).manual_seed(cfg.seed)
        self.start = x0[self.segments.rows].clone()
        start_norm = float(torch.linalg.vector_norm(self.start))
        self.cap = cfg.max_step * start_norm if cfg.max_step is not None else math.inf
        self.bound = cfg.divergence_ratio * start_norm
        self.corrector: Corrector | None = None
        self.steps: list[Step] = []
        self.candidate: Candidate | None = None
        self.recoveries: list[dict[str, Any]] = []  # a log of events, never undone
        self.stop_reason: str | None = None
        #: (metric output coordinates y, logits) at the explored rows: one function per
        #: adapter and input, so that its compiled Jacobian is reused across runs
        self.model_fn = model_function(adapter, prepared, self.segments, metric)
        # Jacobian reuse (``simec.explore.reuse``); counters kept in every mode
        self.reuse_age = cfg.reuse_age() if self.rule.name == "simec" else None
        self.basis: reuse.Basis | None = None
        self.basis_age = 0  # steps predicted from ``basis``
        self.refresh: str | None = None  # why the next step needs a fresh Jacobian
        self.redo = False  # the last step was dropped: step again from the accepted point
        self.evaluated: tuple[Tensor, Tensor, Tensor] | None = None  # (x, y, logits) known
        self.pending: Lookahead | None = None  # the next step, drawn ahead (reuse only)
        self.contraction = 0.0  # the corrector's last measured contraction rate (reuse only)
        self.jacobians = 0
        self.forwards = 0  # model calls outside the Jacobians
        self.points = 0  # points they evaluated (a batched call evaluates two)
        self.refreshes: list[dict[str, Any]] = []
        self.retried = 0

    @property
    def x(self) -> Tensor:
        """The current point: the candidate's, else the last accepted one, else the start."""
        if self.candidate is not None:
            return self.candidate.point
        return self.steps[-1].point if self.steps else self.start  # type: ignore[return-value]

    @property
    def done(self) -> int:
        """Steps taken: accepted ones, plus the candidate in flight."""
        return max(len(self.steps) - 1, 0) + (self.candidate is not None)

    @property
    def corrects(self) -> bool:
        """Each step is followed by corrector iterations (``corrector``, or reuse on)."""
        return self.cfg.corrector or self.reuse_age is not None

    @property
    def needs_jacobian(self) -> bool:
        """The next iteration takes a fresh Jacobian (always, unless reuse is on)."""
        if self.reuse_age is None or self.basis is None or self.refresh is not None:
            return True
        return self.basis_age >= self.reuse_age

    @property
    def active(self) -> bool:
        """Still needs Jacobians: not stopped and fewer than ``steps`` steps taken."""
        return self.stop_reason is None and self.done < self.cfg.steps

    # -- one iteration ---------------------------------------------------------------------------
    def advance(
        self,
        status: Status,
        y: Tensor,
        jac: Tensor,
        logits: Tensor,
        vectors: Tensor,
        singular_values: Tensor | None = None,
    ) -> None:
        """One iteration at the current point x: check it, then step (Algorithm 1/2, lines 3-9).

        ``vectors`` (n, >= rank): the metric's non-null eigenvectors first, canonical signs;
        ``singular_values``: those of G^1/2 J (used by Jacobian reuse when G = I).
        """
        if self.candidate is not None and not self.candidate.checked:
            if not self._check(status.point_ok, status.distance):
                return
        k = self.done
        if not status.finite:
            self._fail(policy.output_failure(k))
            return
        if self.redo:  # the point was accepted before its step was dropped
            self.redo = False
        else:
            self._accept(y, logits)
        stop = policy.spectrum_stop(self.rule, status.rank, int(vectors.shape[0]), k)
        if stop is not None:
            self.stop_reason = stop
            return
        if self.reuse_age is not None:
            flat = jac.reshape(jac.shape[0], -1)
            identity = self.metric.factor is None
            basis = reuse.Basis.build(
                flat,
                vectors,
                status.rank,
                status.lambda_max,
                singular_values if identity else None,
                len(self.steps) - 1,
                lambda_min=status.lambda_min,
            )
            if self.basis is not None:
                angle = reuse.null_space_angle(self.basis, basis)
                self.refreshes.append(
                    {"step": basis.step, "reason": self.refresh or "age", "angle_deg": angle}
                )
            self.basis, self.basis_age, self.refresh, self.pending = basis, 0, None, None
            self._step_from_basis(status.lambda_max)
            return
        proposal = propose(
            self.rule,
            vectors,
            status.rank,
            status.lambda_max,
            self.generator,
            multiplier=self.cfg.step_multiplier,
            cap=self.cap,
            step_rule=self.cfg.step_rule,
            lambda_min=status.lambda_min,
            eta=self.cfg.eta,
        )
        jac = jac.reshape(jac.shape[0], -1)
        self._take(self.x, proposal, jac, status.lambda_max, status.rank, 0)

    def advance_reused(self) -> None:
        """One iteration with the reused Jacobian: a forward pass at x (none if the corrector
        already made it), then a step predicted from ``basis``."""
        assert self.basis is not None
        x = self.x
        known = self.evaluated
        if known is not None and known[0] is x:
            y, logits = known[1], known[2]
        else:
            with torch.no_grad():
                y, logits = self.model_fn(x)
            self.forwards, self.points = self.forwards + 1, self.points + 1
        point_ok, distance, finite = self._host_checks(x, y, logits)
        distance = distance if point_ok else math.inf
        if self.candidate is not None and not self.candidate.checked:
            if not self._check(point_ok, distance):
                return
        if not finite:
            self._fail(policy.output_failure(self.done, "non-finite output"))
            return
        self._accept(y, logits)
        self._step_from_basis(self.basis.lambda_max)

    def _host_checks(
        self, x: Tensor, y: Tensor | None = None, logits: Tensor | None = None
    ) -> tuple[bool, float, bool]:
        """(x finite, ||x - x0|| over the explored rows, y and logits finite), read back from
        the device at once (one host read, as the driver packs its statuses)."""
        parts = [torch.isfinite(x).all(), torch.linalg.vector_norm(x - self.start)]
        if y is not None and logits is not None:
            parts.append(torch.isfinite(y).all() & torch.isfinite(logits).all())
        values = torch.stack([p.to(torch.float64) for p in parts]).tolist()
        return bool(values[0]), values[1], bool(values[2]) if len(values) > 2 else True

    def _step_from_basis(self, lambda_max: float) -> None:
        """Lines 6-8 with the kept Jacobian's null space and lambda_max, then the corrector;
        the step drawn ahead by the last one (``pending``), if it was drawn from this basis."""
        basis = self.basis
        assert basis is not None
        pending, self.pending = self.pending, None
        if pending is None or pending.basis is not basis:
            self._take(
                self.x, self._propose(basis, lambda_max), basis.jacobian, lambda_max, basis.rank, 0
            )
            return
        ahead = pending if pending.start is self.x and pending.evaluated is not None else None
        self._take_reused(self.x, pending.proposal, lambda_max, basis.rank, 0, ahead=ahead)

    def _propose(self, basis: reuse.Basis, lambda_max: float) -> Proposal:
        """Lines 6-7 from a kept Jacobian's spectrum."""
        return propose(
            self.rule,
            basis.vectors,
            basis.rank,
            lambda_max,
            self.generator,
            multiplier=self.cfg.step_multiplier,
            cap=self.cap,
            step_rule=self.cfg.step_rule,
            lambda_min=basis.lambda_min,
            eta=self.cfg.eta,
        )

    def _take(
        self, x: Tensor, proposal: Proposal, jac: Tensor, lam: float, rank: int, retries: int
    ) -> None:
        """Take a proposed step from x (line 8, then the corrector and the per-step box)."""
        if self.basis is not None and self.reuse_age is not None:
            self._take_reused(x, proposal, lam, rank, retries)
            return
        x_new = move(x, proposal)
        before, iterations = None, None
        if self.corrector is not None:
            x_new, before = self.corrector(x_new, jac)
            iterations = self.corrector.iterations
            # residuals measured: one per update, plus the one that met the tolerance
            measured = iterations + (iterations < self.cfg.corrector_iterations)
            self.forwards, self.points = self.forwards + measured, self.points + measured
        if self.cfg.projection == "step":
            x_new = project(x_new, self.lower, self.upper)
        self.candidate = Candidate(
            x, proposal, jac, lam, rank, x_new, before, retries, corrector_iterations=iterations
        )

    def _take_reused(
        self,
        x: Tensor,
        proposal: Proposal,
        lam: float,
        rank: int,
        retries: int,
        *,
        ahead: Lookahead | None = None,
    ) -> None:
        """A step of the predictor-corrector walk (``simec.explore.reuse``); ``ahead``: this
        step, drawn and evaluated by the last one (its first residual is known)."""
        basis = self.basis
        assert basis is not None
        self.pending = None
        fresh = self.basis_age == 0
        y0 = self.steps[0].output
        tolerance = reuse.accept_tolerance(self.cfg.corrector_tolerance, y0)
        iterations = max(self.cfg.corrector_iterations, REUSE_MIN_ITERATIONS)
        drawn: list[Proposal] = []
        outcome: Outcome = chord(
            self.model_fn,
            ahead.point if ahead is not None else move(x, proposal),
            y0,
            basis.factors,
            iterations=iterations,
            tolerance=tolerance,
            known=ahead.evaluated if ahead is not None else None,
            ahead=self._draw_ahead(basis, lam, drawn),
            many=self.model_fn.many,
            contraction=self.contraction,
        )
        self.forwards += outcome.calls
        self.points += outcome.points
        if len(outcome.correctable) > 1 and outcome.correctable[-2] > 0:
            self.contraction = outcome.correctable[-1] / outcome.correctable[-2]
        self.basis_age += 1
        converged = outcome.final <= tolerance
        if not converged and not fresh:
            # a reused Jacobian that cannot pull the step back: drop it, step again from x
            # with a fresh Jacobian
            self.refresh, self.redo, self.retried = "corrector failed", True, self.retried + 1
            return
        if not converged:
            self.refresh = "corrector failed"
        else:
            self.refresh = reuse.refresh_reason(outcome, proposal.step_size, basis, tolerance)
        x_new = outcome.point
        if self.cfg.projection == "step":
            x_new = project(x_new, self.lower, self.upper)
        else:
            self.evaluated = (x_new, outcome.output, outcome.logits)
        if drawn and self.refresh is None:
            # the next step, drawn from x_new (evaluated with it, unless more iterations
            # followed: then only its direction and size are kept)
            known = outcome.ahead
            evaluated = (known[1], known[2]) if known is not None else None
            following = known[0] if known is not None else move(x_new, drawn[0])
            self.pending = Lookahead(x_new, drawn[0], basis, following, evaluated)
        self.candidate = Candidate(
            x,
            proposal,
            basis.jacobian,
            lam,
            rank,
            x_new,
            outcome.residuals[0],
            retries,
            fresh=fresh,
            corrector_iterations=outcome.iterations,
        )

    def _draw_ahead(self, basis: reuse.Basis, lam: float, drawn: list[Proposal]) -> Any:
        """The ``ahead`` of ``chord``: the next step from a point the corrector reached, its
        direction drawn once (at the first call), when it will be a reused step (not the last
        of the basis, not past the walk's steps; not with ``projection="step"``, which moves
        the point reached)."""
        if (
            self.cfg.projection == "step"
            or self.reuse_age is None
            or self.basis_age + 1 >= self.reuse_age
            or len(self.steps) >= self.cfg.steps
        ):
            return None

        def ahead(point: Tensor) -> Tensor:
            if not drawn:
                drawn.append(self._propose(basis, lam))
            return move(point, drawn[0])

        return ahead

    def _check(self, point_ok: bool, distance: float) -> bool:
        """Check the point the candidate reached; False if the walk retried or stopped."""
        assert self.candidate is not None
        failure = policy.point_failure(
            point_ok, distance, self.bound, self.cfg.divergence_ratio, self.done
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
            entry = {"step": len(self.steps) - 1, "reason": failure.reason}
            self.recoveries.append({**entry, "step_size": half.step_size})
            self._take(c.start, half, c.jacobian, c.lambda_max, c.rank, c.retries + 1)
            return
        self.stop_reason = failure.stop_reason
        if c is not None:
            self.candidate = None if failure.rollback else replace(c, checked=True)

    def _accept(self, y: Tensor, logits: Tensor) -> None:
        """The current point is good: append its record (with the candidate's step, if any)."""
        c, k = self.candidate, self.done
        if not self.steps and self.cfg.corrector and self.reuse_age is None:
            self.corrector = Corrector(self.model_fn, y, self.cfg)
        y0 = self.steps[0].output if self.steps else y
        record = Step(k, self.x, y, torch.softmax(logits, -1), torch.linalg.vector_norm(y - y0))
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
        self.steps.append(record)
        if len(self.steps) > 1 and self.steps[-2].index % self.cfg.record_every:
            self.steps[-2] = replace(self.steps[-2], point=None)

    # -- the end -------------------------------------------------------------------------------
    def settle(self) -> None:
        """Check the last point reached and evaluate the model there (no Jacobian needed)."""
        with torch.no_grad():
            while self.candidate is not None or not self.steps:
                c = self.candidate
                if c is not None and not c.checked:
                    ok, distance, _ = self._host_checks(c.point)
                    if not self._check(ok, distance):
                        continue
                known = self.evaluated
                if known is not None and known[0] is self.x:
                    y, logits = known[1], known[2]
                else:
                    y, logits = self.model_fn(self.x)
                    self.forwards, self.points = self.forwards + 1, self.points + 1
                n = self.done
                if n > 0 and not (torch.isfinite(y).all() and torch.isfinite(logits).all()):
                    self._fail(policy.output_failure(n, "non-finite output"))
                    continue
                self._accept(y, logits)
