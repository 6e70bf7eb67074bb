"""Feature importance from the pullback metric (Algorithm 3 of the SiMEC paper).

The importance of segment s (a token or a patch) is the largest eigenvalue of the pullback
metric restricted to that segment's embedding: g_s = J_s^T G J_s with J_s = dy/dx_s (q x width).
Both back-ends give it: `lowrank` as the squared top singular value of G^{1/2} J_s (all segments
in one batched call), `exact` by eigvalsh of each width x width block.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._io import load_record, save_record
from ..errors import InputError
from ..geometry.jacobian import jacobian
from ..geometry.metrics import OutputMetric, get_output_metric
from ..geometry.spectrum import METHODS
from ..models.base import ModelAdapter

__all__ = ["SegmentImportance", "segment_importance", "importance_from_jacobian"]


@dataclass
class SegmentImportance:
    """Per-segment importance (lambda_max of the restricted pullback) at one input.

    Saves to ``segment_importance.json`` + ``segment_importance.safetensors`` (scores and
    probabilities, their dtypes kept) and loads back (``SegmentImportance.load``).
    """

    scores: Tensor  # (segments,)
    segment_names: list[str]
    probabilities: Tensor  # (q,)
    labels: list[str]
    method: str
    output_metric: str

    FILES = ("segment_importance.json", "segment_importance.safetensors")
    _JSON_FIELDS = ("segment_names", "labels", "method", "output_metric")

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write this record into ``out_dir`` (atomically; returns the folder)."""
        summary: dict[str, Any] = {name: getattr(self, name) for name in self._JSON_FIELDS}
        summary["predicted"] = self.predicted  # for readers of the JSON alone
        tensors = {"scores": self.scores, "probabilities": self.probabilities}
        return save_record(
            out_dir, summary=summary, tensors=tensors, files=self.FILES, format="simec-importance-1"
        )

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> SegmentImportance:
        """The record ``save`` wrote into ``out_dir``."""
        summary, tensors = load_record(out_dir, files=cls.FILES, what="segment importance")
        try:
            return cls(
                scores=tensors["scores"],
                probabilities=tensors["probabilities"],
                **{name: summary[name] for name in cls._JSON_FIELDS},
            )
        except KeyError as exc:
            raise InputError(
                f"{str(out_dir)!r}: the saved segment importance lacks {exc}"
            ) from None

    @property
    def predicted(self) -> int:
        return int(self.probabilities.argmax())

    def normalized(self) -> Tensor:
        """Scores scaled to [0, 1] (max = 1); all-zero scores stay zero."""
        top = self.scores.max()
        return self.scores / top if top > 0 else torch.zeros_like(self.scores)

    def ranking(self) -> list[tuple[str, float]]:
        order = torch.argsort(self.scores, descending=True).tolist()
        return [(self.segment_names[i], float(self.scores[i])) for i in order]


def importance_from_jacobian(
    jac: Tensor,
    y: Tensor,
    *,
    metric: str | OutputMetric = "euclidean-probs",
    method: str = "lowrank",
) -> Tensor:
    """lambda_max of J_s^T G J_s for each segment s; ``jac`` has shape (q, segments, width)."""
    if method not in METHODS:
        raise InputError(f"unknown spectral method {method!r}; choose one of {list(METHODS)}")
    if jac.ndim != 3:
        raise InputError(f"expected a Jacobian (q, segments, width), got {tuple(jac.shape)}")
    output_metric = get_output_metric(metric)
    q, segments, width = jac.shape
    a = output_metric.apply_factor(y, jac.reshape(q, -1)).reshape(q, segments, width)
    blocks = a.permute(1, 0, 2)  # (segments, q, width)
    if method == "lowrank":
        return torch.linalg.svdvals(blocks)[:, 0] ** 2
    gram = blocks.transpose(1, 2) @ blocks  # (segments, width, width), literally g restricted
    return torch.linalg.eigvalsh(0.5 * (gram + gram.transpose(1, 2)))[:, -1]


def segment_importance(
    adapter: ModelAdapter,
    raw_input: Any,
    *,
    output_metric: str | OutputMetric = "euclidean-probs",
    method: str = "lowrank",
    chunk_size: int | None = None,
) -> SegmentImportance:
    """Algorithm 3: the importance of every token/patch of ``raw_input`` for the prediction."""
    metric = get_output_metric(output_metric)
    prepared = adapter.prepare(raw_input)

    def fn(x: Tensor) -> tuple[Tensor, Tensor]:
        logits = adapter.logits(x, prepared)
        return metric.output(logits), logits

    y, jac, logits = jacobian(fn, prepared.embeddings, chunk_size=chunk_size, has_aux=True)
    scores = importance_from_jacobian(jac, y, metric=metric, method=method)
    return SegmentImportance(
        scores=scores.detach().cpu(),
        segment_names=prepared.segment_names,
        probabilities=torch.softmax(logits, -1).detach().cpu(),
        labels=prepared.output_labels(adapter),
        method=method,
        output_metric=metric.name,
    )
