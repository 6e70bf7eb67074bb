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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .corrector import Factors, Outcome, svd_factors

__all__ = [
    "CONTRACTION_LIMIT",
    "ROW_SPACE_LIMIT",
    "Basis",
    "Fidelity",
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
