"""The records a dataset run passes between its runner, its backends and their workers.

Kept apart from the backends so that every backend (local, Ray, registered ones) imports them
from here and no backend module imports another (``backends`` imports ``ray_backend`` lazily,
when the "ray" backend is asked for; ``ray_backend`` imports only this module and ``batches``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..explore import ExplorationResult, ExploreConfig
from ..fields import option
from ..models.base import ModelAdapter
from ..models.hf_vision import SPACES
from .inputs import RunItem

__all__ = ["ModelSpec", "OnDone", "Outcome", "RunTask"]


@dataclass(frozen=True)
class ModelSpec:
    """A model directory and how to load it: what a remote worker needs to build the adapter."""

    path: str
    space: str = option(
        "embeddings",
        "vision models: work in the embeddings output or directly in the pixels",
        choices=SPACES,
    )
    device: str = "cpu"
    dtype: str = "float32"
    truncation: bool = option(
        False, "text models: keep the first tokens of an over-long text instead of failing"
    )

    def load(self) -> ModelAdapter:
        from ..models import load_adapter

        return load_adapter(
            self.path,
            space=self.space,  # type: ignore[arg-type]
            device=self.device,
            dtype=self.dtype,
            truncation=self.truncation,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": os.path.abspath(self.path),
            "space": self.space,
            "device": self.device,
            "dtype": self.dtype,
            "truncation": self.truncation,
        }


@dataclass
class RunTask:
    """Everything a worker needs: the model (a ModelSpec, an adapter, or a function returning
    one), the exploration configuration and how many inputs to explore as one batch."""

    model: ModelSpec | ModelAdapter | Callable[[], ModelAdapter]
    config: ExploreConfig
    batch_size: int = 1

    def adapter(self) -> ModelAdapter:
        if isinstance(self.model, ModelSpec):
            return self.model.load()
        if isinstance(self.model, ModelAdapter):
            return self.model
        return self.model()

    @property
    def device(self) -> str:
        if isinstance(self.model, ModelSpec):
            return self.model.device
        return str(getattr(self.model, "device", "cpu"))


@dataclass
class Outcome:
    """One finished input: its result, or the error that stopped it."""

    item: RunItem
    seed: int
    result: ExplorationResult | None = None
    error: str | None = None


#: called by a backend, in the driver process, as each input finishes
OnDone = Callable[[Outcome], None]
