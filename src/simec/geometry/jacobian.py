"""Jacobians of a model's output with respect to its (explored) input, by torch.func."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.func import vjp, vmap

from ..errors import InputError

__all__ = ["jacobian"]


def jacobian(
    fn: Callable[[Tensor], Any],
    x: Tensor,
    *,
    chunk_size: int | None = None,
    has_aux: bool = False,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Any]:
    """Return ``(y, J)`` (and ``aux`` if ``has_aux``) for ``y = fn(x)`` with y of shape (q,).

    J has shape (q, *x.shape). It is built from q vector-Jacobian products vmapped over the
    rows of the identity: one forward pass and one batched backward pass. ``chunk_size`` caps
    how many rows are pulled back at once (memory ~ chunk_size backward passes); ``None`` does
    them all together.

    Runs under ``torch.no_grad()``: torch.func still differentiates with respect to ``x``, but no
    graph is recorded for the model's parameters.
    """
    if chunk_size is not None and chunk_size < 1:
        raise InputError(f"chunk_size must be a positive integer, got {chunk_size}")
    with torch.no_grad():
        if has_aux:
            y, pullback, aux = vjp(fn, x, has_aux=True)
        else:
            y, pullback = vjp(fn, x)
        if y.ndim != 1:
            raise InputError(f"the model output must be a vector (q,), got shape {tuple(y.shape)}")
        q = y.shape[0]
        basis = torch.eye(q, dtype=y.dtype, device=y.device)
        step = q if chunk_size is None else chunk_size
        rows = [vmap(pullback)(basis[i : i + step])[0] for i in range(0, q, step)]
        jac = rows[0] if len(rows) == 1 else torch.cat(rows)
    if has_aux:
        return y, jac, aux
    return y, jac
