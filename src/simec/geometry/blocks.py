"""Per-token blocks of the pullback metric: the final version's code (reference 003, section 2,
"[code] details not in the paper": "The metric is one h x h block J_i^T J_i per explored token,
not a joint metric").

Eq. (5) as written pulls G back onto all explored coordinates at once: one n x n metric
g = J^T G J with n = m h (m explored tokens or patches of width h), and one direction in that
space per step. The official code instead takes, for each explored token i, the block
g_i = J_i^T G J_i of its own h coordinates (J_i = dy/dx_i, q x h), draws one direction per
token from that block's spectrum and moves each token by its own step.

What the difference means: g_i is the i-th diagonal block of g. A vector v_i with g_i v_i = 0
(A_i v_i = 0 for A = G^{1/2} J) gives a joint vector (0, .., v_i, .., 0) with g v = 0, and so does
any sum of such vectors over the tokens: per-block null directions are a subset of the joint null
space (of dimension sum_i (h - rank g_i) <= m h - rank g). SiMExp's per-block eigenvectors are
eigenvectors of the diagonal blocks, not of g: moves that change the output through several
tokens together (the joint top eigenvectors) are not drawn.

All blocks are decomposed at once from one factor A (q x m h): a batched thin SVD of the m
matrices A_i (q x h), with the `lowrank` rank rule per block (``simec.geometry.spectrum``), or
the code's absolute threshold (``atol``; the code counts |lambda| < 0.01 as zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError
from .spectrum import lowrank_spectra
from .steps import CODE_EPSILON, DIRECTION_SIGNS, STEP_RULES

__all__ = [
    "BlockSpectra",
    "block_nonnull_directions",
    "block_null_directions",
    "block_spectra",
    "block_step_sizes",
]


@dataclass(frozen=True)
class BlockSpectra:
    """The spectra of m blocks g_i = A_i^T A_i (h x h), in fixed shapes.

    ``eigenvalues`` (m, k) descending (k = min(q, h)), ``vectors`` (m, h, k) the eigenvectors
    (canonical signs: largest-magnitude entry positive), ``keep`` (m, k) the non-null ones (a
    prefix of each row). Eigenvalues past k are zero (h > q: every block has a null space)."""

    eigenvalues: Tensor
    vectors: Tensor
    keep: Tensor

    @property
    def rank(self) -> Tensor:
        """(m,) the rank of each block."""
        return self.keep.sum(dim=-1)

    @property
    def lambda_max(self) -> Tensor:
        """(m,) the largest eigenvalue of each block."""
        return self.eigenvalues[:, 0]

    @property
    def lambda_min(self) -> Tensor:
        """(m,) the smallest non-null eigenvalue of each block (0 where a block is zero)."""
        inf = torch.full_like(self.eigenvalues, torch.inf)
        kept = torch.where(self.keep, self.eigenvalues, inf)
        smallest = kept.amin(dim=-1)
        return torch.where(torch.isinf(smallest), torch.zeros_like(smallest), smallest)

    @property
    def lambda_min_all(self) -> Tensor:
        """(m,) the smallest eigenvalue of each block over all h of them, null ones included (0
        when a block has a null space, which it has whenever h > q): the code's min|lambda|."""
        width = self.vectors.shape[1]
        if width > self.eigenvalues.shape[1]:
            return torch.zeros_like(self.eigenvalues[:, 0])
        return torch.where(self.keep, self.eigenvalues, torch.zeros_like(self.eigenvalues)).amin(-1)


def block_spectra(
    factor: Tensor, width: int, *, rtol: float | None = None, atol: float | None = None
) -> BlockSpectra:
    """Spectra of the per-token blocks of g = A^T A for A = G^{1/2} J of shape (q, m * width),
    the explored tokens' coordinates in order (token-major, as ``Segments`` flattens them).

    Zero eigenvalues: ``atol`` (absolute, on eigenvalues: the code's 0.01), else ``rtol``
    relative to each block's lambda_max, else the `lowrank` rule (max(q, h) eps)^2 per block.
    """
    if factor.ndim != 2 or factor.shape[1] % width:
        raise InputError(
            f"a factor (q, m * {width}) is needed for blocks of width {width}, got "
            f"{tuple(factor.shape)}"
        )
    q = factor.shape[0]
    blocks = factor.reshape(q, -1, width).transpose(0, 1)  # (m, q, h)
    # the batched thin SVD with canonical signs of the joint `lowrank` back-end, per block
    spectra = lowrank_spectra(blocks, rtol=rtol)
    values = spectra.singular_values**2
    if atol is not None:
        keep = values > atol
    else:
        rel = rtol if rtol is not None else (max(q, width) * torch.finfo(factor.dtype).eps) ** 2
        keep = values > rel * values[:, :1]
    return BlockSpectra(eigenvalues=values, vectors=spectra.vectors, keep=keep)


def block_null_directions(
    spectra: BlockSpectra, generator: torch.Generator | None, *, strict: bool = True
) -> Tensor:
    """(m, h): for each block a unit vector uniformly distributed in its null space (SiMEC,
    Algorithm 1 line 6, per token): a Gaussian vector projected off the block's non-null
    eigenvectors. One ``randn`` draw of m h values. A block of full rank has no null direction:
    ``InputError``, or with ``strict=False`` a zero row (that token stays; the draws of the
    other blocks are the same)."""
    m, width, _ = spectra.vectors.shape
    has = spectra.rank < width
    if strict and not bool(has.all()):
        raise InputError("a block of the pullback metric has full rank: no null direction there")
    z = torch.randn(
        m, width, generator=generator, dtype=spectra.vectors.dtype, device=spectra.vectors.device
    )
    kept = spectra.vectors * spectra.keep[:, None, :]
    v = z - (kept @ (kept.mT @ z[..., None]))[..., 0]
    norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    unit = v / torch.where(has[:, None], norm, torch.ones_like(norm))
    return torch.where(has[:, None], unit, torch.zeros_like(unit))


def block_nonnull_directions(
    spectra: BlockSpectra,
    generator: torch.Generator | None,
    *,
    strict: bool = True,
    sign: str = "random",
) -> Tensor:
    """(m, h): for each block one of its non-null eigenvectors chosen uniformly, with a random
    sign, or with ``sign="fixed"`` the sign the decomposition gives (canonical: largest-magnitude
    entry positive; ``steps.DIRECTION_SIGNS``) (SiMExp, Algorithm 2 line 6, per token). One
    ``rand`` draw per block, the same for both signs (they pick the same eigenvectors). A zero
    block has no non-null direction: ``InputError``, or with ``strict=False`` a zero row (that
    token stays; the draws of the other blocks are the same)."""
    if sign not in DIRECTION_SIGNS:
        raise ValueError(f"unknown direction sign {sign!r}; choose one of {list(DIRECTION_SIGNS)}")
    rank = spectra.rank
    has = rank > 0
    if strict and not bool(has.all()):
        raise InputError("a block of the pullback metric is zero: no non-null direction there")
    u = torch.rand(
        len(rank), generator=generator, dtype=torch.float64, device=spectra.vectors.device
    )
    count = 2 * rank.clamp(min=1)
    draw = (u * count.to(torch.float64)).long().clamp(max=count - 1)
    factor = has.to(spectra.vectors.dtype)
    if sign == "random":
        factor = factor * (1 - 2 * (draw % 2)).to(spectra.vectors.dtype)
    index = (draw // 2)[:, None, None].expand(-1, spectra.vectors.shape[1], 1)
    return factor[:, None] * torch.gather(spectra.vectors, 2, index)[..., 0]


def block_step_sizes(spectra: BlockSpectra, rule: str, *, scale: float, eta: float) -> Tensor:
    """(m,) the step of each block by the step rule ``rule`` (``simec.geometry.steps``) from that
    block's own spectrum: "paper-v1" scale / sqrt(lambda_max_i), "paper-final" eta *
    sqrt(lambda_min_i / lambda_max_i) (smallest non-null), "official-code" eta /
    sqrt(lambda_max_i / (min_all_i + 1e-6)) (smallest over all h eigenvalues, null ones as 0: the
    code's rule per token). A zero block (lambda_max_i = 0) gets 0. No cap (the caller's)."""
    if rule not in STEP_RULES:
        raise ValueError(f"unknown step rule {rule!r}; choose one of {list(STEP_RULES)}")
    lam = spectra.lambda_max
    positive = lam > 0
    safe = torch.where(positive, lam, torch.ones_like(lam))
    if rule == "paper-v1":
        size = scale / safe.sqrt()
    elif rule == "paper-final":
        size = eta * (spectra.lambda_min / safe).sqrt()
    else:
        size = eta * ((spectra.lambda_min_all + CODE_EPSILON) / safe).sqrt()
    return torch.where(positive, size, torch.zeros_like(size))
