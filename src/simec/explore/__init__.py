"""Explorers: SiMEC and SiMExp (Algorithms 1, 2 and 4 of the SiMEC paper)."""

from .config import ALGORITHMS, PROJECTIONS, ExploreConfig, parse_segments
from .explorer import batched_logits, explore, explore_batch, feasible_box
from .result import ExplorationResult

__all__ = [
    "ALGORITHMS",
    "PROJECTIONS",
    "ExplorationResult",
    "ExploreConfig",
    "batched_logits",
    "explore",
    "explore_batch",
    "feasible_box",
    "parse_segments",
]
