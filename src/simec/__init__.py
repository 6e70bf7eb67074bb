"""simec: how a Transformer sees its input space.

Pull the output metric back through the model's Jacobian onto the input embeddings and walk
inside the input's equivalence class (SiMEC) or across classes (SiMExp).

    >>> import simec
    >>> adapter = simec.load_adapter("path/to/vit")          # saved with save_pretrained
    >>> result = simec.explore(adapter, "digit.png", algorithm="simec", steps=200)
    >>> result.save("runs/digit")
"""

# ruff: noqa: E402

import os as _os
import sys as _sys

# OpenMP threads that wait for work sleep instead of spinning: on a machine whose cores are
# busy, spinning threads made runs ~10x slower (README, "Reliability"). Only before torch is
# imported (OpenMP reads it once) and only if the environment does not say otherwise.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# the report layer registers ExplorationResult's views (``_repr_html_``, ``view``): the explore
# layer never imports it
from . import report as _report  # noqa: F401
from .errors import (
    ExactTooLargeError,
    InputError,
    ModelError,
    OutputError,
    RankZeroMetricError,
    SimecError,
)
from .explore import ExplorationResult, ExploreConfig, explore, explore_batch
from .geometry import (
    OutputMetric,
    PullbackSpectrum,
    jacobian,
    pullback_spectrum,
    register_output_metric,
)
from .models import (
    HFImageClassifierAdapter,
    HFMaskedLMAdapter,
    HFSequenceClassifierAdapter,
    ModelAdapter,
    TorchAdapter,
    from_model,
    load_adapter,
)

__version__ = "0.1.0"

__all__ = [
    "ExactTooLargeError",
    "ExplorationResult",
    "ExploreConfig",
    "HFImageClassifierAdapter",
    "HFMaskedLMAdapter",
    "HFSequenceClassifierAdapter",
    "InputError",
    "ModelAdapter",
    "ModelError",
    "OutputError",
    "OutputMetric",
    "PullbackSpectrum",
    "RankZeroMetricError",
    "SimecError",
    "TorchAdapter",
    "explore",
    "explore_batch",
    "from_model",
    "jacobian",
    "load_adapter",
    "pullback_spectrum",
    "register_output_metric",
]
