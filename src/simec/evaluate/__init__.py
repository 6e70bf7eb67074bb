"""Evaluation of explanations: plausibility against human rationales, faithfulness to the model."""

from .faithfulness import FAITHFULNESS, aopc_comprehensiveness, aopc_sufficiency
from .plausibility import (
    MetricInfo,
    cosine,
    gold_spans,
    mean_marks,
    partial_match,
    pr_auc,
    token_prf,
    top_k,
    union_marks,
)
from .protocols import PROTOCOLS, Protocol

__all__ = [
    "FAITHFULNESS",
    "PROTOCOLS",
    "MetricInfo",
    "Protocol",
    "aopc_comprehensiveness",
    "aopc_sufficiency",
    "cosine",
    "gold_spans",
    "mean_marks",
    "partial_match",
    "pr_auc",
    "token_prf",
    "top_k",
    "union_marks",
]
