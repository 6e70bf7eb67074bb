"""Pullback geometry: Jacobians, output metrics, pullback spectra (SiMEC paper, Section 2)."""

from .jacobian import batched_jacobian, jacobian
from .metrics import OutputMetric, get_output_metric, output_metric_names, register_output_metric
from .spectrum import (
    METHODS,
    LowRankSpectra,
    PullbackSpectrum,
    lowrank_spectra,
    pullback_matrix,
    pullback_spectrum,
)

__all__ = [
    "METHODS",
    "LowRankSpectra",
    "OutputMetric",
    "PullbackSpectrum",
    "batched_jacobian",
    "get_output_metric",
    "jacobian",
    "lowrank_spectra",
    "output_metric_names",
    "pullback_matrix",
    "pullback_spectrum",
    "register_output_metric",
]
