"""Explorers: SiMEC and SiMExp (Algorithms 1, 2 and 4 of the SiMEC paper).

Map: ``simec`` / ``simexp`` (Algorithms 1 / 2, one rule object each), ``proposal`` (one step,
pure), ``policy`` (accept / retry / stop), ``walk`` (a walk as a list of frozen records),
``driver`` (batched Jacobians and spectra, the loop), ``segments`` (Algorithm 4), ``box`` (the
feasible box, line 11), ``corrector``, ``summary`` (walk -> ``ExplorationResult``), ``explorer``
(``explore``, ``explore_batch``), ``config``, ``result``, ``perturbation`` (the baseline).
"""

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
