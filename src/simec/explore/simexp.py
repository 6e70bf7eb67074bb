"""Algorithm 2 of the SiMEC paper: SiMExp (Singular Metric Exploration).

    2  for k = 0 .. K-1:                                    simec.explore.driver / walk
    3-4  g = pullback metric at p_k (eq. 5)                 simec.geometry.pullback, spectrum
    5    eigenvectors of the non-zero eigenvalues           the spectrum's non-null vectors
    6    pick one at random (and a random sign, or         geometry.steps.nonnull_direction
         the decomposition's: direction_sign="fixed")
    7    delta = 2 / sqrt(lambda_max)                       geometry.steps.step_size, c = 2
    8    p_{k+1} = p_k + delta w                            simec.explore.proposal.move
    10 store p_0 .. p_K                                     the result's trajectory
    11 project p_k onto the feasible region                 simec.explore.box.project

Walking along non-null directions changes the output fastest: the points leave the equivalence
class of p_0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..geometry import steps
from .proposal import StepRule

__all__ = ["SIMEXP", "SiMExp"]


@dataclass(frozen=True)
class SiMExp(StepRule):
    name: str = "simexp"
    title: str = "SiMExp"
    c: float = 2.0
    directions: str = "non-null"

    def direction(
        self, vectors: Tensor, rank: int, generator: torch.Generator, *, sign: str = "random"
    ) -> Tensor:
        return steps.nonnull_direction(vectors, rank, generator, sign=sign)  # line 6


SIMEXP = SiMExp()
