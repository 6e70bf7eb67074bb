"""The function a walk differentiates, x -> (y, logits), made once per adapter and input.

``explore`` used to build it anew on every call (a bound method of the walk), so the compiled
Jacobian (``simec.geometry.jacobian``, cached per function object) was traced and compiled again
on every call, even for the same adapter and input. ``model_function`` keeps the functions of
each adapter (weakly: they go with the adapter) keyed on what they read: the explored rows, the
output metric and the contents of the prepared input (tensor bytes, shapes, dtypes, devices).
The compiled Jacobian freezes the model's weights at its first call: change an adapter's weights
in place and its compiled functions are stale (make a new adapter, or ``compile=False``).

With output restriction (``simec.explore.restriction``) a function gives the restricted output
of the walk's current classes: such a function belongs to one walk and is never shared.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..geometry.jacobian import quiet_vmap
from ..geometry.metrics import OutputMetric
from ..models.base import ModelAdapter, PreparedInput
from .model_input import Batching, ModelInput
from .restriction import Restriction, logits_jvp
from .segments import Segments

__all__ = ["ModelFunction", "model_function"]

#: functions kept per adapter (least recently used dropped first)
KEEP = 8
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class ModelFunction:
    """(metric output coordinates y, logits) at the explored rows ``xs`` of one input."""

    def __init__(
        self,
        adapter: ModelAdapter,
        prepared: PreparedInput,
        segments: Segments,
        metric: OutputMetric,
        restriction: Restriction | None = None,
    ) -> None:
        # weakly: the cache of the adapter's functions must not keep the adapter alive
        try:
            self._adapter: Callable[[], ModelAdapter | None] = weakref.ref(adapter)
        except TypeError:
            self._adapter = lambda: adapter
        self.prepared, self.segments, self.metric = prepared, segments, metric
        self.model_input = ModelInput(prepared, segments)
        self.batching = Batching()  # ``many`` runs one batch (until the model refuses)
        self.restriction = restriction

    @property
    def adapter(self) -> ModelAdapter:
        adapter = self._adapter()
        if adapter is None:
            raise ReferenceError("the adapter of this model function no longer exists")
        return adapter

    def __call__(self, xs: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.logits(xs)
        return self.level(self.metric.output(logits)), logits

    def level(self, y: Tensor) -> Tensor:
        """The function's output for the full metric output y: y itself, or its restriction
        to the walk's current classes (the corrector's target, from the full y at p_0)."""
        return y if self.restriction is None else self.restriction.coarse(y)

    def logits(self, xs: Tensor) -> Tensor:
        """The full logits at the explored rows xs."""
        return self.adapter.logits(*self.model_input.at(xs))

    def logits_jvp(self, xs: Tensor, v: Tensor) -> tuple[Tensor, Tensor, str]:
        """(logits, J_logits v, how it was computed) at xs along v (shaped like xs)."""
        return logits_jvp(self.logits, xs, v)

    def many(self, points: Tensor) -> tuple[tuple[Tensor, Tensor], int]:
        """((y, logits) at each of the points (m, |P|, width), stacked; model calls made):
        one batch (the adapter's ``logits_many``), or one call per point for a model that
        cannot be run as a batch (``Batching``: found at a batched call, then remembered)."""
        with torch.no_grad():
            return self.batching.run(lambda: self._batch(points), lambda: self._each(points))

    def _batch(self, points: Tensor) -> tuple[tuple[Tensor, Tensor], int]:
        with quiet_vmap():
            logits = self.adapter.logits_many(*self.model_input.at_many(points))
        ys = torch.stack([self.level(self.metric.output(row)) for row in logits])
        return (ys, logits), 1

    def _each(self, points: Tensor) -> tuple[tuple[Tensor, Tensor], int]:
        outs = [self(p) for p in points]
        return (torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])), len(outs)


def _digest(value: Any, out: Any) -> None:
    if isinstance(value, Tensor):
        out.update(repr((tuple(value.shape), str(value.dtype), str(value.device))).encode())
        out.update(value.detach().cpu().contiguous().view(-1).view(dtype=_byte()).numpy().tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            out.update(repr(key).encode())
            _digest(value[key], out)
    elif isinstance(value, (list, tuple)):
        out.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            _digest(item, out)
    elif value is None or isinstance(value, (str, int, float, bool)):
        out.update(repr(value).encode())
    else:  # an object the digest cannot read: only the same object matches
        out.update(f"object{id(value)}".encode())


def _byte() -> Any:
    import torch

    return torch.uint8


def _key(prepared: PreparedInput, segments: Segments, metric: OutputMetric) -> tuple:
    digest = hashlib.blake2b(digest_size=20)
    for name in ("embeddings", "model_inputs", "extras", "segment_names", "labels"):
        digest.update(name.encode())
        _digest(getattr(prepared, name, None), digest)
    return (id(metric), tuple(segments.rows.tolist()), type(prepared), digest.hexdigest())


def model_function(
    adapter: ModelAdapter,
    prepared: PreparedInput,
    segments: Segments,
    metric: OutputMetric,
    restriction: Restriction | None = None,
) -> ModelFunction:
    """The function of this input, the one made before for an equal input if there is one
    (a new one, never kept, with a ``restriction``: it is the walk's own)."""
    if restriction is not None:
        return ModelFunction(adapter, prepared, segments, metric, restriction)
    try:
        table = _CACHE.setdefault(adapter, OrderedDict())
    except TypeError:  # an adapter that cannot be weakly referenced: no cache
        return ModelFunction(adapter, prepared, segments, metric)
    key = _key(prepared, segments, metric)
    fn = table.get(key)
    if fn is not None and fn.metric is metric:
        table.move_to_end(key)
        return fn
    fn = ModelFunction(adapter, prepared, segments, metric)
    table[key] = fn
    while len(table) > KEEP:
        table.popitem(last=False)
    return fn
