"""Step size and step directions of SiMEC and SiMExp (Algorithms 1 and 2 of the SiMEC paper).

These are the functions the explorer runs (``simec.explore.simec`` / ``simec.explore.simexp``)
and the ones ``PullbackSpectrum.step_size/null_direction/nonnull_direction`` delegate to: one
implementation, called by both the code and its tests.

* ``step_size``: lines 7 of Algorithms 1 and 2, delta = c / sqrt(lambda_max), here with an
  optional cap (``ExploreConfig.max_step``): the v1 paper's rule (``step_rule="paper-v1"``).
* ``final_step_size``: the final (NeurIPS 2025) version's rule for both algorithms,
  delta = eta * sqrt(lambda_min_nonzero / lambda_max) (reference 003, section 1;
  ``step_rule="paper-final"``). lambda_min_nonzero is the smallest eigenvalue the spectrum keeps
  as non-null (the back-end's rank rule, or ``ExploreConfig.rtol``). The paper's code differs: it
  takes the minimum over *all* eigenvalues plus 1e-6, i.e. delta = eta / sqrt(lambda_max /
  (lambda_min + 1e-6)) ~ eta * 1e-3 / sqrt(lambda_max); we implement the text's rule.
* ``official_code_step_size``: the final version's *code*, delta = eta / sqrt(lambda_max /
  (min|lambda| + 1e-6)) with the minimum over all eigenvalues (reference 003, section 2;
  ``step_rule="official-code"``; per token block with ``metric_blocks="token"``, as the code).
* ``rule_step_size``: the step of a named rule (``STEP_RULES``), the one function the explorer
  calls.
* ``null_direction``: line 6 of Algorithm 1, a random unit vector of the null space of g.
* ``nonnull_direction``: line 6 of Algorithm 2, a random non-null eigenvector of g, with a random
  sign (default) or the sign the decomposition gives (``sign="fixed"``, as the official code,
  which walks along eigh's eigenvector as returned).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "DIRECTION_SIGNS",
    "STEP_RULES",
    "final_step_size",
    "nonnull_direction",
    "official_code_step_size",
    "null_direction",
    "rule_step_size",
    "step_size",
]

#: the step-size rules ``ExploreConfig.step_rule`` names: the v1 paper's, the final version's
#: text's and the final version's code's
STEP_RULES = ("paper-v1", "paper-final", "official-code")

#: the signs ``ExploreConfig.direction_sign`` names for SiMExp's eigenvector: "random", a random
#: sign each step (the paper's eigenvectors have no sign, so neither is preferred); "fixed", the
#: sign the decomposition gives, largest-magnitude entry positive (``simec.geometry.spectrum``).
#: The official code walks along ``eigh``'s eigenvector as returned: a sign fixed by the solver,
#: the same from one step to the next while the eigenvector changes little, so steps along one
#: eigenvector add up instead of cancelling. "fixed" has that property with a sign that does not
#: depend on the LAPACK build.
DIRECTION_SIGNS = ("random", "fixed")


def step_size(lambda_max: float, scale: float, cap: float = math.inf) -> float:
    """delta = min(scale / sqrt(lambda_max), cap): Algorithm 1 line 7 (scale c = 1), Algorithm 2
    line 7 (c = 2); the caller multiplies c by its step multiplier. ``lambda_max`` > 0."""
    return min(scale / lambda_max**0.5, cap)


def final_step_size(
    lambda_max: float, lambda_min: float, eta: float, cap: float = math.inf
) -> float:
    """delta = min(eta * sqrt(lambda_min / lambda_max), cap): the final version's rule, with
    ``lambda_min`` the smallest non-null eigenvalue (0 < lambda_min <= lambda_max)."""
    if not 0 < lambda_min <= lambda_max:
        raise ValueError(
            f"need 0 < lambda_min <= lambda_max, got lambda_min={lambda_min!r}, "
            f"lambda_max={lambda_max!r}"
        )
    return min(eta * (lambda_min / lambda_max) ** 0.5, cap)


#: the official code's regulariser of min|lambda| (reference 003, section 2, "[code]")
CODE_EPSILON = 1e-6


def official_code_step_size(
    lambda_max: float, lambda_min_all: float, eta: float, cap: float = math.inf
) -> float:
    """delta = min(eta / sqrt(lambda_max / (lambda_min_all + 1e-6)), cap): the final version's
    code (reference 003, section 2), with ``lambda_min_all`` the smallest eigenvalue over *all*
    of them, null ones included: 0 whenever the metric has a null space, so delta = eta * 1e-3 /
    sqrt(lambda_max) then. The text's rule is ``final_step_size``."""
    if not lambda_max > 0 or lambda_min_all < 0:
        raise ValueError(
            f"need lambda_max > 0 and lambda_min_all >= 0, got lambda_max={lambda_max!r}, "
            f"lambda_min_all={lambda_min_all!r}"
        )
    return min(eta / math.sqrt(lambda_max / (lambda_min_all + CODE_EPSILON)), cap)


def rule_step_size(
    rule: str,
    lambda_max: float,
    lambda_min: float | None,
    *,
    scale: float,
    eta: float,
    cap: float = math.inf,
    lambda_min_all: float | None = None,
) -> float:
    """The step of ``rule``: "paper-v1" is ``step_size(lambda_max, scale, cap)`` (scale = c
    times the step multiplier), "paper-final" is ``final_step_size(lambda_max, lambda_min,
    eta, cap)`` (eta times the step multiplier), "official-code" is
    ``official_code_step_size(lambda_max, lambda_min_all, eta, cap)``."""
    if rule == "paper-v1":
        return step_size(lambda_max, scale, cap)
    if rule == "paper-final":
        if lambda_min is None:
            raise ValueError("the paper-final step rule needs lambda_min")
        return final_step_size(lambda_max, lambda_min, eta, cap)
    if rule == "official-code":
        if lambda_min_all is None:
            raise ValueError("the official-code step rule needs lambda_min_all")
        return official_code_step_size(lambda_max, lambda_min_all, eta, cap)
    raise ValueError(f"unknown step rule {rule!r}; choose one of {list(STEP_RULES)}")


def null_direction(basis: Tensor, generator: torch.Generator | None) -> Tensor:
    """A unit vector uniformly distributed in the null space of g (Algorithm 1 line 6).

    ``basis`` (n, r): orthonormal non-null eigenvectors of g, r < n. The paper picks one null
    eigenvector at random; eigh returns an arbitrary orthonormal basis of that space, so a
    Gaussian vector projected off the non-null eigenvectors has the same role and, unlike one
    basis vector, does not depend on the solver's choice of basis. One ``randn`` draw of n values.
    """
    z = torch.randn(basis.shape[0], generator=generator, dtype=basis.dtype, device=basis.device)
    v = z - basis @ (basis.T @ z)
    return v / torch.linalg.vector_norm(v)


def nonnull_direction(
    vectors: Tensor, rank: int, generator: torch.Generator | None, *, sign: str = "random"
) -> Tensor:
    """One of the ``rank`` first columns of ``vectors`` chosen uniformly (Algorithm 2 line 6).
    One ``randint`` draw in [0, 2 rank): index // 2 picks the column, the parity its sign with
    ``sign="random"``; with ``sign="fixed"`` the parity is ignored and the column keeps the sign
    the decomposition gave it (``DIRECTION_SIGNS``). Both settings make the same draw, so they
    pick the same eigenvectors. The choice stays on the device (no read-back of the index)."""
    if sign not in DIRECTION_SIGNS:
        raise ValueError(f"unknown direction sign {sign!r}; choose one of {list(DIRECTION_SIGNS)}")
    draw = torch.randint(0, 2 * rank, (1,), generator=generator, device=vectors.device)
    column = vectors.index_select(1, draw // 2)[:, 0]
    if sign == "fixed":
        return column
    return (1 - 2 * (draw % 2).to(vectors.dtype)) * column
