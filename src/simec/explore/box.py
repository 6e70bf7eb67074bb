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

import math

import torch
from torch import Tensor, nn

from ..errors import InputError, ModelError
from ..models.base import ModelAdapter
from ..models.hf_text import HFSequenceClassifierAdapter
from ..models.hf_vision import HFImageClassifierAdapter

__all__ = ["BOXES", "Box", "embedding_bounds", "feasible_box", "project", "resolve_box"]

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


def _vit_bounds(adapter: HFImageClassifierAdapter) -> tuple[Tensor, Tensor]:
    dtype, device = adapter.dtype, adapter.device
    mean = torch.tensor(adapter.image_mean, dtype=dtype, device=device)
    std = torch.tensor(adapter.image_std, dtype=dtype, device=device)
    # the model's normalised pixel values of pixels in [0, 1], per channel
    low_c, high_c = (0 - mean) / std, (1 - mean) / std
    p = adapter.require_patch_size()
    low, high = low_c.repeat_interleave(p * p), high_c.repeat_interleave(p * p)
    if adapter.space == "pixels":  # x0 rows are patchified normalised pixels
        return torch.minimum(low, high), torch.maximum(low, high)
    module = adapter.embedding_module
    conv = getattr(getattr(module, "patch_embeddings", None), "projection", None)
    if not isinstance(conv, nn.Conv2d):
        raise ModelError(
            f"{type(module).__name__} has no patch_embeddings.projection Conv2d: "
            "box='embedding-bounds' cannot bound it; pass box=(lower, upper)"
        )
    weight = conv.weight.detach().to(device=device, dtype=dtype)
    weight = weight.reshape(weight.shape[0], -1)  # (width, C*p*p), columns as in patchify
    bias = conv.bias.detach().to(weight) if conv.bias is not None else None
    lower, upper = affine_bounds(weight, low, high, bias)
    pos = getattr(module, "position_embeddings", None)
    special = 0
    cls = getattr(module, "cls_token", None)
    if cls is not None:
        special = 1
    if isinstance(pos, Tensor):
        pos = pos.detach()[0].to(weight)  # (positions, width)
        patches = pos[special:]
        lower, upper = lower + patches.amin(0), upper + patches.amax(0)
    if cls is not None:  # the CLS row: cls + pos(0), one point
        row = cls.detach().reshape(-1).to(weight)
        if isinstance(pos, Tensor):
            row = row + pos[0]
        lower, upper = torch.minimum(lower, row), torch.maximum(upper, row)
    return lower, upper


def _layernorm(module: nn.Module) -> nn.LayerNorm | None:
    norm = getattr(module, "LayerNorm", None) or getattr(module, "layer_norm", None)
    return norm if isinstance(norm, nn.LayerNorm) else None


def _text_bounds(adapter: HFSequenceClassifierAdapter) -> tuple[Tensor, Tensor]:
    module = adapter.embedding_module
    norm = _layernorm(module)
    if norm is None or norm.weight is None:
        raise ModelError(
            f"{type(module).__name__} does not end in a LayerNorm with weights: "
            "box='embedding-bounds' cannot bound it; pass box=(lower, upper)"
        )
    gamma = norm.weight.detach().to(device=adapter.device, dtype=adapter.dtype)
    beta = norm.bias.detach().to(gamma) if norm.bias is not None else torch.zeros_like(gamma)
    width = gamma.numel()
    # (z - mean(z)) / std(z) has each coordinate in [-sqrt(h - 1), sqrt(h - 1)] for any z
    reach = gamma.abs() * math.sqrt(width - 1)
    return beta - reach, beta + reach


def embedding_bounds(adapter: ModelAdapter) -> tuple[Tensor, Tensor]:
    """Analytic bounds (lower, upper), each (width,), of the embedding layer's output over every
    valid input: the final version's box X (reference 003, section 2).

    * Vision (ViT family, ``space="embeddings"``): the patch embedding is affine in the
      normalised pixels z, e = W z + b + q(s); with the pixels in [0, 1] (so z in
      [(0 - mean)/std, (1 - mean)/std] per channel), ``affine_bounds`` gives the exact range of
      W z + b, and max_s q(s) / min_s q(s) over the patch positions are added. The paper's
      formula has no bias b and uses the raw [0, 1] pixels (its code 255): here the bias and the
      model's own normalisation are included, which is the exact range of what the layer can
      output. The CLS row (cls + q(0)) is a single point, folded in, so one box holds every row.
      ``space="pixels"``: the normalised pixel range itself.
    * Text (BERT family): the embeddings end in a LayerNorm, y = gamma u + beta with u = (z -
      mean z) / std z, whose coordinates lie in [-sqrt(h - 1), sqrt(h - 1)] for any z (h the
      width; the bound is approached as one coordinate of z dominates). So lower/upper = beta -/+
      |gamma| sqrt(h - 1): analytic and valid for any token, position and type, but loose (the
      paper's formula for one-hot inputs is not stated for the LayerNorm; this is our choice).

    Other adapters raise ``ModelError``: pass ``box=(lower, upper)`` to ``explore`` instead.
    """
    if isinstance(adapter, HFImageClassifierAdapter):
        return _vit_bounds(adapter)
    if isinstance(adapter, HFSequenceClassifierAdapter):
        return _text_bounds(adapter)
    raise ModelError(
        f"box='embedding-bounds' knows Hugging Face ViT and BERT-family adapters, not "
        f"{type(adapter).__name__}: pass box=(lower, upper) to explore()"
    )
