"""The record of an exploration run: typed, saved as summary.json + trajectory.safetensors."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .._io import save_record
from ..registry import Registry
from .config import ExploreConfig
from .reuse import Fidelity

__all__ = ["VIEWS", "ExplorationResult"]

SUMMARY = "summary.json"
TRAJECTORY = "trajectory.safetensors"
#: fields stored in summary.json as they are, under their own names
JSON_FIELDS = (
    "lambda_max",
    "step_sizes",
    "ranks",
    "drift",
    "stop_reason",
    "elapsed_seconds",
    "segment_names",
    "explored_segments",
    "labels",
)
#: the same, added later: a summary.json without them loads with the field's default
LATER_JSON_FIELDS = (
    "uncorrected_drift",
    "model",
    "environment",
    "recoveries",
    "batch",
    "restriction",
    "memory",
)

#: how a result is shown: ``"html"`` (``result -> str``, Jupyter's compact view) and ``"page"``
#: (``(result, path, **options) -> Path``, the interactive viewer). ``simec.report`` registers
#: them when imported (``import simec`` does), so this layer never imports the report layer.
VIEWS: Registry[Callable[..., Any]] = Registry("result view")


@dataclass
class ExplorationResult:
    """Everything a run produced.

    Per step k = 0..K (K = ``steps_completed``): ``probabilities`` (K+1, q) and ``predicted`` at
    p_k, ``drift`` = ||y_k - y_0|| in the metric's output coordinates. Per step k < K:
    ``lambda_max``, ``step_sizes`` (delta actually taken), ``ranks`` (number of non-zero
    eigenvalues) and, with the corrector, ``uncorrected_drift`` (drift right after the
    predictor step, before correction). ``recoveries`` lists the steps retried with half the
    step size (``recover``): step index, reason, the step size used. ``batch``: for a run made
    by ``explore_batch``, which batch it was in (its ``elapsed_seconds`` is that batch's wall
    time). ``trajectory`` (m, segments, width) holds the stored
    points p_k for k in ``trajectory_steps`` (every ``record_every``-th and the last), projected
    when projection is "end"/"step"; ``trajectory_probabilities`` are the model's outputs on them.
    ``config``: the run's settings (saved as a dict in summary.json, loaded back by
    ``ExploreConfig.from_dict``). ``fidelity``: Jacobians taken, forward passes, corrector
    iterations, drift before and after correction per step, and with ``jacobian_reuse`` the
    refreshes with the angle between reused and fresh null spaces (``simec.explore.reuse``);
    None for results saved before it existed.
    ``restriction`` (with ``top_k``/``top_mass``, else empty): the chosen classes and the
    steps where they changed (``changes``), and per step from p_k (``steps``) the dropped
    probability mass, the exact leakage v^T D v of the restricted metric along the step's unit
    direction and its bound (``simec.geometry.restriction``; both None on steps where
    ``config.leakage`` did not measure them). ``memory``: the ``max_memory``
    budget, the peak memory of the run in bytes and what measured it (CUDA: the most GPU
    memory the tensors of this run held; CPU: the process's resident high-water mark since it
    started, ``ru_maxrss``, which includes whatever the process did before).
    """

    config: ExploreConfig
    probabilities: torch.Tensor
    lambda_max: list[float]
    step_sizes: list[float]
    ranks: list[int]
    drift: list[float]
    trajectory: torch.Tensor
    trajectory_steps: list[int]
    trajectory_probabilities: torch.Tensor
    stop_reason: str
    elapsed_seconds: float
    segment_names: list[str]
    explored_segments: list[int]
    labels: list[str]
    uncorrected_drift: list[float] = field(default_factory=list)
    input_description: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    batch: dict[str, Any] = field(default_factory=dict)
    fidelity: Fidelity | None = None
    restriction: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    #: guided walks (``walk_toward``): ||p_k - target|| / ||p_0 - target|| per point
    remaining_distance: list[float] = field(default_factory=list)

    @property
    def predicted(self) -> list[int]:
        return self.probabilities.argmax(dim=1).tolist()

    @property
    def steps_completed(self) -> int:
        return int(self.probabilities.shape[0]) - 1

    @property
    def initial_class(self) -> int:
        return self.predicted[0]

    def summary(self) -> dict[str, Any]:
        """The JSON-able part (everything but the trajectory tensor)."""
        return {
            "config": self.config.to_dict(),
            "stop_reason": self.stop_reason,
            "steps_completed": self.steps_completed,
            "elapsed_seconds": self.elapsed_seconds,
            "labels": self.labels,
            "predicted": self.predicted,
            "probabilities": self.probabilities.tolist(),
            "lambda_max": self.lambda_max,
            "step_sizes": self.step_sizes,
            "ranks": self.ranks,
            "drift": self.drift,
            "uncorrected_drift": self.uncorrected_drift,
            "trajectory_steps": self.trajectory_steps,
            "trajectory_probabilities": self.trajectory_probabilities.tolist(),
            "segment_names": self.segment_names,
            "explored_segments": self.explored_segments,
            "input": self.input_description,
            "model": self.model,
            "environment": self.environment,
            "recoveries": self.recoveries,
            "batch": self.batch,
            "fidelity": self.fidelity.to_dict() if self.fidelity is not None else None,
            **({"remaining_distance": self.remaining_distance} if self.remaining_distance else {}),
            **({"restriction": self.restriction} if self.restriction else {}),
            **({"memory": self.memory} if self.memory else {}),
        }

    def save(self, out_dir: str | os.PathLike, *, summary: dict[str, Any] | None = None) -> Path:
        """Write ``summary.json`` and ``trajectory.safetensors`` atomically into ``out_dir``;
        ``summary``: this result's ``summary()`` when the caller has it already."""
        tensors = {
            "trajectory": self.trajectory,
            "trajectory_steps": torch.tensor(self.trajectory_steps, dtype=torch.int64),
            "probabilities": self.probabilities,
        }
        return save_record(
            out_dir,
            summary=self.summary() if summary is None else summary,
            tensors=tensors,
            files=(SUMMARY, TRAJECTORY),
            format="simec-1",
        )

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> ExplorationResult:
        out = Path(out_dir)
        summary = json.loads((out / SUMMARY).read_text())
        tensors = load_file(str(out / TRAJECTORY))
        return cls(
            config=ExploreConfig.from_dict(summary["config"]),
            probabilities=tensors["probabilities"],
            trajectory=tensors["trajectory"],
            trajectory_steps=tensors["trajectory_steps"].tolist(),
            trajectory_probabilities=torch.tensor(summary["trajectory_probabilities"]),
            input_description=summary.get("input", ""),
            **{name: summary[name] for name in JSON_FIELDS},
            **{name: summary[name] for name in LATER_JSON_FIELDS if name in summary},
            fidelity=Fidelity.from_dict(summary["fidelity"]) if summary.get("fidelity") else None,
            remaining_distance=summary.get("remaining_distance", []),
        )

    def _repr_html_(self) -> str:
        """A compact view in Jupyter: the facts of the run and p(i*) along the walk."""
        return str(VIEWS.get("html")(self))

    def view(self, path: str | os.PathLike, **options: Any) -> Path:
        """Write the interactive viewer of this run (as ``simec view``) to ``path``.

        ``options`` go to ``simec.report.viewer.write_viewer`` (``adapter=`` or ``model=`` to
        decode the stored points when the run does not record its model directory).
        """
        return Path(VIEWS.get("page")(self, path, **options))
