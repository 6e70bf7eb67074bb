"""simec: how a Transformer sees its input space.

Pull the output metric back through the model's Jacobian onto the input embeddings and walk
inside the input's equivalence class (SiMEC) or across classes (SiMExp).

    >>> import simec
    >>> adapter = simec.load_adapter("path/to/vit")          # saved with save_pretrained
    >>> result = simec.explore(adapter, "digit.png", algorithm="simec", steps=200)
    >>> result.save("runs/digit")

Importing simec changes nothing in the process: no environment variable, no torch setting.
torch's thread count is chosen by the command line, or by you with :func:`configure_cpu`.
"""

# ruff: noqa: E402

# the report layer registers ExplorationResult's views (``_repr_html_``, ``view``): the explore
# layer never imports it
from . import report as _report  # noqa: F401
from .cpu import configure_cpu
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
    "configure_cpu",
    "explore",
    "explore_batch",
    "from_model",
    "jacobian",
    "load_adapter",
    "pullback_spectrum",
    "register_output_metric",
]
