"""The optional corrector after a SiMEC step (``ExploreConfig.corrector``): not in the paper.

Gauss-Newton (chord) iterations x <- x - J^+ (N(x) - N(x0)) with the pseudo-inverse of a
Jacobian J taken at the step's start: forward passes only. ``Corrector`` is the corrector of the
paper-faithful walk (a fresh J every step, its own SVD); ``chord`` is the same iteration for the
Jacobian-reuse walk (``simec.explore.reuse``), which factors a Jacobian once and keeps it for
several steps, and which reports every residual it measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .config import ExploreConfig

__all__ = ["Corrector", "Factors", "Outcome", "chord", "svd_factors"]


@dataclass(frozen=True)
class Factors:
    """J^+ = vh^T diag(1/s) u^T for a (q, n) Jacobian: its non-zero singular triplets."""

    u: Tensor
    s: Tensor
    vh: Tensor

    def solve(self, residual: Tensor, shape: torch.Size) -> Tensor:
        """J^+ residual, shaped like the point."""
        return (self.vh.T @ ((self.u.T @ residual) / self.s)).reshape(shape)

    @property
    def norm(self) -> float:
        """||J||_2, the largest singular value."""
        return float(self.s[0]) if self.s.numel() else 0.0


def svd_factors(jac: Tensor) -> Factors:
    """The SVD of J (q, n), singular values below max(q, n) eps s_max dropped (numpy's rank)."""
    u, s, vh = torch.linalg.svd(jac, full_matrices=False)
    keep = s > max(jac.shape) * torch.finfo(s.dtype).eps * s[0]
    return Factors(u[:, keep], s[keep], vh[keep])


class Corrector:
    """Gauss-Newton pull-back onto the level set N(x) = y0 with the pseudo-inverse of J(p_k)."""

    def __init__(self, fn: Callable[[Tensor], Any], y0: Tensor, cfg: ExploreConfig) -> None:
        self.fn, self.y0, self.cfg = fn, y0, cfg
        self.iterations = 0  # updates made by the last call

    def __call__(self, x: Tensor, jac: Tensor) -> tuple[Tensor, float]:
        factors = svd_factors(jac)
        first = math.nan
        self.iterations = 0
        for _ in range(self.cfg.corrector_iterations):
            with torch.no_grad():
                residual = self.fn(x)[0] - self.y0
            norm = float(torch.linalg.vector_norm(residual))
            if math.isnan(first):
                first = norm
            if norm <= self.cfg.corrector_tolerance:
                break
            x = x - factors.solve(residual, x.shape)
            self.iterations += 1
        return x, first


@dataclass(frozen=True)
class Outcome:
    """What ``chord`` did: the point reached, the residual norms ||N(x_i) - y0|| it measured
    (``residuals[0]`` right after the predictor step, the last at ``point``), their parts in
    the range of J that J^+ can remove (``correctable``; the rest lies along the directions
    the rank rule counts as null, which the walk treats as the level set), the updates it made,
    the model's (y, logits) at ``point``, and what the iterations cost."""

    point: Tensor
    residuals: tuple[float, ...]
    correctable: tuple[float, ...]
    iterations: int
    output: Tensor
    logits: Tensor
    calls: int = 0  # model calls made (a batched call of two points is one)
    points: int = 0  # points evaluated
    #: the next step's predicted point and its (y, logits), evaluated in one batched call
    #: with ``point`` (``ahead``); None when not asked for or when ``point`` is another
    ahead: tuple[Tensor, Tensor, Tensor] | None = None

    @property
    def final(self) -> float:
        return self.correctable[-1]


def chord(
    fn: Callable[[Tensor], Any],
    x: Tensor,
    y0: Tensor,
    factors: Factors,
    *,
    iterations: int,
    tolerance: float,
    known: tuple[Tensor, Tensor] | None = None,
    ahead: Callable[[Tensor], Tensor] | None = None,
    many: Callable[[Tensor], tuple[tuple[Tensor, Tensor], int]] | None = None,
    contraction: float = 0.0,
) -> Outcome:
    """The ``Corrector`` iteration x <- x - J^+ r (the same arithmetic), until the correctable
    part ||u^T r|| of the residual is below ``tolerance`` or after ``iterations`` updates; it
    ends with a forward pass at the point returned, so that its residual is known.

    ``known``: (y, logits) at ``x`` already (no forward pass for it). ``ahead`` (with ``many``,
    a batched evaluation of stacked points): the next step's predicted point from a point.
    After an update expected to converge (the residual times the contraction rate, the last
    one measured here or else ``contraction``, is within the tolerance), the updated x and
    its next step's point are evaluated in one batched call: when it did converge, the step
    has cost that one call and the next step's first residual is known (``Outcome.ahead``)."""
    residuals: list[float] = []
    correctable: list[float] = []
    done = calls = points = 0
    evaluated_ahead: tuple[Tensor, Tensor, Tensor] | None = None
    if known is not None:
        y, logits = known
    else:
        with torch.no_grad():
            y, logits = fn(x)
        calls, points = 1, 1
    while True:
        residual = y - y0
        norm = float(torch.linalg.vector_norm(residual))
        part = float(torch.linalg.vector_norm(factors.u.T @ residual))
        residuals.append(norm if math.isfinite(norm) else math.inf)
        correctable.append(part if math.isfinite(part) else math.inf)
        if part <= tolerance or done == iterations or not math.isfinite(norm):
            parts = (tuple(residuals), tuple(correctable), done)
            return Outcome(x, *parts, y, logits, calls, points, evaluated_ahead)
        if len(correctable) > 1 and correctable[-2] > 0:
            contraction = correctable[-1] / correctable[-2]
        x = x - factors.solve(residual, x.shape)
        done += 1
        evaluated_ahead = None
        if ahead is not None and many is not None and contraction * part <= tolerance:
            following = ahead(x)
            (ys, all_logits), made = many(torch.stack([x, following]))
            y, logits = ys[0], all_logits[0]
            evaluated_ahead = (following, ys[1], all_logits[1])
            calls, points = calls + made, points + 2
        else:
            with torch.no_grad():
                y, logits = fn(x)
            calls, points = calls + 1, points + 1
