"""Pullback geometry: Jacobians, output metrics, pullback spectra (SiMEC paper, Section 2)."""

from .jacobian import jacobian
from .metrics import OutputMetric, get_output_metric, output_metric_names, register_output_metric
from .spectrum import METHODS, PullbackSpectrum, pullback_matrix, pullback_spectrum

__all__ = [
    "METHODS",
    "OutputMetric",
    "PullbackSpectrum",
    "get_output_metric",
    "jacobian",
    "output_metric_names",
    "pullback_matrix",
    "pullback_spectrum",
    "register_output_metric",
]
