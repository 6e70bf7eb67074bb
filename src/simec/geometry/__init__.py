"""Pullback geometry: Jacobians, output metrics, pullback spectra (SiMEC paper, Section 2).

``jacobian`` (J), ``metrics`` (G on the output space), ``pullback`` (g = J^T G J, eq. 5),
``spectrum`` (its eigenpairs, two back-ends), ``steps`` (step size and directions of
Algorithms 1 and 2).
"""

from .jacobian import batched_jacobian, jacobian
from .metrics import OutputMetric, get_output_metric, output_metric_names, register_output_metric
from .pullback import pullback_factor, pullback_matrix
from .spectrum import (
    METHODS,
    LowRankSpectra,
    PullbackSpectrum,
    lowrank_spectra,
    pullback_spectrum,
)
from .steps import nonnull_direction, null_direction, step_size

__all__ = [
    "METHODS",
    "LowRankSpectra",
    "OutputMetric",
    "PullbackSpectrum",
    "batched_jacobian",
    "get_output_metric",
    "jacobian",
    "lowrank_spectra",
    "nonnull_direction",
    "null_direction",
    "output_metric_names",
    "pullback_factor",
    "pullback_matrix",
    "pullback_spectrum",
    "register_output_metric",
    "step_size",
]
