"""Output restriction of one walk (``ExploreConfig.top_k`` / ``top_mass``).

The walk's model function (``simec.explore.model_function``) gives the restricted output (the chosen
classes and their rest, ``simec.geometry.restriction``) so that every Jacobian has |S| + 1 (or
|S|) rows; the full logits come with it at every point evaluated, so a change of the full
model's top set is seen at no extra cost. ``Restriction`` holds the chosen classes, chooses
them again when the top set changes (at p_k; the new set serves from the step after p_k's, so
that a step and its corrector use one set), and records what each step drops: the dropped
probability mass at p_k and, from one Jacobian-vector product of the full logits along the
step's direction, the exact leakage v^T D v and its bound.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..geometry.jacobian import math_attention
from ..geometry.restriction import (
    choose_classes,
    coarse_output,
    dropped_mass,
    leakage,
    rest_classes,
    restrictable,
)

__all__ = ["LEAKAGE", "Restriction", "logits_jvp"]

#: when a restricted walk measures the exact leakage along its step (``ExploreConfig.leakage``)
LEAKAGE = ("every-step", "fresh", "off")


class Restriction:
    """The chosen classes of one walk, their changes, and the per-step record."""

    def __init__(self, top_k: int | None, top_mass: float | None, with_rest: bool) -> None:
        self.top_k, self.top_mass, self.with_rest = top_k, top_mass, with_rest
        self.classes: Tensor | None = None
        self.rest: Tensor | None = None
        self.pending: tuple[int, Tensor] | None = None
        self.changes: list[dict[str, Any]] = []  # {"step": k, "classes": [...]}
        self.steps: list[dict[str, Any]] = []  # per step from p_k: dropped mass, leakage, bound
        self.leakage_method = "jvp"

    @classmethod
    def build(cls, cfg: Any, metric_name: str) -> Restriction | None:
        """The restriction a config asks for (None when ``top_k`` and ``top_mass`` are None)."""
        if cfg.top_k is None and cfg.top_mass is None:
            return None
        return cls(cfg.top_k, cfg.top_mass, restrictable(metric_name))

    def choose(self, logits: Tensor) -> Tensor:
        return choose_classes(logits, top_k=self.top_k, top_mass=self.top_mass)

    def start(self, logits: Tensor) -> None:
        """The classes chosen at p_0 from its full logits."""
        self._set(0, self.choose(logits), logits.shape[-1])

    def _set(self, step: int, classes: Tensor, q: int) -> None:
        self.classes, self.rest = classes, rest_classes(q, classes)
        self.changes.append({"step": step, "classes": classes.tolist()})

    def coarse(self, y: Tensor) -> Tensor:
        """The restricted output of the full metric output y (probabilities)."""
        assert self.classes is not None, "Restriction.start was not called"
        return coarse_output(y, self.classes, with_rest=self.with_rest, rest=self.rest)

    def watch(self, step: int, logits: Tensor) -> None:
        """At an accepted p_k: when the full model's top set differs from the chosen one,
        keep the new set for ``apply`` (after p_k's step)."""
        assert self.classes is not None
        new = self.choose(logits)
        if set(new.tolist()) != set(self.classes.tolist()):
            self.pending = (step, new)
        else:
            self.pending = None

    def apply(self, q: int) -> bool:
        """Switch to the set ``watch`` found (True), or keep the classes (False)."""
        if self.pending is None:
            return False
        step, classes = self.pending
        self.pending = None
        self._set(step, classes, q)
        return True

    def measure(self, step: int, logits: Tensor, u: Tensor | None) -> None:
        """Record what the step from p_k along unit v drops: logits z at p_k, u = J_z v (None:
        not measured at this step, the dropped mass only; leakage and bound None)."""
        assert self.classes is not None
        found: dict[str, float | None]
        if u is None:
            mass = dropped_mass(logits, self.classes)
            found = {"dropped_mass": mass, "leakage": None, "bound": None}
        else:
            found = {**leakage(logits, u, self.classes, with_rest=self.with_rest).to_dict()}
        self.steps.append({"step": step, "classes": int(self.classes.numel()), **found})

    def to_dict(self) -> dict[str, Any]:
        return {
            "top_k": self.top_k,
            "top_mass": self.top_mass,
            "rest_coordinate": self.with_rest,
            "changes": self.changes,
            "steps": self.steps,
            "leakage_method": self.leakage_method,
        }


def logits_jvp(fn: Any, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor, str]:
    """(z(x), J_z v, how): one forward-mode product (math attention kernel), or, for a model
    forward mode cannot differentiate, a central difference with a step of 1e-3 ||x||."""
    with torch.no_grad():
        try:
            with math_attention():
                z, u = torch.func.jvp(fn, (x,), (v,))[:2]
            return z, u, "jvp"
        except (RuntimeError, NotImplementedError):
            h = 1e-3 * max(float(torch.linalg.vector_norm(x)), 1.0)
            z = fn(x)
            u = (fn(x + h * v) - fn(x - h * v)) / (2 * h)
            return z, u, "central difference"
