"""The pullback metric, eq. (5) of the SiMEC paper: g = J^T G J.

For a model N: R^n -> R^q with Jacobian J (q x n) at p and a metric G(y) on its output space,
the input space carries the pullback metric (N^*G)_ij = sum_hk (dN_h/dx_i) G_hk (dN_k/dx_j),
i.e. g = J^T G J (eq. 5). With a factor G = L^T L it is g = A^T A for A = L J (q x n), which the
`lowrank` spectrum decomposes without forming the n x n matrix (``simec.geometry.spectrum``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .metrics import OutputMetric

__all__ = ["pullback_factor", "pullback_factors", "pullback_matrix"]


def pullback_matrix(jacobian: Tensor, metric_matrix: Tensor | None = None) -> Tensor:
    """g = J^T G J (eq. 5) for J of shape (q, ...), flattened to (q, n); G = identity if None."""
    jac = jacobian.reshape(jacobian.shape[0], -1)
    if metric_matrix is None:
        return jac.T @ jac
    return jac.T @ metric_matrix @ jac


def pullback_factor(jacobian: Tensor, y: Tensor | None, metric: OutputMetric) -> Tensor:
    """A = L(y) J with G(y) = L^T L, so that g = A^T A (eq. 5); J (q, n). ``y`` None: A = J."""
    return metric.apply_factor(y, jacobian) if y is not None else jacobian


def pullback_factors(jacobians: Tensor, ys: Tensor, metric: OutputMetric) -> Tensor:
    """``pullback_factor`` of B problems: J (B, q, n) at outputs ys (B, q) -> A (B, q, n)."""
    if metric.factor is None:
        return jacobians
    return torch.stack([metric.apply_factor(ys[i], jacobians[i]) for i in range(len(ys))])
