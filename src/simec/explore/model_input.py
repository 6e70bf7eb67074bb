"""What the model reads at a walk's point, and the one rule for a model that cannot be batched.

A walk moves the explored rows P only (Algorithm 4, ``Segments``); the model reads the whole
input: those rows written back into the input's embeddings x0 (``Segments.full``) and the rest
of its ``PreparedInput`` (token ids, attention mask, fixed extras). ``ModelInput`` builds that
pair for one point (``at``) and for B points of one input (``at_many``, one batch of
``logits_many``); ``BatchInputs`` builds it for each input of a batch of walks inside the
vmapped Jacobian (their embeddings, model inputs and tensor extras stacked once; the values
that are not tensors are the first input's, equal for all by ``driver.batch_key``).

A model that reads a value in Python (``float(x)``, ``.item()``) or runs an op without a
batching rule raises one of ``CANNOT_BATCH`` when vmapped. ``Batching`` finds that out at a
batched call and remembers it: from then on the caller runs one input (or point) at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import torch
from torch import Tensor

from ..models.base import PreparedInput
from .segments import Segments

__all__ = [
    "CANNOT_BATCH",
    "BatchInputs",
    "Batching",
    "ModelInput",
    "split_extras",
    "stacked_inputs",
]

#: what running a model as a batch (vmap) raises when the model cannot be batched
CANNOT_BATCH: tuple[type[Exception], ...] = (RuntimeError, NotImplementedError)

T = TypeVar("T")


@dataclass(frozen=True)
class ModelInput:
    """The whole input the model reads at the explored rows of one prepared input."""

    prepared: PreparedInput
    segments: Segments

    def at(self, xs: Tensor) -> tuple[Tensor, PreparedInput]:
        """At one point: the explored rows ``xs`` (|P|, width) written into x0 (line 7)."""
        return self.segments.full(xs), self.prepared

    def at_many(self, points: Tensor) -> tuple[Tensor, PreparedInput]:
        """At B points (B, |P|, width) of this input, for the adapter's ``logits_many``."""
        return self.segments.full_many(points), self.prepared


def split_extras(prepared: PreparedInput) -> tuple[dict[str, Any], dict[str, Any]]:
    """The prepared input's extras: (the tensors, the other values)."""
    extras = getattr(prepared, "extras", None) or {}
    tensors = {k: v for k, v in extras.items() if isinstance(v, Tensor)}
    return tensors, {k: v for k, v in extras.items() if k not in tensors}


def stacked_inputs(
    preps: list[PreparedInput],
) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """The embeddings, model inputs and tensor extras of B prepared inputs, stacked."""
    return (
        torch.stack([p.embeddings for p in preps]),
        {k: torch.stack([p.model_inputs[k] for p in preps]) for k in preps[0].model_inputs},
        {k: torch.stack([split_extras(p)[0][k] for p in preps]) for k in split_extras(preps[0])[0]},
    )


class BatchInputs:
    """The model inputs of a batch of walks (one ``batch_key``), one input at a time inside a
    vmap over the batch: ``per_input`` gets input i's explored rows and its slices of
    ``stacked_inputs``; ``template`` (the first input) gives the rows P and the other values."""

    def __init__(self, template: ModelInput) -> None:
        self.template = template
        _, self.static_extras = split_extras(template.prepared)
        self.has_extras = any(f.name == "extras" for f in fields(template.prepared))

    def per_input(
        self, xs: Tensor, x0: Tensor, inputs: dict[str, Tensor], extras: dict[str, Tensor]
    ) -> tuple[Tensor, PreparedInput]:
        """Input i's whole input: ``xs`` written into its x0, its model inputs and extras."""
        point = self.template.segments.full(xs, x0)
        changes: dict[str, Any] = {"embeddings": x0, "model_inputs": inputs}
        if self.has_extras:
            changes["extras"] = {**self.static_extras, **extras}
        return point, replace(self.template.prepared, **changes)


class Batching:
    """Whether a model is run as a batch: yes until a batched call raises one of
    ``CANNOT_BATCH``, then one at a time from then on (remembered). With ``first_call_only``
    only the first batched call decides: a later failure is an error of its own and is raised.
    ``cause`` is the exception that decided."""

    def __init__(self, *, first_call_only: bool = False) -> None:
        self.first_call_only = first_call_only
        self.batches = True
        self.tried = False
        self.cause: BaseException | None = None

    def run(self, batched: Callable[[], T], one_at_a_time: Callable[[], T]) -> T:
        """``batched()`` while the model batches, else ``one_at_a_time()``."""
        if self.batches:
            first, self.tried = not self.tried, True
            try:
                return batched()
            except CANNOT_BATCH as exc:  # e.g. a value read by Python
                if self.first_call_only and not first:
                    raise
                self.batches, self.cause = False, exc
        return one_at_a_time()
