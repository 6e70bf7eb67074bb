"""The optional corrector after a SiMEC step (``ExploreConfig.corrector``): not in the paper."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .config import ExploreConfig

__all__ = ["Corrector"]


class Corrector:
    """Gauss-Newton pull-back onto the level set N(x) = y0 with the pseudo-inverse of J(p_k)."""

    def __init__(self, fn: Callable[[Tensor], Any], y0: Tensor, cfg: ExploreConfig) -> None:
        self.fn, self.y0, self.cfg = fn, y0, cfg

    def __call__(self, x: Tensor, jac: Tensor) -> tuple[Tensor, float]:
        u, s, vh = torch.linalg.svd(jac, full_matrices=False)
        keep = s > max(jac.shape) * torch.finfo(s.dtype).eps * s[0]
        u, s, vh = u[:, keep], s[keep], vh[keep]
        first = math.nan
        for _ in range(self.cfg.corrector_iterations):
            with torch.no_grad():
                residual = self.fn(x)[0] - self.y0
            norm = float(torch.linalg.vector_norm(residual))
            if math.isnan(first):
                first = norm
            if norm <= self.cfg.corrector_tolerance:
                break
            x = x - (vh.T @ ((u.T @ residual) / s)).reshape(x.shape)
        return x, first
