"""Evaluation of explanations: plausibility against human rationales, faithfulness to the model."""

from .faithfulness import FAITHFULNESS, aopc_comprehensiveness, aopc_sufficiency
from .plausibility import METRICS, Metric, MetricInfo, auprc, cosine, iou_f1, token_f1

__all__ = [
    "FAITHFULNESS",
    "METRICS",
    "Metric",
    "MetricInfo",
    "aopc_comprehensiveness",
    "aopc_sufficiency",
    "auprc",
    "cosine",
    "iou_f1",
    "token_f1",
]
