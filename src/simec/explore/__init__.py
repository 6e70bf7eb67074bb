"""Explorers: SiMEC and SiMExp (Algorithms 1, 2 and 4 of the SiMEC paper).

Map: ``simec`` / ``simexp`` (Algorithms 1 / 2, one rule object each), ``proposal`` (one step,
pure), ``policy`` (accept / retry / stop), ``walk`` (a walk as a list of frozen records),
``walker`` (accept a point, then propose the next step), ``stepper`` (how a step is made; the
paper's: a fresh Jacobian every step), ``driver`` (the one walk loop: batched Jacobians and
spectra), ``segments`` (Algorithm 4), ``box`` (the feasible box, line 11), ``corrector``,
``reuse`` (Jacobian reuse: predictor-corrector continuation as its own stepper, its refresh
rules and the ``Fidelity`` record), ``model_function`` (one model
function per adapter and input), ``model_input`` (the model's whole input at the explored rows;
whether a model can be run as a batch), ``summary`` (walk -> ``ExplorationResult``), ``explorer``
(``explore``, ``explore_batch``), ``config``, ``result``, ``perturbation`` (the baseline).
"""

from .config import ALGORITHMS, PROJECTIONS, ExploreConfig, parse_segments
from .explorer import batched_logits, explore, explore_batch, feasible_box
from .result import ExplorationResult
from .reuse import Fidelity

__all__ = [
    "ALGORITHMS",
    "PROJECTIONS",
    "ExplorationResult",
    "ExploreConfig",
    "Fidelity",
    "batched_logits",
    "explore",
    "explore_batch",
    "feasible_box",
    "parse_segments",
]
