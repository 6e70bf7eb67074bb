"""Attention Rollout (Abnar & Zuidema, 2020), as a pure function of attention matrices.

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

__all__ = ["attention_rollout"]


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
