"""The pure proposal of one step, lines 5-8 of Algorithms 1 and 2 of the SiMEC paper.

(spectrum of g at p_k, generator) -> a direction and a step size -> the point p_k + delta v.
No state: a ``StepRule`` (``simec.SIMEC``, ``simexp.SIMEXP``) says which eigenvectors to walk
along; ``propose`` draws one with the walk's generator and sizes the step with the shared rule
of ``simec.geometry.steps``; ``move`` is line 8. What to do with the point reached (accept it,
retry with a smaller step, stop) is ``simec.explore.policy``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..geometry import steps

__all__ = ["Proposal", "StepRule", "move", "propose"]


@dataclass(frozen=True)
class StepRule:
    """How one algorithm steps: ``c`` in delta = c / sqrt(lambda_max) (line 7), which
    eigenvectors it walks along (``directions``), and how it draws one (line 6)."""

    name: str
    title: str
    c: float
    directions: str

    def blocked(self, rank: int, dim: int) -> bool:
        """True when no direction of this kind exists at a metric of this rank."""
        return False

    def direction(
        self, vectors: Tensor, rank: int, generator: torch.Generator, *, sign: str = "random"
    ) -> Tensor:
        """A unit direction (n,) from the eigenvectors ``vectors`` (n, >= rank), non-null first;
        ``sign`` (``steps.DIRECTION_SIGNS``) for rules that pick an eigenvector."""
        raise NotImplementedError


@dataclass(frozen=True)
class Proposal:
    """A step from p_k: unit ``direction`` (n,) and ``step_size`` delta.

    With per-token blocks (``metric_blocks="token"``, ``simec.explore.blocks``) the step moves
    each explored token i by its own delta_i along its own unit direction v_i; it is stored as
    one move: ``direction`` = (delta_1 v_1, .., delta_m v_m) / ||delta||, ``step_size`` =
    ||delta|| (the length of the whole move, as for the joint metric), and ``block_steps`` the
    delta_i (m,)."""

    direction: Tensor
    step_size: float
    block_steps: Tensor | None = None


def propose(
    rule: StepRule,
    vectors: Tensor,
    rank: int,
    lambda_max: float,
    generator: torch.Generator,
    *,
    multiplier: float,
    cap: float,
    step_rule: str = "paper-v1",
    lambda_min: float | None = None,
    eta: float = 1.0,
    sign: str = "random",
) -> Proposal:
    """Lines 6-7: a direction drawn by ``rule`` and its step size by ``step_rule``
    (``simec.geometry.steps.rule_step_size``): "paper-v1", delta = min(multiplier * c /
    sqrt(lambda_max), cap); "paper-final", delta = min(multiplier * eta * sqrt(lambda_min /
    lambda_max), cap) with lambda_min the smallest non-null eigenvalue; "official-code", delta =
    min(multiplier * eta / sqrt(lambda_max / (min|lambda| + 1e-6)), cap) with the minimum over
    all n eigenvalues: 0 when the metric has a null space (rank < n; the eigenvalues counted as
    null are taken as 0), else lambda_min. ``sign``: SiMExp's eigenvector sign
    (``ExploreConfig.direction_sign``)."""
    direction = rule.direction(vectors, rank, generator, sign=sign)
    size = steps.rule_step_size(
        step_rule,
        lambda_max,
        lambda_min,
        scale=rule.c * multiplier,
        eta=eta * multiplier,
        cap=cap,
        lambda_min_all=lambda_min if rank >= vectors.shape[0] else 0.0,
    )
    return Proposal(direction, size)


def move(x: Tensor, proposal: Proposal) -> Tensor:
    """Line 8: p_{k+1} = p_k + delta v."""
    return x + proposal.step_size * proposal.direction.reshape(x.shape)
