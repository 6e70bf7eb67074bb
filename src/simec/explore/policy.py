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

__all__ = [
    "CLOSER",
    "Failure",
    "guided_stop",
    "output_failure",
    "point_failure",
    "rank_zero",
    "retry",
    "spectrum_stop",
]

#: a guided walk got closer when its remaining distance fell below this fraction of its least
CLOSER = 0.999


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
        return rank_zero(k)
    if rule.blocked(rank, dim):
        if k == 0:
            raise InputError(
                f"the explored space has dimension {dim} and the metric has full "
                f"rank: there is no null direction for {rule.title}; explore more segments"
            )
        return f"no null direction at step {k}"
    return None


def rank_zero(k: int) -> str:
    """The stop reason of a walk whose metric is zero at p_k (a critical point of the model)."""
    return f"rank-zero metric at step {k}"


def guided_stop(
    rank: int,
    k: int,
    projected: float,
    floor: float,
    stalled: int,
    patience: int | None,
    elapsed: float,
    max_seconds: float | None,
) -> str | None:
    """Why a guided walk (``simec.explore.guided``) stops at p_k, or None: a rank-zero metric
    (at k = 0 too: the caller decides whether that is an error); the projected distance
    ``projected`` at most ``floor`` (tolerance * ||p_0 - target||: no null direction gets
    closer); ``stalled`` >= ``patience`` steps since the remaining distance last fell below
    ``CLOSER`` times its least value; more than ``max_seconds`` spent."""
    if rank == 0:
        return rank_zero(k)
    if projected <= floor:
        return f"projected distance vanished at step {k}"
    if patience is not None and stalled >= patience:
        return f"stopped getting closer at step {k}"
    if max_seconds is not None and elapsed > max_seconds:
        return f"time budget spent at step {k}"
    return None
