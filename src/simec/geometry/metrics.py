"""Metrics G(y) on the output space, pulled back to the input by eq. (5) of the SiMEC paper.

A metric is given by the output map y = phi(logits) on which it lives and a factor L(y) with
G(y) = L(y)^T L(y). Working with the factor lets the `lowrank` back-end decompose L J (q x n)
instead of the n x n pullback J^T G J.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError
from ..registry import Registry

__all__ = [
    "OutputMetric",
    "get_output_metric",
    "output_metric_names",
    "register_output_metric",
]


@dataclass(frozen=True)
class OutputMetric:
    """How outputs are measured.

    ``output`` maps logits (q,) to the coordinates y where the metric lives; ``factor`` maps y to
    either a vector d (G = diag(d)^2) or a q x q matrix L (G = L^T L).
    """

    name: str
    output: Callable[[Tensor], Tensor]
    factor: Callable[[Tensor], Tensor] | None
    description: str = ""

    def apply_factor(self, y: Tensor, jacobian: Tensor) -> Tensor:
        """Return L(y) J for a Jacobian J of shape (q, n)."""
        if self.factor is None:
            return jacobian
        factor = self.factor(y)
        if factor.ndim == 1:
            return factor.unsqueeze(1) * jacobian
        return factor @ jacobian

    def matrix(self, y: Tensor) -> Tensor:
        """The q x q matrix G(y) (for the `exact` back-end and for tests)."""
        q = y.shape[-1]
        if self.factor is None:
            return torch.eye(q, dtype=y.dtype, device=y.device)
        factor = self.factor(y)
        if factor.ndim == 1:
            return torch.diag(factor**2)
        return factor.T @ factor

    @classmethod
    def from_callable(
        cls, metric: Callable[[Tensor], Tensor], *, on: str = "probabilities", name: str = "custom"
    ) -> OutputMetric:
        """Wrap a user function y -> G(y) (a symmetric positive semi-definite q x q matrix).

        ``on`` says where y lives: "probabilities" (softmax of the logits) or "logits".
        The factor is G^{1/2} from an eigendecomposition, negative round-off clamped to zero.
        """
        output = _OUTPUT_MAPS.get(on)

        def factor(y: Tensor) -> Tensor:
            g = metric(y)
            q = y.shape[-1]
            if not isinstance(g, Tensor) or g.shape != (q, q):
                raise InputError(
                    f"custom output metric must return a {q}x{q} tensor, got "
                    f"{getattr(g, 'shape', type(g))}"
                )
            g = 0.5 * (g + g.T)
            w, v = torch.linalg.eigh(g)
            return (v * w.clamp_min(0).sqrt()).T

        return cls(name=name, output=output, factor=factor, description="user callable")


def _probabilities(logits: Tensor) -> Tensor:
    return torch.softmax(logits, dim=-1)


def _identity(logits: Tensor) -> Tensor:
    return logits


def _fisher_rao_factor(p: Tensor) -> Tensor:
    # Fisher-Rao on the simplex: ds^2 = sum_i dp_i^2 / p_i, i.e. G = diag(1/p).
    # Probabilities are clamped at the dtype's tiny value so that G stays finite.
    return p.clamp_min(torch.finfo(p.dtype).tiny).rsqrt()


#: where a custom metric's y lives (``OutputMetric.from_callable(on=...)``) -> logits to y
_OUTPUT_MAPS: Registry[Callable[[Tensor], Tensor]] = Registry(
    "output space (on=)", {"probabilities": _probabilities, "logits": _identity}
)

_REGISTRY: Registry[OutputMetric] = Registry("output metric")


def register_output_metric(metric: OutputMetric, *, overwrite: bool = False) -> None:
    """Make a metric available by name (API and the CLI's --output-metric)."""
    _REGISTRY.register(metric.name, metric, replace=overwrite)


def output_metric_names() -> list[str]:
    return _REGISTRY.names()


def get_output_metric(metric: str | OutputMetric | Callable[[Tensor], Tensor]) -> OutputMetric:
    """Resolve a name, an OutputMetric or a callable y -> G(y) on probabilities."""
    if isinstance(metric, OutputMetric):
        return metric
    if isinstance(metric, str):
        return _REGISTRY.get(metric)
    if callable(metric):
        return OutputMetric.from_callable(metric)
    raise InputError(f"output metric must be a name, an OutputMetric or a callable, got {metric!r}")


register_output_metric(
    OutputMetric(
        "euclidean-probs",
        _probabilities,
        None,
        "Euclidean metric on class probabilities (the SiMEC paper's default)",
    )
)
register_output_metric(
    OutputMetric("euclidean-logits", _identity, None, "Euclidean metric on logits")
)
register_output_metric(
    OutputMetric(
        "fisher-rao",
        _probabilities,
        _fisher_rao_factor,
        "Fisher-Rao metric on class probabilities, G = diag(1/p)",
    )
)
