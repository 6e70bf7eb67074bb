"""Attention Rollout (Abnar & Zuidema, 2020) and Chefer et al. relevancy, as pure functions.

Per layer l, heads are fused (mean by default), the residual connection is added as the
identity, A_l = (mean_h attention + I) / 2, and each row is renormalised to sum to 1. The
rollout is the product R = A_L ... A_1; row i of R says how much each input token flows into
position i at the output (row 0 for the CLS readout).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["attention_rollout", "chefer_relevancy"]


def attention_rollout(
    attentions: Sequence[Tensor], *, head_fusion: str = "mean", residual: bool = True
) -> Tensor:
    """Rollout matrix (T, T) from per-layer attentions, each (heads, T, T) or (T, T)."""
    if not attentions:
        raise InputError("attention rollout needs the attention of at least one layer")
    fuse = {"mean": lambda a: a.mean(0), "max": lambda a: a.amax(0), "min": lambda a: a.amin(0)}
    if head_fusion not in fuse:
        raise InputError(f"head_fusion must be one of {list(fuse)}, got {head_fusion!r}")
    result: Tensor | None = None
    for layer, att in enumerate(attentions):
        a = att if att.ndim == 2 else fuse[head_fusion](att)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise InputError(
                f"layer {layer}: expected (heads, T, T) or (T, T), got {tuple(att.shape)}"
            )
        if residual:
            a = 0.5 * (a + torch.eye(a.shape[0], dtype=a.dtype, device=a.device))
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    assert result is not None
    return result


def chefer_relevancy(attentions: Sequence[Tensor], gradients: Sequence[Tensor]) -> Tensor:
    """Relevancy of Chefer et al. (ICCV 2021) for self-attention encoders.

    R starts as the identity; for each layer l (input to output), with A_l (heads, T, T) the
    attention probabilities and G_l the gradient of the target logit with respect to them,
    Abar_l = mean_h (G_l * A_l)^+ and R <- R + Abar_l R. Row i of R gives each token's
    relevance for position i (row 0 for the CLS readout).
    """
    if len(attentions) != len(gradients) or not attentions:
        raise InputError("need one gradient per attention map, and at least one layer")
    result: Tensor | None = None
    for layer, (att, g) in enumerate(zip(attentions, gradients)):
        if att.shape != g.shape or att.ndim != 3 or att.shape[1] != att.shape[2]:
            raise InputError(f"layer {layer}: attention and gradient must be (heads, T, T)")
        if result is None:
            result = torch.eye(att.shape[-1], dtype=att.dtype, device=att.device)
        fused = (g * att).clamp_min(0).mean(0)
        result = result + fused @ result
    assert result is not None
    return result
