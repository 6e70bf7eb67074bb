"""Plausibility protocols: which gold, which hard rationale, which metrics, how they aggregate.

A protocol scores one post (``score_post``: per-post quantities) and aggregates the posts
(``aggregate``: ``{metric: {"value", "std", "n"}}``, ``value`` as the protocol defines it, ``std``
the sample standard deviation of the per-post values over the ``n`` posts). The SiMEC paper's
cosine is reported by every protocol as its own column. Definitions: ``plausibility``.

``hatexplain`` (Mathew et al. 2021, scored with ERASER's ``metrics.py``):
  gold = union of the annotators' marks, gold spans = its contiguous runs; hard rationale = the
  top 5 units (tie rule in ``plausibility.top_k``), each its own one-unit span.
  - ``iou_f1``: ERASER partial match at IOU >= 0.5, macro: instance precision (hits / 5) and
    recall (hits / gold spans) averaged over posts, F1 of the two averages
    (``iou_scores[0]['macro']['f1']``); its std is that of the per-post F1.
  - ``token_f1``: instance token F1 of the top 5 vs the gold, averaged over posts
    (``token_prf['instance_macro']['f1']``).
  - ``auprc``: area under the precision-recall curve per post, averaged
    (``token_soft_metrics['auprc']``).
``ferret`` (Attanasio et al. 2023, its HateXplain defaults):
  gold = union of marks; [CLS]/[SEP] dropped (``remove_first_last``); hard rationale = the top 7
  units among those scoring > 0 (``only_pos``, ``top_k_rationale`` = 7).
  - ``token_f1``: instance token F1 (0 when no unit scores > 0), mean over posts.
  - ``token_iou``: |hard ∩ gold| / |hard ∪ gold| per post (no threshold), mean over posts.
  - ``auprc``: area under the precision-recall curve of the scores clipped at 0, mean.
All metrics lie in [0, 1], higher is better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..registry import Registry
from ..stats import mean_std
from .plausibility import (
    MetricInfo,
    cosine,
    f1,
    gold_spans,
    mean_marks,
    partial_match,
    pr_auc,
    token_prf,
    top_k,
    union_marks,
)

__all__ = ["PROTOCOLS", "Protocol", "aggregate_mean", "value_summary"]

COSINE = MetricInfo(
    "cosine", 0.0, 1.0, True, "SiMEC paper: cosine of [0,1]-scaled scores and mean of marks"
)


def value_summary(values: Sequence[float]) -> dict[str, float]:
    """``{"value": mean, "std": sample std, "n": count}`` of the finite values."""
    stats = mean_std(values)
    return {"value": stats.mean, "std": stats.std, "n": stats.n}


def aggregate_mean(rows: Sequence[dict[str, float]], key: str) -> dict[str, float]:
    return value_summary([r[key] for r in rows if key in r])


@dataclass(frozen=True)
class Protocol:
    """A named plausibility protocol (see module docstring)."""

    name: str
    description: str
    metrics: dict[str, MetricInfo] = field(default_factory=dict)
    #: units to drop at both ends when scoring word pieces (ferret drops [CLS] and [SEP])
    drop_specials: bool = False

    def score_post(self, scores: np.ndarray, marks: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def aggregate(self, rows: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
        return {name: aggregate_mean(rows, name) for name in self.metrics}


class HateXplainProtocol(Protocol):
    def score_post(self, scores: np.ndarray, marks: np.ndarray) -> dict[str, float]:
        scores = np.asarray(scores, dtype=np.float64)
        gold = union_marks(marks)
        if scores.shape != gold.shape:
            raise InputError(f"{scores.size} scores for {gold.size} units")
        hard = top_k(scores, 5)
        hits, n_pred, n_gold = partial_match(
            [(int(i), int(i) + 1) for i in np.flatnonzero(hard)], gold_spans(gold)
        )
        iou_p = hits / n_pred if n_pred else 0.0
        iou_r = hits / n_gold if n_gold else 0.0
        return {
            "cosine": cosine(scores, mean_marks(marks)),
            "iou_precision": iou_p,
            "iou_recall": iou_r,
            "iou_f1": f1(iou_p, iou_r),
            "token_f1": token_prf(hard, gold)[2],
            "auprc": pr_auc(scores, gold),
        }

    def aggregate(self, rows: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
        out = super().aggregate(rows)
        # ERASER's macro IOU F1: F1 of the post-averaged precision and recall
        p = aggregate_mean(rows, "iou_precision")["value"]
        r = aggregate_mean(rows, "iou_recall")["value"]
        out["iou_f1"] = {**out["iou_f1"], "value": f1(p, r) if out["iou_f1"]["n"] else math.nan}
        return out


class FerretProtocol(Protocol):
    def score_post(self, scores: np.ndarray, marks: np.ndarray) -> dict[str, float]:
        scores = np.asarray(scores, dtype=np.float64)
        gold = union_marks(marks)
        if scores.shape != gold.shape:
            raise InputError(f"{scores.size} scores for {gold.size} units")
        hard = top_k(scores, 7, positive_only=True)
        union = int((hard | gold).sum())
        return {
            "cosine": cosine(scores, mean_marks(marks)),
            "token_f1": token_prf(hard, gold)[2],
            "token_iou": int((hard & gold).sum()) / union if union else 0.0,
            "auprc": pr_auc(np.clip(scores, 0.0, None), gold),
        }


def _unit_interval(**descriptions: str) -> dict[str, MetricInfo]:
    """Metrics in [0, 1], higher is better: name -> MetricInfo with its description."""
    return {name: MetricInfo(name, 0.0, 1.0, True, text) for name, text in descriptions.items()}


#: the evaluation protocols by name (``--protocol`` choices)
PROTOCOLS: Registry[Protocol] = Registry(
    "evaluation protocol",
    {
        "hatexplain": HateXplainProtocol(
            "hatexplain",
            "HateXplain/ERASER: union gold, top-5 units as 1-unit spans, ERASER metrics",
            {
                "cosine": COSINE,
                **_unit_interval(
                    iou_f1="ERASER partial-match F1 (IOU >= 0.5, macro)",
                    token_f1="ERASER instance-macro token F1 of the top 5",
                    auprc="ERASER AUPRC, mean over posts",
                ),
            },
        ),
        "ferret": FerretProtocol(
            "ferret",
            "ferret: union gold, top-7 positive scores, specials dropped",
            {
                "cosine": COSINE,
                **_unit_interval(
                    token_f1="token F1 of the top-7 positive scores",
                    token_iou="token IOU of the top-7 positive scores",
                    auprc="AUPRC of the scores clipped at 0",
                ),
            },
            drop_specials=True,
        ),
    },
)
