"""Plausibility metrics: how well an explanation's token scores match a human rationale.

Each metric declares its range and whether higher is better, so tables can format themselves.
``scores`` are an explainer's per-word importances, ``rationale`` the human per-word labels in
[0, 1] (for HateXplain: the mean of the annotators' 0/1 marks).

- ``cosine``: the SiMEC paper's measure. Scores are min-max scaled to [0, 1] first (the paper
  normalises all scores to [0, 1]; the rationale already lies there). Constant scores scale to
  all zeros; cosine with an all-zero vector is undefined, and we return 0.0 for it (no
  agreement can be shown), except that two all-zero vectors give 1.0.
- ``token_f1``: F1 between the top-k words by score and the words a majority of annotators
  marked (rationale >= 0.5), k = the number of such words (as in HateXplain / ERASER).
- ``iou_f1``: ERASER's IOU F1 for one instance with one rationale span set: 1 when the IOU
  between the top-k predicted set and the human set is >= 0.5, else 0.
- ``auprc``: area under the precision-recall curve of the scores against the binarised
  rationale (average precision; undefined without a positive word, then NaN).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["METRICS", "Metric", "MetricInfo", "auprc", "cosine", "iou_f1", "token_f1"]


@dataclass(frozen=True)
class MetricInfo:
    """What a table needs to know about a metric: its range and which way is better."""

    name: str
    lower: float
    upper: float
    higher_is_better: bool = True
    description: str = ""


@dataclass(frozen=True)
class Metric(MetricInfo):
    """A plausibility metric: ``metric(scores, rationale) -> float``."""

    fn: Callable[[np.ndarray, np.ndarray], float] = lambda s, r: math.nan

    def __call__(self, scores: np.ndarray, rationale: np.ndarray) -> float:
        s, r = _check(scores, rationale)
        return float(self.fn(s, r))


def _check(scores: np.ndarray, rationale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    r = np.asarray(rationale, dtype=np.float64).ravel()
    if s.shape != r.shape or s.size == 0:
        raise InputError(f"scores {s.shape} and rationale {r.shape} must be equal, non-empty")
    if not (np.isfinite(s).all() and np.isfinite(r).all()):
        raise InputError("scores and rationale must be finite")
    if r.min() < 0 or r.max() > 1:
        raise InputError("rationale values must lie in [0, 1]")
    return s, r


def _minmax(v: np.ndarray) -> np.ndarray:
    span = v.max() - v.min()
    return (v - v.min()) / span if span > 0 else np.zeros_like(v)


def cosine(scores: np.ndarray, rationale: np.ndarray) -> float:
    a, b = _minmax(scores), rationale  # the rationale is already a mean of 0/1 marks in [0, 1]
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(a @ b / (na * nb))


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    # stable: ties broken by position, so results do not depend on the sort implementation
    order = np.argsort(-scores, kind="stable")
    chosen = np.zeros(scores.shape, dtype=bool)
    chosen[order[:k]] = True
    return chosen


def _marked_and_top_k(scores: np.ndarray, rationale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority-marked words and the same number of top-scored words (empty if none marked)."""
    human = rationale >= 0.5
    return human, _top_k(scores, int(human.sum()))


def token_f1(scores: np.ndarray, rationale: np.ndarray) -> float:
    human, predicted = _marked_and_top_k(scores, rationale)
    if not human.any():
        return float("nan")
    tp = int((predicted & human).sum())
    if tp == 0:
        return 0.0
    precision, recall = tp / int(predicted.sum()), tp / int(human.sum())
    return 2 * precision * recall / (precision + recall)


def iou_f1(scores: np.ndarray, rationale: np.ndarray) -> float:
    human, predicted = _marked_and_top_k(scores, rationale)
    if not human.any():
        return float("nan")
    iou = (predicted & human).sum() / (predicted | human).sum()
    return 1.0 if iou >= 0.5 else 0.0


def auprc(scores: np.ndarray, rationale: np.ndarray) -> float:
    human = rationale >= 0.5
    positives = int(human.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = human[order]
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at * hits).sum() / positives)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("cosine", 0.0, 1.0, True, "cosine of [0,1]-scaled scores and rationale", cosine),
        Metric("token_f1", 0.0, 1.0, True, "F1 of the top-k words vs majority marks", token_f1),
        Metric("iou_f1", 0.0, 1.0, True, "1 if IOU(top-k, marks) >= 0.5", iou_f1),
        Metric("auprc", 0.0, 1.0, True, "average precision of scores vs marks", auprc),
    )
}
