"""The feasible region and the last line of Algorithms 1 and 2 of the SiMEC paper (line 11:
"project p_k to the nearest feasible region").

The feasible region is a box, per hidden dimension, by default the range the original input's
embeddings span (``feasible_box``: the "embeddings distribution of the original input" that
caps the explored points in Algorithm 5, lines 9-10; ``ExploreConfig.box="input"``). The final
(NeurIPS 2025) version replaces it by analytic bounds of the embedding layer
(``embedding_bounds``, ``box="embedding-bounds"``; reference 003, section 2). ``project`` is the
nearest point of the box (a clamp). ``ExploreConfig.projection`` says when it applies: "end"
(line 11, on the stored points), "step" (after every step, as the final version's text says),
"none".
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError
from ..models.base import ModelAdapter
from ..models.bounds import affine_bounds

__all__ = [
    "BOXES",
    "Box",
    "affine_bounds",
    "embedding_bounds",
    "feasible_box",
    "project",
    "resolve_box",
]

Box = tuple[Tensor | float, Tensor | float]
#: the boxes ``ExploreConfig.box`` names
BOXES = ("input", "embedding-bounds")


def feasible_box(x0: Tensor) -> tuple[Tensor, Tensor]:
    """Default feasible region: per hidden dimension, the range the original input spans.

    This is the cap of Algorithm 5 (the "embeddings distribution of the original input").
    """
    return x0.amin(dim=0), x0.amax(dim=0)


def project(x: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """The nearest point of the box [lower, upper] to x (Algorithm 1/2 line 11)."""
    return torch.maximum(torch.minimum(x, upper), lower)


def resolve_box(box: Box | None, x0: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Bounds (|rows|, width) for the explored rows: ``box`` broadcast, or ``feasible_box``."""
    if box is None:
        lo, hi = feasible_box(x0)
        return lo.expand(len(rows), -1), hi.expand(len(rows), -1)
    lower, upper = (torch.as_tensor(b, dtype=x0.dtype, device=x0.device) for b in box)
    try:
        if lower.ndim == 2 and lower.shape[0] == x0.shape[0]:
            lower = lower[rows]
        if upper.ndim == 2 and upper.shape[0] == x0.shape[0]:
            upper = upper[rows]
        lower = torch.broadcast_to(lower, (len(rows), x0.shape[1]))
        upper = torch.broadcast_to(upper, (len(rows), x0.shape[1]))
    except RuntimeError as exc:
        raise InputError(
            f"box bounds must broadcast to the embedding shape {tuple(x0.shape)}"
        ) from exc
    if (lower > upper).any():
        raise InputError("box lower bound exceeds its upper bound somewhere")
    return lower, upper


def embedding_bounds(adapter: ModelAdapter) -> tuple[Tensor, Tensor]:
    """Analytic bounds (lower, upper), each (width,), of the embedding layer's output over every
    valid input: the final version's box X (reference 003, section 2), as the adapter knows it
    (``ModelAdapter.embedding_bounds``).

    * Vision (ViT family): the exact range of the affine patch embedding over pixels in [0, 1],
      position embeddings and the CLS row folded in (``HFImageClassifierAdapter``; in
      ``space="pixels"`` the normalised pixel range itself).
    * Text (BERT family): the reach of the embeddings' final LayerNorm, beta -/+ |gamma|
      sqrt(h - 1) (``HFSequenceClassifierAdapter``).

    Other adapters raise ``ModelError``: pass ``box=(lower, upper)`` to ``explore`` instead.
    """
    return adapter.embedding_bounds()
