"""Predictor-corrector continuation with Jacobian reuse (``ExploreConfig.jacobian_reuse``).

SiMEC traces the level set N(x) = N(x0). The paper takes a fresh Jacobian at every step (an
Euler predictor, no corrector). With reuse, one Jacobian J_j (taken at p_j) serves the steps
p_j, p_{j+1}, ...: each step is predicted along a null direction of J_j with the step size of
its lambda_max, then pulled back onto the level set by chord iterations
x <- x - J_j^+ (N(x) - N(x0)), which cost one forward pass each (Allgower & Georg, Introduction
to Numerical Continuation Methods, the predictor-corrector and update chapters).

Every accepted point is evaluated by the model (its drift and class are measured, never
estimated). A reused step costs about one model call: the next step's direction is drawn as
soon as the corrector's update is expected to converge (the residual times the last measured
contraction rate is within the tolerance), and the updated point and the next step's
predicted point are evaluated in one batched call (``ModelFunction.many``: vmap; one call per
point for a model that cannot be batched). When the update did converge, the step is accepted
and the next step's first residual is already known; when not, the iterations go on and only
the drawn direction is kept. On a large model a batch of two costs far less than two calls
(BERT-base, 16 tokens, one CPU thread: ~1.3x one call), on a small one about the same.

Refresh rules (a fresh Jacobian at the current point before the next step):

* ``age``: the Jacobian has served N steps (``jacobian_reuse=N``; auto: ``REUSE_AUTO_MAX_AGE``).
* ``slow contraction``: a corrector iteration reduced the residual by less than
  ``CONTRACTION_LIMIT`` (the chord's contraction rate is ||I - J(x) J_j^+|| on the row space: it
  grows as J drifts from J_j; a fresh Jacobian contracts quadratically).
* ``left the null space``: the first residual, right after the predictor step of size delta along
  a unit direction v of null(J_j), is ||N(p + delta v) - N(p)|| ~ delta ||J(p) v|| + O(delta^2);
  ``residual / (delta ||J_j||)`` estimates (from below) the component of v in the current row
  space. Above ``ROW_SPACE_LIMIT`` the reused null space is no longer the null space.
* ``corrector failed``: the residual's correctable part (its component in the range of J_j;
  the rest lies along directions the rank rule counts as null, as in the paper's walk) is still
  above the tolerance after the iterations. A step
  predicted with a reused Jacobian is then dropped and retried from its start with a fresh one
  (a new direction draw); a step with a fresh Jacobian is kept as the plain corrector keeps it.

At every refresh the angle between the reused and the fresh null spaces (the largest principal
angle between the row spaces of the two Jacobians' pullback metrics) is recorded: the moments
when the reused Jacobian is stalest.

``Reuse`` is the stepper of such a walk (``simec.explore.stepper``): it owns the kept Jacobian
(``Basis``), its age, why the next step needs a fresh one, the step drawn ahead (``Lookahead``)
and the model's output at the point it reached; the walker and the driver only ask it whether
the next iteration needs a Jacobian and for the next step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .config import REUSE_MIN_ITERATIONS
from .corrector import Factors, Outcome, chord, svd_factors
from .proposal import Proposal, move
from .stepper import Candidate, Cost, Evaluation, Setup, Status, Stepper
from .walk import Walk

__all__ = [
    "CONTRACTION_LIMIT",
    "ROW_SPACE_LIMIT",
    "Basis",
    "Fidelity",
    "Lookahead",
    "Reuse",
    "accept_tolerance",
    "null_space_angle",
    "refresh_reason",
]

#: refresh when a corrector iteration shrinks the residual by a factor above this
CONTRACTION_LIMIT = 0.25
#: refresh when residual / (delta ||J||) after the predictor step exceeds this (a sine)
ROW_SPACE_LIMIT = 0.05
#: the corrector's tolerance is at least this many round-offs of the output
ROUND_OFF_FLOOR = 64


@dataclass(frozen=True)
class Basis:
    """A Jacobian kept for reuse: its spectrum (what the predictor needs), the factors of its
    pseudo-inverse (what the corrector needs) and where it was taken."""

    jacobian: Tensor  # (q, n)
    vectors: Tensor  # (n, >= rank), non-null eigenvectors of g first
    rank: int
    lambda_max: float
    factors: Factors
    step: int  # the index k of the point p_k where it was taken
    lambda_min: float = math.nan  # its smallest non-null eigenvalue (step_rule="paper-final")

    @classmethod
    def build(
        cls,
        jac: Tensor,
        vectors: Tensor,
        rank: int,
        lambda_max: float,
        singular_values: Tensor | None,
        step: int,
        *,
        lambda_min: float = math.nan,
    ) -> Basis:
        """With G = I (``singular_values`` given: those of A = J from the spectrum) the
        pseudo-inverse comes from the spectrum's factors, u = J V / s; else from an SVD of J."""
        if singular_values is not None:
            v = vectors[:, :rank]
            s = singular_values[:rank].to(jac.dtype)
            factors = Factors((jac @ v) / s, s, v.T)
        else:
            factors = svd_factors(jac)
        return cls(jac, vectors, rank, lambda_max, factors, step, lambda_min)


def null_space_angle(old: Basis, new: Basis) -> float:
    """The largest principal angle (degrees) between the null spaces of two metrics: that of
    their row spaces (n - rank dimensional null spaces are never formed), 90 when the ranks
    differ."""
    if old.rank != new.rank:
        return 90.0
    if old.rank == 0:
        return 0.0
    overlap = new.vectors[:, : new.rank].T @ old.vectors[:, : old.rank]
    cosines = torch.linalg.svdvals(overlap.to(torch.float64))
    return math.degrees(math.acos(min(1.0, max(0.0, float(cosines.min())))))


def accept_tolerance(tolerance: float, y0: Tensor) -> float:
    """The corrector's tolerance, raised to ``ROUND_OFF_FLOOR`` round-offs of the output (a
    float32 model cannot meet 1e-7 on its probabilities)."""
    eps = torch.finfo(y0.dtype).eps
    return max(tolerance, ROUND_OFF_FLOOR * eps * max(1.0, float(torch.linalg.vector_norm(y0))))


def refresh_reason(
    outcome: Outcome, step_size: float, basis: Basis, tolerance: float
) -> str | None:
    """Why the next step needs a fresh Jacobian, after a step that converged (None: reuse)."""
    residuals = outcome.correctable
    if step_size > 0 and basis.factors.norm > 0:
        if residuals[0] / (step_size * basis.factors.norm) > ROW_SPACE_LIMIT:
            return "left the null space"
    for before, after in zip(residuals, residuals[1:]):
        if before > tolerance and after > CONTRACTION_LIMIT * before:
            return "slow contraction"
    return None


@dataclass(frozen=True)
class Lookahead:
    """The next step of a Jacobian-reuse walk, drawn before its start was accepted: from
    ``start`` along ``proposal`` of ``basis`` to ``point``; ``evaluated``: (y, logits) there,
    when the model ran it in one batched call with ``start`` (``corrector.chord``'s ahead)."""

    start: Tensor
    proposal: Proposal
    basis: Basis
    point: Tensor
    evaluated: tuple[Tensor, Tensor] | None = None


class Reuse(Stepper):
    """The predictor-corrector stepper: a kept Jacobian serves up to ``age`` steps."""

    def __init__(self, setup: Setup, cost: Cost, generator: torch.Generator, age: int) -> None:
        super().__init__(setup, cost, generator)
        self.jacobian_reuse = setup.cfg.jacobian_reuse
        self.age = age
        self.basis: Basis | None = None
        self.basis_age = 0  # steps predicted from ``basis``
        self.refresh: str | None = None  # why the next step needs a fresh Jacobian
        self.evaluated: tuple[Tensor, Tensor, Tensor] | None = None  # (x, y, logits) known
        self.pending: Lookahead | None = None  # the next step, drawn ahead
        self.contraction = 0.0  # the corrector's last measured contraction rate

    @property
    def needs_jacobian(self) -> bool:
        if self.basis is None or self.refresh is not None:
            return True
        return self.basis_age >= self.age

    def output(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(y, logits) at x: those the corrector computed when it ended there, else a pass."""
        known = self.evaluated
        if known is not None and known[0] is x:
            return known[1], known[2]
        return super().output(x)

    def evaluate(self, x: Tensor) -> Evaluation:
        """The reused iteration's look at x: a forward pass (none if the corrector made it);
        lambda_max and the rank are the kept Jacobian's."""
        basis = self.basis
        assert basis is not None
        y, logits = self.output(x)
        point_ok, distance, finite = self.setup.host_checks(x, y, logits)
        distance = distance if point_ok else math.inf
        status = Status(point_ok, finite, basis.lambda_max, basis.rank, distance, basis.lambda_min)
        return Evaluation(status, y, logits)

    def step(self, walk: Walk, evaluation: Evaluation) -> Candidate | None:
        """Keep a fresh Jacobian if there is one, then step from the kept one: the step drawn
        ahead by the last step (``pending``) if it was drawn from this basis, else a new one."""
        if evaluation.jacobian is not None:
            self._keep(walk, evaluation)
        basis, lam, x = self.basis, evaluation.status.lambda_max, walk.point
        assert basis is not None
        pending, self.pending = self.pending, None
        if pending is None or pending.basis is not basis:
            return self._take(walk, x, self._propose(basis, lam), lam, basis.rank, 0)
        ahead = pending if pending.start is x and pending.evaluated is not None else None
        return self._take(walk, x, pending.proposal, lam, basis.rank, 0, ahead=ahead)

    def retry(self, walk: Walk, failed: Candidate, proposal: Proposal) -> Candidate | None:
        c = failed
        return self._take(walk, c.start, proposal, c.lambda_max, c.rank, c.retries + 1)

    def classes_changed(self) -> None:
        """The kept Jacobian and the outputs known are of the old classes: a fresh one next."""
        self.refresh, self.pending, self.evaluated = "classes changed", None, None

    def _keep(self, walk: Walk, evaluation: Evaluation) -> None:
        """The fresh Jacobian at the last accepted point becomes the kept one."""
        s, jac, vectors = evaluation.status, evaluation.jacobian, evaluation.vectors
        assert jac is not None and vectors is not None
        identity = self.setup.metric.factor is None
        basis = Basis.build(
            jac,
            vectors,
            s.rank,
            s.lambda_max,
            evaluation.singular_values if identity else None,
            len(walk) - 1,
            lambda_min=s.lambda_min,
        )
        if self.basis is not None:
            angle = null_space_angle(self.basis, basis)
            self.refreshes.append(
                {"step": basis.step, "reason": self.refresh or "age", "angle_deg": angle}
            )
        self.basis, self.basis_age, self.refresh, self.pending = basis, 0, None, None

    def _propose(self, basis: Basis, lambda_max: float) -> Proposal:
        """Lines 6-7 from the kept Jacobian's spectrum."""
        return self.setup.propose(
            basis.vectors, basis.rank, lambda_max, basis.lambda_min, self.generator
        )

    def _take(
        self,
        walk: Walk,
        x: Tensor,
        proposal: Proposal,
        lam: float,
        rank: int,
        retries: int,
        *,
        ahead: Lookahead | None = None,
    ) -> Candidate | None:
        """A predictor-corrector step from x; ``ahead``: this step, drawn and evaluated by the
        last one (its first residual is known). None: a reused Jacobian could not pull the
        step back onto the level set; the walk steps again from x with a fresh Jacobian."""
        basis = self.basis
        assert basis is not None
        self.pending = None
        fresh = self.basis_age == 0
        y0 = self.setup.model_fn.level(walk.steps[0].output)
        tolerance = accept_tolerance(self.setup.cfg.corrector_tolerance, y0)
        drawn: list[Proposal] = []
        outcome = self._correct(walk, x, proposal, lam, tolerance, ahead, drawn)
        self.basis_age += 1
        converged = outcome.final <= tolerance
        if not converged and not fresh:
            self.refresh, self.retried = "corrector failed", self.retried + 1
            return None
        if not converged:
            self.refresh = "corrector failed"
        else:
            self.refresh = refresh_reason(outcome, proposal.step_size, basis, tolerance)
        x_new = self.setup.box_step(outcome.point)
        if self.setup.cfg.projection != "step":
            self.evaluated = (x_new, outcome.output, outcome.logits)
        if drawn and self.refresh is None:
            # the next step, drawn from x_new (evaluated with it, unless more iterations
            # followed: then only its direction and size are kept)
            known = outcome.ahead
            evaluated = (known[1], known[2]) if known is not None else None
            following = known[0] if known is not None else move(x_new, drawn[0])
            self.pending = Lookahead(x_new, drawn[0], basis, following, evaluated)
        return Candidate(
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

    def _correct(
        self,
        walk: Walk,
        x: Tensor,
        proposal: Proposal,
        lam: float,
        tolerance: float,
        ahead: Lookahead | None,
        drawn: list[Proposal],
    ) -> Outcome:
        """The predictor step and its chord iterations; the next step drawn into ``drawn``."""
        basis = self.basis
        assert basis is not None
        model_fn = self.setup.model_fn
        outcome: Outcome = chord(
            model_fn,
            ahead.point if ahead is not None else move(x, proposal),
            model_fn.level(walk.steps[0].output),
            basis.factors,
            iterations=max(self.setup.cfg.corrector_iterations, REUSE_MIN_ITERATIONS),
            tolerance=tolerance,
            known=ahead.evaluated if ahead is not None else None,
            ahead=self._draw_ahead(walk, basis, lam, drawn),
            many=model_fn.many,
            contraction=self.contraction,
        )
        self.cost.add(outcome.calls, outcome.points)
        if len(outcome.correctable) > 1 and outcome.correctable[-2] > 0:
            self.contraction = outcome.correctable[-1] / outcome.correctable[-2]
        return outcome

    def _draw_ahead(self, walk: Walk, basis: Basis, lam: float, drawn: list[Proposal]) -> Any:
        """The ``ahead`` of ``chord``: the next step from a point the corrector reached, its
        direction drawn once (at the first call), when it will be a reused step (not the last
        of the basis, not past the walk's steps; not with ``projection="step"``, which moves
        the point reached)."""
        cfg = self.setup.cfg
        if cfg.projection == "step" or self.basis_age + 1 >= self.age or len(walk) >= cfg.steps:
            return None

        def ahead(point: Tensor) -> Tensor:
            if not drawn:
                drawn.append(self._propose(basis, lam))
            return move(point, drawn[0])

        return ahead


@dataclass(frozen=True)
class Fidelity:
    """What a walk cost and how well it kept its output, per run (saved in summary.json).

    ``jacobians``: Jacobians taken (the first at p_0 included); ``forward_passes``: model
    calls outside the Jacobians (corrector iterations, reused steps, the last point);
    ``forward_points``: the points they evaluated (a reused step evaluates its corrected point
    and the next step's predicted one in one batched call; None in runs saved before).
    Per step k < K: ``fresh`` (the step was predicted from a Jacobian taken at its start),
    ``corrector_iterations`` (updates made; None without a corrector), ``drift_before``
    (||N(x) - N(x0)|| right after the predictor step; None without a corrector) and
    ``drift_after`` (at the accepted point). ``refreshes``: one entry per Jacobian taken after
    the first: the step, the reason, and ``angle_deg`` between the reused and the fresh null
    space there. ``retried``: steps dropped because the corrector failed with a reused Jacobian.
    """

    jacobian_reuse: str
    jacobians: int
    forward_passes: int
    fresh: list[bool] = field(default_factory=list)
    corrector_iterations: list[int | None] = field(default_factory=list)
    drift_before: list[float | None] = field(default_factory=list)
    drift_after: list[float] = field(default_factory=list)
    refreshes: list[dict[str, Any]] = field(default_factory=list)
    retried: int = 0
    forward_points: int | None = None

    @property
    def steps(self) -> int:
        return len(self.drift_after)

    @property
    def jacobians_per_step(self) -> float:
        return self.jacobians / self.steps if self.steps else math.nan

    @property
    def angles(self) -> list[float]:
        return [r["angle_deg"] for r in self.refreshes if r.get("angle_deg") is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "jacobian_reuse": self.jacobian_reuse,
            "jacobians": self.jacobians,
            "forward_passes": self.forward_passes,
            "fresh": list(self.fresh),
            "corrector_iterations": list(self.corrector_iterations),
            "drift_before": list(self.drift_before),
            "drift_after": list(self.drift_after),
            "refreshes": [dict(r) for r in self.refreshes],
            "retried": self.retried,
            "forward_points": self.forward_points,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Fidelity:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in names})
