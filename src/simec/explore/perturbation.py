"""The paper's trial-and-error baseline explorer ("Input space exploration", Section 4).

Pixels x in [0, 1] move by a velocity v: x_{t+1} = clip(x_t + v_{t+1}, 0, 1) with
v_{t+1} = a_t v_t + eta * eps, a_t = +1 if the predicted label did not change at the last step
and -1 if it did (turn back), eps a standard normal vector made orthogonal to v_t; with
probability ``reinit`` (20% in the paper) v is instead re-drawn as eta * N(0, I).
An image is "informative" when its pixel variance is at least 0.01 (the paper's threshold).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..models.hf_vision import HFImageClassifierAdapter

__all__ = ["PerturbationResult", "perturbation_explore", "INFORMATIVE_VARIANCE"]

INFORMATIVE_VARIANCE = 0.01


@dataclass
class PerturbationResult:
    labels: list[int]
    variances: Tensor  # (iterations,)
    elapsed_seconds: float
    kept_images: Tensor  # (m, C, H, W): every ``keep_every``-th image
    kept_steps: list[int] = field(default_factory=list)
    initial_label: int = -1

    @property
    def iterations(self) -> int:
        return len(self.labels)

    @property
    def informative(self) -> int:
        return int((self.variances >= INFORMATIVE_VARIANCE).sum())

    @property
    def same_label(self) -> int:
        return sum(1 for y in self.labels if y == self.initial_label)


def step_velocity(
    v: Tensor, label_changed: bool, eta: float, reinit: float, gen: torch.Generator
) -> Tensor:
    """One update of the velocity (the rule in the module docstring)."""
    if float(torch.rand((), generator=gen)) < reinit:
        return eta * torch.randn(v.shape, generator=gen, dtype=v.dtype)
    eps = torch.randn(v.shape, generator=gen, dtype=v.dtype)
    norm2 = float((v * v).sum())
    if norm2 > 0:
        eps = eps - (eps * v).sum() / norm2 * v
    a = -1.0 if label_changed else 1.0
    return a * v + eta * eps


def perturbation_explore(
    adapter: HFImageClassifierAdapter,
    image: Any,
    *,
    steps: int | None = 1000,
    time_budget: float | None = None,
    eta: float = 0.05,
    reinit: float = 0.2,
    seed: int = 0,
    keep_every: int = 100,
) -> PerturbationResult:
    """Run the baseline for ``steps`` iterations or ``time_budget`` seconds (first to end)."""
    if steps is None and time_budget is None:
        raise ValueError("give steps, time_budget or both")
    gen = torch.Generator().manual_seed(seed)
    x = adapter.image(image)

    @torch.no_grad()
    def label(img: Tensor) -> int:
        return int(adapter.image_logits(img).argmax())

    y_prev = y0 = label(x)
    v = eta * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    labels: list[int] = []
    variances: list[float] = []
    kept: list[Tensor] = []
    kept_steps: list[int] = []
    t0 = time.perf_counter()
    t = 0
    while (steps is None or t < steps) and (
        time_budget is None or time.perf_counter() - t0 < time_budget
    ):
        x = (x + v).clamp(0.0, 1.0)
        y = label(x)
        labels.append(y)
        variances.append(float(x.var(unbiased=False)))
        if t % keep_every == 0:
            kept.append(x.clone())
            kept_steps.append(t)
        v = step_velocity(v, y != y_prev, eta, reinit, gen)
        y_prev = y
        t += 1
    return PerturbationResult(
        labels=labels,
        variances=torch.tensor(variances),
        elapsed_seconds=time.perf_counter() - t0,
        kept_images=torch.stack(kept) if kept else torch.empty(0, *x.shape),
        kept_steps=kept_steps,
        initial_label=y0,
    )
