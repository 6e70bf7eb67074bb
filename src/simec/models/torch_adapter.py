"""Adapter for any plain torch model that can be run from an embedding tensor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import InputError, ModelError
from .base import (
    ModelAdapter,
    PreparedInput,
    check_finite,
    parameter_copies,
    resolve_device,
    resolve_dtype,
)

__all__ = ["TorchAdapter"]


class TorchAdapter(ModelAdapter):
    """Wrap ``forward: x (segments, width) -> logits (q,)`` and an optional ``embed: raw -> x``.

    If ``forward`` is an ``nn.Module`` it is called through ``functional_call`` with detached
    copies of its weights in the requested dtype/device, so float64 runs never modify it.
    Without ``embed`` the raw input must already be a (segments, width) tensor.
    """

    def __init__(
        self,
        forward: Callable[[Tensor], Tensor] | nn.Module,
        *,
        embed: Callable[[Any], Tensor] | None = None,
        labels: Sequence[str] | None = None,
        segment_names: Callable[[Any, int], list[str]] | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "float32",
    ) -> None:
        if not callable(forward):
            raise ModelError(f"forward must be callable, got {type(forward).__name__}")
        self.forward = forward
        self.model = forward if isinstance(forward, nn.Module) else None
        self.embed = embed
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self._segment_names = segment_names
        self._params = (
            parameter_copies(forward, self.device, self.dtype)
            if isinstance(forward, nn.Module)
            else None
        )
        self.labels = list(labels) if labels is not None else []

    def prepare(self, raw: Any) -> PreparedInput:
        x = self.embed(raw) if self.embed is not None else raw
        if not isinstance(x, Tensor):
            raise InputError(f"the embedding must be a tensor, got {type(x).__name__}")
        if x.ndim == 1:
            x = x.unsqueeze(0)
        if x.ndim != 2:
            raise InputError(
                f"the embedding must have shape (segments, width), got {tuple(x.shape)}"
            )
        if x.numel() == 0:
            raise InputError("the embedding is empty")
        x = x.detach().to(device=self.device, dtype=self.dtype)
        check_finite(x, "the input embedding")
        names = (
            self._segment_names(raw, x.shape[0])
            if self._segment_names
            else [f"segment {i}" for i in range(x.shape[0])]
        )
        if not self.labels:
            self.labels = [str(i) for i in range(self.logits(x, None).shape[0])]  # type: ignore[arg-type]
        return PreparedInput(embeddings=x, segment_names=names, description="tensor input")

    def logits(self, x: Tensor, prepared: PreparedInput | None) -> Tensor:
        if self._params is not None:
            out = functional_call(self.forward, self._params, (x,))  # type: ignore[arg-type]
        else:
            out = self.forward(x)
        if not isinstance(out, Tensor):
            raise ModelError(f"the model must return a tensor of logits, got {type(out).__name__}")
        if out.ndim == 2 and out.shape[0] == 1:
            out = out[0]
        if out.ndim != 1:
            raise ModelError(f"the model must return logits of shape (q,), got {tuple(out.shape)}")
        return out

    def describe(self) -> dict[str, Any]:
        return {"adapter": "TorchAdapter", "forward": type(self.forward).__name__}
