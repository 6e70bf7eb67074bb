"""Evaluation of explanations: plausibility against human rationales (faithfulness to come)."""

from .plausibility import METRICS, Metric, auprc, cosine, iou_f1, token_f1

__all__ = ["METRICS", "Metric", "auprc", "cosine", "iou_f1", "token_f1"]
