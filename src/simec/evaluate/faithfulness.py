"""Faithfulness metrics (ERASER, DeYoung et al. 2020): does the model rely on what is marked?

The model is seen through ``predict(keep) -> probabilities``: ``keep`` is a boolean mask over
the words/segments, and the caller decides what "removing" means (dropping tokens, [MASK],
zeroing patches). For each fraction f, the top ceil(f * n) segments by score are removed
(comprehensiveness: p(y | x) - p(y | x without them); higher is better) or kept alone
(sufficiency: p(y | x) - p(y | only them); lower is better). AOPC averages over the fractions.
An explainer that only looks plausible scores low comprehensiveness and high sufficiency.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import InputError
from .plausibility import MetricInfo

__all__ = [
    "FRACTIONS",
    "FAITHFULNESS",
    "aopc_comprehensiveness",
    "aopc_sufficiency",
    "hard_comprehensiveness",
    "hard_sufficiency",
]

FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5)
Predict = Callable[[np.ndarray], np.ndarray]


def _masks(scores: np.ndarray, fractions: Sequence[float]) -> list[np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0 or not np.isfinite(s).all():
        raise InputError("scores must be a non-empty finite vector")
    order = np.argsort(-s, kind="stable")
    masks = []
    for f in fractions:
        if not 0 < f <= 1:
            raise InputError(f"fractions must lie in (0, 1], got {f}")
        top = np.zeros(s.size, dtype=bool)
        top[order[: max(1, math.ceil(f * s.size))]] = True
        masks.append(top)
    return masks


def aopc_comprehensiveness(
    predict: Predict, scores: np.ndarray, label: int, fractions: Sequence[float] = FRACTIONS
) -> float:
    """Mean over fractions of p(label | all) - p(label | top segments removed)."""
    masks = _masks(scores, fractions)
    full = float(predict(np.ones(masks[0].size, dtype=bool))[label])
    drops = [full - float(predict(~top)[label]) for top in masks]
    return float(np.mean(drops))


def aopc_sufficiency(
    predict: Predict, scores: np.ndarray, label: int, fractions: Sequence[float] = FRACTIONS
) -> float:
    """Mean over fractions of p(label | all) - p(label | only the top segments)."""
    masks = _masks(scores, fractions)
    full = float(predict(np.ones(masks[0].size, dtype=bool))[label])
    drops = [full - float(predict(top)[label]) for top in masks]
    return float(np.mean(drops))


def hard_comprehensiveness(predict: Predict, hard: np.ndarray, label: int) -> float:
    """ERASER's comprehensiveness of one hard rationale: p(label | all) - p(label | all but it)
    (``score_classifications``; HateXplain: the top 5 word pieces deleted)."""
    keep = np.asarray(hard, dtype=bool)
    full = float(predict(np.ones(keep.size, dtype=bool))[label])
    return full - float(predict(~keep)[label])


def hard_sufficiency(
    predict: Predict, hard: np.ndarray, label: int, *, alone: Predict | None = None
) -> float:
    """ERASER's sufficiency of one hard rationale: p(label | all) - p(label | only it).

    ``alone`` runs the rationale on its own when that differs from keeping it in place
    (HateXplain wraps the kept pieces in [CLS] ... [SEP]); default ``predict``.
    """
    keep = np.asarray(hard, dtype=bool)
    full = float(predict(np.ones(keep.size, dtype=bool))[label])
    return full - float((alone or predict)(keep)[label])


#: declared ranges and directions (same Metric record as the plausibility metrics)
FAITHFULNESS = {
    "comprehensiveness": MetricInfo(
        "comprehensiveness", -1.0, 1.0, True, "AOPC drop in p(y) when the top segments go"
    ),
    "sufficiency": MetricInfo(
        "sufficiency", -1.0, 1.0, False, "AOPC drop in p(y) when only the top segments stay"
    ),
    "comprehensiveness_top5": MetricInfo(
        "comprehensiveness_top5",
        -1.0,
        1.0,
        True,
        "HateXplain: drop in p(y) when the top 5 word pieces are deleted",
    ),
    "sufficiency_top5": MetricInfo(
        "sufficiency_top5",
        -1.0,
        1.0,
        False,
        "HateXplain: drop in p(y) when only [CLS] + the top 5 word pieces + [SEP] stay",
    ),
}
