"""Accept, retry or stop: what a walk does with the point a step reached and with a spectrum.

Pure decisions, no state: the walk (``simec.explore.walk``) applies them. A step's point is
accepted when it is finite, within ``divergence_ratio * ||x0||`` of the start, and the model's
output and Jacobian there are finite. Otherwise the step fails: with ``recover`` retries left it
is retried from its start with half the step size, else the walk stops on the last accepted
point (``rollback``) or, after a divergence, on the point reached.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError, RankZeroMetricError
from .proposal import StepRule

__all__ = ["Failure", "output_failure", "point_failure", "retry", "spectrum_stop"]


@dataclass(frozen=True)
class Failure:
    """Why a step failed: ``reason`` for the recoveries log, ``stop_reason`` if the walk stops,
    ``rollback``: stop on the last accepted point (else on the point the step reached)."""

    reason: str
    stop_reason: str
    rollback: bool = True


def point_failure(
    point_ok: bool, distance: float, bound: float, ratio: float, k: int
) -> Failure | None:
    """The point p_k a step reached: None if usable, else why not (``bound`` = ratio ||x0||)."""
    if not point_ok:
        return Failure("non-finite point", f"non-finite point at step {k}; stopped at step {k - 1}")
    if distance > bound:
        return Failure(
            "diverged", f"diverged at step {k}: ||x - x0|| > {ratio:g} ||x0||", rollback=False
        )
    return None


def output_failure(k: int, what: str = "non-finite output or Jacobian") -> Failure:
    """The model's output (or its Jacobian) at p_k is NaN/Inf."""
    if k == 0:
        raise InputError("the model output or its Jacobian is NaN/Inf at the input")
    return Failure(what, f"{what} at step {k}; stopped at step {k - 1}")


def retry(retries: int, recover: int) -> bool:
    """Retry a failed step that was already halved ``retries`` times?"""
    return retries < recover


def spectrum_stop(rule: StepRule, rank: int, dim: int, k: int) -> str | None:
    """The stop reason when no step can be taken from p_k (raises at the input itself)."""
    if rank == 0:
        if k == 0:
            raise RankZeroMetricError(
                "the pullback metric is zero at the input: the output does not depend on "
                "the explored segments (flat model output, or segments the model ignores)"
            )
        return f"rank-zero metric at step {k}"
    if rule.blocked(rank, dim):
        if k == 0:
            raise InputError(
                f"the explored space has dimension {dim} and the metric has full "
                f"rank: there is no null direction for {rule.title}; explore more segments"
            )
        return f"no null direction at step {k}"
    return None
