"""Algorithm 1 of the SiMEC paper: SiMEC (Singular Metric Equivalence Class).

    2  for k = 0 .. K-1:                                    simec.explore.driver / walk
    3-4  g = pullback metric at p_k (eq. 5)                 simec.geometry.pullback, spectrum
    5    eigenvectors of the zero eigenvalue                the complement of the non-null ones
    6    pick one at random                                 geometry.steps.null_direction
    7    delta = 1 / sqrt(lambda_max)                       geometry.steps.step_size, c = 1
    8    p_{k+1} = p_k + delta v                            simec.explore.proposal.move
    10 store p_0 .. p_K                                     the result's trajectory
    11 project p_k onto the feasible region                 simec.explore.box.project

Walking along null directions keeps the output (to first order): the points stay in the
equivalence class of p_0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..geometry import steps
from .proposal import StepRule

__all__ = ["SIMEC", "SiMEC"]


@dataclass(frozen=True)
class SiMEC(StepRule):
    name: str = "simec"
    title: str = "SiMEC"
    c: float = 1.0
    directions: str = "null"

    def blocked(self, rank: int, dim: int) -> bool:
        return rank >= dim  # full rank: no null direction (line 5 finds none)

    def direction(
        self, vectors: Tensor, rank: int, generator: torch.Generator, *, sign: str = "random"
    ) -> Tensor:
        del sign  # a uniformly random null vector has no sign to choose
        return steps.null_direction(vectors[:, :rank], generator)  # line 6


SIMEC = SiMEC()
