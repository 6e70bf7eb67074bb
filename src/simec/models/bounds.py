"""Analytic bounds of an embedding layer's output over every valid input: the final version's
feasible box X (reference 003, section 2; ``ExploreConfig.box="embedding-bounds"``).

``affine_bounds`` is the exact range of an affine map over a box (a ViT patch embedding over
the pixel range); ``layernorm_bounds`` the reach of a LayerNorm over any input (the end of a
BERT-family embeddings module). The adapters' ``embedding_bounds()`` apply them to their model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["affine_bounds", "layernorm_bounds"]


def affine_bounds(
    weight: Tensor, low: Tensor, high: Tensor, offset: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Exact bounds of ``weight @ z + offset`` (weight (h, d)) over the box low <= z <= high:
    upper_i = sum_j max(W_ij low_j, W_ij high_j) + offset_i, lower_i likewise with min. With
    z in [0, 1] this is the final version's sum_{W_ij >= 0} W_ij max z + sum_{W_ij < 0} W_ij
    min z."""
    a, b = weight * low, weight * high
    upper, lower = torch.maximum(a, b).sum(1), torch.minimum(a, b).sum(1)
    if offset is not None:
        upper, lower = upper + offset, lower + offset
    return lower, upper


def layernorm_bounds(gamma: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """Bounds of a LayerNorm's output y = gamma u + beta over any input z: u = (z - mean z) /
    std z has each coordinate in [-sqrt(h - 1), sqrt(h - 1)] (h the width; approached as one
    coordinate of z dominates), so lower/upper = beta -/+ |gamma| sqrt(h - 1)."""
    reach = gamma.abs() * math.sqrt(gamma.numel() - 1)
    return beta - reach, beta + reach
