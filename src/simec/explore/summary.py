"""From a settled walk to its ``ExplorationResult``: the per-step lists, the stored trajectory
(Algorithms 1/2 line 10) projected onto the feasible box (line 11), the model's outputs there."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.func import vmap

from .._io import environment
from ..geometry.jacobian import quiet_vmap
from ..models.base import ModelAdapter, PreparedInput
from .box import project
from .config import ExploreConfig
from .result import ExplorationResult
from .reuse import Fidelity
from .walker import Walker

__all__ = ["batched_logits", "peak_memory", "reset_peak_memory", "walk_result"]


def reset_peak_memory(device: torch.device) -> None:
    """Start measuring a run's peak (CUDA; the CPU's ``ru_maxrss`` cannot be reset)."""
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, Any]:
    """The peak memory in bytes and what measured it (see ``ExplorationResult.memory``)."""
    if device.type == "cuda" and torch.cuda.is_available():
        peak = int(torch.cuda.max_memory_allocated(device))
        return {"peak_bytes": peak, "measured_by": "torch.cuda.max_memory_allocated (this run)"}
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB elsewhere
    return {
        "peak_bytes": int(rss * scale),
        "measured_by": "ru_maxrss (process resident high-water mark since it started)",
    }


def batched_logits(
    adapter: ModelAdapter, prepared: PreparedInput, points: Tensor, *, chunk: int = 64
) -> Tensor:
    """Logits (m, q) of the model at m explored points (m, segments, width)."""
    fn = vmap(lambda x: adapter.logits(x, prepared))
    with torch.no_grad(), quiet_vmap():
        return torch.cat([fn(points[i : i + chunk]) for i in range(0, len(points), chunk)])


def _trajectory(walker: Walker) -> tuple[Tensor, Tensor, list[int]]:
    """The stored points (whole inputs), their probabilities and their step indices."""
    setup = walker.setup
    stored = [s for s in walker.walk.steps if s.point is not None]
    trajectory = torch.stack([setup.segments.full(s.point) for s in stored])  # type: ignore[arg-type]
    if setup.cfg.projection == "end":
        # Algorithm 1 line 11: project the stored points onto the feasible region
        rows = setup.segments.rows
        trajectory[:, rows] = project(trajectory[:, rows], setup.lower, setup.upper)
        logits = batched_logits(setup.adapter, setup.prepared, trajectory)
        probabilities = torch.softmax(logits, -1)
    else:
        probabilities = torch.stack([s.probabilities for s in stored])
    return trajectory, probabilities, [s.index for s in stored]


def fidelity(walker: Walker, drift: list[float]) -> Fidelity:
    """The walk's cost and output-keeping record; ``drift`` at p_0 .. p_K (read back once)."""
    taken, stepper, cost = walker.walk.steps[1:], walker.stepper, walker.cost
    return Fidelity(
        jacobian_reuse=stepper.jacobian_reuse,
        jacobians=cost.jacobians,
        forward_passes=cost.forwards,
        fresh=[s.fresh for s in taken],
        corrector_iterations=[s.corrector_iterations for s in taken],
        drift_before=[s.uncorrected_drift for s in taken],
        drift_after=drift[1:],
        refreshes=list(stepper.refreshes),
        retried=stepper.retried,
        forward_points=cost.points,
    )


def walk_result(
    walk: Walker, elapsed: float, batch: dict[str, Any] | None = None
) -> ExplorationResult:
    """The result of a settled walk (``Walker.settle``)."""
    setup, steps = walk.setup, walk.walk.steps
    adapter, prepared = setup.adapter, setup.prepared
    taken = steps[1:]
    trajectory, traj_probs, stored_steps = _trajectory(walk)
    labels = getattr(prepared, "output_labels", None)
    drift = torch.stack([s.drift for s in steps]).tolist()
    return ExplorationResult(
        config=ExploreConfig.from_dict(walk.cfg.to_dict()),  # as saved: plain values, a copy
        probabilities=torch.stack([s.probabilities for s in steps]).detach().cpu(),
        lambda_max=[s.lambda_max for s in taken],  # type: ignore[misc]
        step_sizes=[s.step_size for s in taken],  # type: ignore[misc]
        ranks=[s.rank for s in taken],  # type: ignore[misc]
        drift=drift,
        trajectory=trajectory.detach().cpu(),
        trajectory_steps=stored_steps,
        trajectory_probabilities=traj_probs.detach().cpu(),
        stop_reason=walk.stop_reason or "completed",
        elapsed_seconds=elapsed,
        segment_names=prepared.segment_names,
        explored_segments=setup.segments.rows.tolist(),
        labels=labels(adapter) if labels is not None else list(adapter.labels),
        uncorrected_drift=[s.uncorrected_drift for s in taken] if walk.corrects else [],  # type: ignore[misc]
        input_description=prepared.description,
        model={
            **adapter.describe(),
            "dtype": str(adapter.dtype).replace("torch.", ""),
            "device": str(adapter.device),
        },
        environment=environment(),
        recoveries=walk.recoveries,
        batch=batch or {},
        fidelity=fidelity(walk, drift),
        restriction=(
            setup.model_fn.restriction.to_dict() if setup.model_fn.restriction is not None else {}
        ),
        memory={"max_memory": walk.cfg.max_memory, **peak_memory(prepared.embeddings.device)},
        remaining_distance=(
            [s.remaining_distance for s in steps]  # type: ignore[misc]
            if steps[0].remaining_distance is not None
            else []
        ),
    )
