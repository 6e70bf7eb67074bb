"""Output restriction: the pullback of a model's top classes and the rest, with what it drops.

A classifier with q classes has logits z (q,) and probabilities p = softmax(z). Restricting it to
a set S of classes (the top k, or the smallest top set holding a probability mass) gives a
coarse model whose Jacobian has |S| + 1 rows instead of q, with a stated error:

**Fisher-Rao** (G = diag(1/p)). The coarse output is (p_S, p_rest) with p_rest = sum of p over
the classes outside S; it is the softmax of r = [z_S, logsumexp(z_rest)], so it is a model of its
own. With g_i = grad z_i, the Fisher-Rao pullback is the covariance of the logit gradients under
p, g_full = Cov_{i ~ p}(g_i) = sum_i p_i (g_i - gbar)(g_i - gbar)^T, and the coarse model's logit
for "rest" has gradient E_{i|rest}(g_i). The law of total covariance over the cells
{s} (s in S) and rest gives

    g_full = g_coarse + D,   D = p_rest * Cov_{i ~ p | rest}(g_i)   (positive semi-definite),

so the restricted metric is a lower bound in the Loewner order. Along a unit direction v, with
u = J_z v (one Jacobian-vector product of the full logits), the exact leakage is
v^T D v = p_rest * Var_{i|rest}(u_i) <= p_rest * range_rest(u)^2 / 4 (Popoviciu), and
tr D = p_rest * E_{i|rest} ||g_i - gbar_rest||^2 <= p_rest * L^2 when every ||g_i|| <= L
(so ||D||_2 <= tr D <= p_rest L^2).

**Euclidean on probabilities** (G = I). The aggregated coarse output (p_S, p_rest) would *not*
give a lower bound (the difference sum_rest a_i a_i^T - (sum_rest a_i)(sum_rest a_i)^T, a_i =
grad p_i, is indefinite), so the restricted output is p_S alone (|S| rows), and
D = sum_{i in rest} a_i a_i^T is positive semi-definite. Along v, with a_i . v = p_i (u_i - ubar)
(ubar = E_p u): v^T D v = sum_rest p_i^2 (u_i - ubar)^2 <= (max_rest p_i) * p_rest * range(u)^2.

**Logit metrics**: restriction changes the quantity itself (a metric on fewer logits, not an
approximation of the full one), so it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError

__all__ = [
    "RESTRICTABLE",
    "choose_classes",
    "coarse_output",
    "dropped_pullback",
    "dropped_mass",
    "leakage",
    "rest_classes",
    "restrictable",
]

#: metric name -> whether the restricted output keeps the aggregated "rest" coordinate
RESTRICTABLE = {"fisher-rao": True, "euclidean-probs": False}


def restrictable(metric_name: str) -> bool:
    """Whether the restricted output keeps the rest coordinate; InputError for other metrics."""
    if metric_name not in RESTRICTABLE:
        raise InputError(
            f"output restriction (top_k/top_mass) is defined for the probability metrics "
            f"{sorted(RESTRICTABLE)}, not {metric_name!r}: on logits it would change the "
            "metric itself rather than approximate it"
        )
    return RESTRICTABLE[metric_name]


def choose_classes(
    logits: Tensor, *, top_k: int | None = None, top_mass: float | None = None
) -> Tensor:
    """The chosen classes, most probable first: the ``top_k`` largest logits, or the smallest
    top set whose probability mass is at least ``top_mass`` (ties broken by index)."""
    q = logits.shape[-1]
    order = torch.argsort(logits.detach(), descending=True, stable=True)
    if top_k is not None:
        return order[: min(int(top_k), q)]
    if top_mass is None:
        raise InputError("choose_classes needs top_k or top_mass")
    p = torch.softmax(logits.detach().to(torch.float64), -1)[order]
    # the first prefix reaching the mass (a tiny slack for the rounding of the running sum)
    reached = torch.cumsum(p, 0) >= float(top_mass) - 1e-12
    count = int(reached.to(torch.int64).argmax()) + 1 if bool(reached.any()) else q
    return order[:count]


def _rest_mask(q: int, classes: Tensor, device: torch.device) -> Tensor:
    mask = torch.ones(q, dtype=torch.bool, device=device)
    mask[classes.to(device)] = False
    return mask


def rest_classes(q: int, classes: Tensor) -> Tensor:
    """The classes outside ``classes`` (ascending), as an index tensor."""
    return torch.nonzero(_rest_mask(q, classes, classes.device)).squeeze(1)


def coarse_output(
    p: Tensor, classes: Tensor, *, with_rest: bool, rest: Tensor | None = None
) -> Tensor:
    """The restricted output: (p_S, p_rest) (``with_rest``, Fisher-Rao) or p_S; the rest
    coordinate is left out when S holds every class. ``rest``: ``rest_classes`` (computed when
    not given). Indexing only (no boolean masks), so that it can be differentiated and
    vmapped."""
    chosen = p.index_select(-1, classes)
    if not with_rest:
        return chosen
    rest = rest_classes(p.shape[-1], classes) if rest is None else rest
    if rest.numel() == 0:
        return chosen
    return torch.cat([chosen, p.index_select(-1, rest).sum(-1, keepdim=True)], -1)


@dataclass(frozen=True)
class Leakage:
    """What the restriction drops along one unit direction v: the dropped probability mass,
    the exact leakage v^T D v and its bound from the range of u = J_z v."""

    dropped_mass: float
    leakage: float
    bound: float

    def to_dict(self) -> dict[str, float]:
        return {"dropped_mass": self.dropped_mass, "leakage": self.leakage, "bound": self.bound}


def _split(logits: Tensor, classes: Tensor) -> tuple[Tensor, Tensor]:
    """The full model's probabilities in float64 and the mask of the classes outside
    ``classes``."""
    p = torch.softmax(logits.detach().to(torch.float64), -1)
    return p, _rest_mask(p.shape[-1], classes, p.device)


def dropped_mass(logits: Tensor, classes: Tensor) -> float:
    """The probability mass of the classes outside ``classes`` (float64), as ``leakage``
    reports it."""
    p, mask = _split(logits, classes)
    return float(p[mask].sum())


def leakage(logits: Tensor, u: Tensor, classes: Tensor, *, with_rest: bool) -> Leakage:
    """v^T D v along a unit direction v from the full logits z and u = J_z v (both (q,)), in
    float64: Fisher-Rao (``with_rest``) p_rest * Var_{i|rest}(u_i), bound p_rest * range^2 / 4;
    Euclidean on probabilities sum_rest p_i^2 (u_i - E_p u)^2, bound max_rest p_i * p_rest *
    range(u)^2. All zeros when S holds every class."""
    p, mask = _split(logits, classes)
    u = u.detach().to(torch.float64)
    if not bool(mask.any()):
        return Leakage(0.0, 0.0, 0.0)
    p_rest_i, u_rest = p[mask], u[mask]
    mass = float(p_rest_i.sum())
    if with_rest:
        w = p_rest_i / p_rest_i.sum() if mass > 0 else torch.full_like(p_rest_i, 1 / len(u_rest))
        mean = (w * u_rest).sum()
        var = float((w * (u_rest - mean) ** 2).sum())
        spread = float(u_rest.max() - u_rest.min())
        return Leakage(mass, mass * var, mass * spread**2 / 4)
    ubar = (p * u).sum()
    exact = float((p_rest_i**2 * (u_rest - ubar) ** 2).sum())
    spread = float(u.max() - u.min())
    return Leakage(mass, exact, float(p_rest_i.max()) * mass * spread**2)


def dropped_pullback(jz: Tensor, logits: Tensor, classes: Tensor, *, with_rest: bool) -> Tensor:
    """D (n x n), computed directly from the full logit Jacobian jz (q, n): the part of the full
    pullback the restricted one drops (for tests and small models; O(q n^2))."""
    jz = jz.reshape(jz.shape[0], -1)
    p = torch.softmax(logits, -1)
    mask = _rest_mask(p.shape[-1], classes, p.device)
    if not bool(mask.any()):
        return jz.new_zeros(jz.shape[1], jz.shape[1])
    g, pr = jz[mask], p[mask]
    if with_rest:
        mass = pr.sum()
        centred = g - (pr / mass) @ g
        return (centred.T * pr) @ centred
    a = pr[:, None] * (g - p @ jz)  # grad p_i = p_i (g_i - E_p g)
    return a.T @ a
