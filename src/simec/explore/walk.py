"""One walk of SiMEC or SiMExp: a list of frozen records, one per accepted point.

``Walk.steps[k]`` is the k-th accepted point p_k (its output, probabilities, drift) and the step
that reached it (lambda_max, step size, rank at p_{k-1}, drift before the corrector, retries).
Records are only ever appended (``Walk.append``), so an interrupt (Ctrl-C) leaves a walk whose
records are consistent. The points themselves are kept for every ``record_every``-th record
and for the last one (the stored trajectory, Algorithms 1/2 line 10).

Who appends them: ``simec.explore.walker`` (accept a point, then propose the next step); the
step itself: ``simec.explore.stepper``; the loop over batched walks: ``simec.explore.driver``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor

__all__ = ["Step", "Walk"]


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
    #: a guided walk's ||p_k - target|| / ||p_0 - target|| (None for other walks)
    remaining_distance: float | None = None


class Walk:
    """The accepted records p_0, p_1, ... of one walk, in order."""

    def __init__(self, record_every: int = 1) -> None:
        self.record_every = record_every
        self.steps: list[Step] = []

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def point(self) -> Tensor:
        """The last accepted point (always kept)."""
        point = self.steps[-1].point
        assert point is not None
        return point

    def append(self, step: Step) -> None:
        """Record the next accepted point; the one before keeps its point only if stored."""
        self.steps.append(step)
        if len(self.steps) > 1 and self.steps[-2].index % self.record_every:
            self.steps[-2] = replace(self.steps[-2], point=None)
