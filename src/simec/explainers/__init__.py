"""Attribution methods the SiMEC importance is compared with, behind one registry."""

from .base import (
    Explanation,
    aggregate_word_pieces,
    explain,
    explainer_names,
    register_explainer,
)
from .rollout import attention_rollout, chefer_relevancy

__all__ = [
    "Explanation",
    "aggregate_word_pieces",
    "attention_rollout",
    "chefer_relevancy",
    "explain",
    "explainer_names",
    "register_explainer",
]
