"""Walks on per-token blocks of the pullback metric (``ExploreConfig.metric_blocks="token"``):
the final version's code (reference 003, section 2).

Eq. (5) as written (``metric_blocks="joint"``, the default) pulls G back onto all m explored
tokens/patches at once: one n x n metric (n = m h) and one direction per step. The official code
instead takes, for each explored token i, the block g_i = J_i^T G J_i of its own h coordinates
(``simec.geometry.blocks``), draws one direction per token from that block's spectrum (SiMEC: a
null direction of g_i; SiMExp: a non-null eigenvector of g_i, its sign by ``direction_sign``)
and moves each token by its own step delta_i (the step rule on that block's spectrum). All
blocks come from the one Jacobian (q x n) of the step, decomposed as one batch of thin SVDs.

A step is stored as one ``Proposal``: the move (delta_1 v_1, .., delta_m v_m) as a unit
``direction`` and its length ||delta|| as ``step_size`` (what ``max_step`` caps: when the whole
move is longer than the cap, every delta_i is scaled down by the same factor), with the delta_i
in ``block_steps``. A token whose block has no direction of the algorithm's kind (SiMEC: a
full-rank block; SiMExp: a zero block) stays where it is for that step; a walk stops only when
no token can move (``policy.spectrum_stop`` with the summed rank). The records' ``lambda_max``
is the largest over the blocks, ``rank`` the sum of the blocks' ranks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..geometry.blocks import (
    BlockSpectra,
    block_nonnull_directions,
    block_null_directions,
    block_spectra,
    block_step_sizes,
)
from .proposal import Proposal, StepRule

__all__ = ["METRIC_BLOCKS", "block_summaries", "propose_blocks", "token_spectra"]

#: the choices of ``ExploreConfig.metric_blocks``: eq. (5)'s joint metric, the code's blocks
METRIC_BLOCKS = ("joint", "token")


def token_spectra(
    factors: Tensor, width: int, rtol: float | None, atol: float | None = None
) -> list[BlockSpectra]:
    """The block spectra of B walks from their factors G^1/2 J (B, q, m * width): one batch of
    B m thin SVDs; zero eigenvalues by ``atol`` (absolute, the code's 0.01) when given, else
    ``rtol``. A non-finite factor is decomposed as zeros (that walk stops on it anyway)."""
    count, q, n = factors.shape
    finite = torch.isfinite(factors).flatten(1).all(dim=1)
    clean = torch.where(finite[:, None, None], factors, torch.zeros_like(factors))
    # (q, B n): the walks side by side, so that the blocks come out walk-major, token-major
    spectra = block_spectra(
        clean.transpose(0, 1).reshape(q, count * n), width, rtol=rtol, atol=atol
    )
    m = n // width
    return [
        BlockSpectra(
            spectra.eigenvalues[i * m : (i + 1) * m],
            spectra.vectors[i * m : (i + 1) * m],
            spectra.keep[i * m : (i + 1) * m],
        )
        for i in range(count)
    ]


def block_summaries(spectra: list[BlockSpectra]) -> Tensor:
    """(B, 3) per walk: the largest lambda_max over its blocks, the sum of their ranks and the
    smallest non-null eigenvalue over its non-zero blocks (0 if none), for the walk's status."""
    rows = []
    for s in spectra:
        nonzero = s.rank > 0
        smallest = torch.where(nonzero, s.lambda_min, torch.full_like(s.lambda_min, torch.inf))
        low = smallest.amin()
        low = torch.where(torch.isinf(low), torch.zeros_like(low), low)
        rank = s.rank.sum().to(s.eigenvalues.dtype)
        rows.append(torch.stack([s.lambda_max.amax(), rank, low]))
    return torch.stack(rows)


def propose_blocks(
    rule: StepRule,
    spectra: BlockSpectra,
    generator: torch.Generator,
    *,
    step_rule: str,
    multiplier: float,
    eta: float,
    cap: float,
    sign: str = "random",
) -> Proposal:
    """Lines 6-7 per token block: a direction for each block (``rule.directions``; SiMExp's
    eigenvector sign by ``sign``), its step delta_i by ``step_rule`` on that block's spectrum (c
    and eta times ``multiplier``), the whole move capped at ``cap``; as one ``Proposal`` (see the
    module's docstring)."""
    if rule.directions == "null":
        directions = block_null_directions(spectra, generator, strict=False)
        moves = spectra.rank < spectra.vectors.shape[1]
    else:
        directions = block_nonnull_directions(spectra, generator, strict=False, sign=sign)
        moves = spectra.rank > 0
    sizes = block_step_sizes(spectra, step_rule, scale=rule.c * multiplier, eta=eta * multiplier)
    sizes = torch.where(moves, sizes, torch.zeros_like(sizes))
    length = float(torch.linalg.vector_norm(sizes))
    if length > cap:
        sizes = sizes * (cap / length)
        length = cap
    move = (sizes[:, None] * directions).reshape(-1)
    direction = move / length if length > 0 else move
    return Proposal(direction, length, block_steps=sizes)
