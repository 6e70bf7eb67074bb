"""Evaluation of explanations: plausibility against human rationales, faithfulness to the model."""

from . import plausibility
from .faithfulness import FAITHFULNESS, aopc_comprehensiveness, aopc_sufficiency
from .plausibility import *  # noqa: F403  (its __all__: the metric building blocks)
from .protocols import PROTOCOLS, Protocol

__all__ = [
    "FAITHFULNESS",
    "PROTOCOLS",
    "Protocol",
    "aopc_comprehensiveness",
    "aopc_sufficiency",
    *plausibility.__all__,
]
