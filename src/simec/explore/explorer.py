"""SiMEC (Algorithm 1) and SiMExp (Algorithm 2): one stepping loop, two direction rules.

Segment selection follows Algorithm 4: only the rows of x listed in ``segments`` move, and the
Jacobian is taken with respect to those rows alone (the others are held fixed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor
from torch.func import vmap

from .._io import environment
from ..errors import InputError, RankZeroMetricError
from ..geometry.jacobian import jacobian, quiet_vmap
from ..geometry.metrics import OutputMetric, get_output_metric
from ..geometry.spectrum import PullbackSpectrum, pullback_spectrum
from ..models.base import ModelAdapter, PreparedInput
from .config import ALGORITHMS, ExploreConfig
from .result import ExplorationResult

__all__ = ["explore", "feasible_box"]

Box = tuple[Tensor | float, Tensor | float]


def feasible_box(x0: Tensor) -> tuple[Tensor, Tensor]:
    """Default feasible region: per hidden dimension, the range the original input spans.

    This is the cap of Algorithm 5 (the "embeddings distribution of the original input").
    """
    return x0.amin(dim=0), x0.amax(dim=0)


def _resolve_box(box: Box | None, x0: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    if box is None:
        lo, hi = feasible_box(x0)
        return lo.expand(len(rows), -1), hi.expand(len(rows), -1)
    lower, upper = (torch.as_tensor(b, dtype=x0.dtype, device=x0.device) for b in box)
    try:
        if lower.ndim == 2 and lower.shape[0] == x0.shape[0]:
            lower = lower[rows]
        if upper.ndim == 2 and upper.shape[0] == x0.shape[0]:
            upper = upper[rows]
        lower = torch.broadcast_to(lower, (len(rows), x0.shape[1]))
        upper = torch.broadcast_to(upper, (len(rows), x0.shape[1]))
    except RuntimeError as exc:
        raise InputError(
            f"box bounds must broadcast to the embedding shape {tuple(x0.shape)}"
        ) from exc
    if (lower > upper).any():
        raise InputError("box lower bound exceeds its upper bound somewhere")
    return lower, upper


def _resolve_rows(segments: tuple[int, ...] | None, count: int, device: torch.device) -> Tensor:
    if segments is None:
        return torch.arange(count, device=device)
    bad = [s for s in segments if not -count <= s < count]
    if bad:
        raise InputError(
            f"segments {bad} out of range: the input has {count} segments (0..{count - 1})"
        )
    rows = sorted({s % count for s in segments})
    return torch.tensor(rows, device=device)


def batched_logits(
    adapter: ModelAdapter, prepared: PreparedInput, points: Tensor, *, chunk: int = 64
) -> Tensor:
    """Logits (m, q) of the model at m explored points (m, segments, width)."""
    fn = vmap(lambda x: adapter.logits(x, prepared))
    with torch.no_grad(), quiet_vmap():
        return torch.cat([fn(points[i : i + chunk]) for i in range(0, len(points), chunk)])


class _Corrector:
    """Gauss-Newton pull-back onto the level set N(x) = y0 with the pseudo-inverse of J(p_k)."""

    def __init__(self, fn: Callable[[Tensor], Any], y0: Tensor, cfg: ExploreConfig) -> None:
        self.fn, self.y0, self.cfg = fn, y0, cfg

    def __call__(self, x: Tensor, jac: Tensor) -> tuple[Tensor, float]:
        u, s, vh = torch.linalg.svd(jac, full_matrices=False)
        keep = s > max(jac.shape) * torch.finfo(s.dtype).eps * s[0]
        u, s, vh = u[:, keep], s[keep], vh[keep]
        first = math.nan
        for _ in range(self.cfg.corrector_iterations):
            with torch.no_grad():
                residual = self.fn(x)[0] - self.y0
            norm = float(torch.linalg.vector_norm(residual))
            if math.isnan(first):
                first = norm
            if norm <= self.cfg.corrector_tolerance:
                break
            x = x - (vh.T @ ((u.T @ residual) / s)).reshape(x.shape)
        return x, first


def explore(
    adapter: ModelAdapter,
    raw_input: Any,
    config: ExploreConfig | None = None,
    *,
    box: Box | None = None,
    progress: bool = False,
    **options: Any,
) -> ExplorationResult:
    """Walk the input space of ``adapter``'s model from ``raw_input``.

    ``config`` holds every option (see :class:`ExploreConfig`); keyword ``options`` override its
    fields, e.g. ``explore(adapter, image, algorithm="simexp", steps=500, seed=1)``. ``box`` is a
    (lower, upper) pair broadcastable to the embedding shape; the default is the per-dimension
    range of the original embeddings. Ctrl-C stops the walk and returns what was done so far
    (stop_reason "interrupted").
    """
    cfg = replace(config or ExploreConfig(), **options).validate()
    metric: OutputMetric = get_output_metric(cfg.output_metric)
    direction_rule, scale = ALGORITHMS[cfg.algorithm]
    scale *= cfg.step_multiplier

    prepared = adapter.prepare(raw_input)
    x0 = prepared.embeddings
    rows = _resolve_rows(cfg.segments, x0.shape[0], x0.device)
    all_rows = len(rows) == x0.shape[0]
    lower, upper = _resolve_box(box, x0, rows)

    def full(xs: Tensor) -> Tensor:
        return xs if all_rows else x0.index_copy(0, rows, xs)

    def model_fn(xs: Tensor) -> tuple[Tensor, Tensor]:
        logits = adapter.logits(full(xs), prepared)
        return metric.output(logits), logits

    use_compile = cfg.use_compile()
    generator = torch.Generator(device=x0.device).manual_seed(cfg.seed)
    x = x0[rows].clone()
    start = x.clone()
    start_norm = float(torch.linalg.vector_norm(start))
    cap = cfg.max_step * start_norm if cfg.max_step is not None else math.inf
    corrector = None

    probs: list[Tensor] = []
    lambda_max: list[float] = []
    step_sizes: list[float] = []
    ranks: list[int] = []
    drift: list[float] = []
    uncorrected: list[float] = []
    stored: list[Tensor] = []
    stored_steps: list[int] = []
    y0: Tensor | None = None
    stop_reason = "completed"

    def record(k: int, point: Tensor) -> None:
        stored.append(full(point).detach().clone())
        stored_steps.append(k)

    x_prev = x

    def rollback(previous: Tensor) -> Tensor:
        """Undo the last step (its point was not finite): the run ends on the last good point."""
        for values in (lambda_max, step_sizes, ranks, uncorrected):
            if len(values) > len(probs) - 1:
                values.pop()
        if stored_steps and stored_steps[-1] > len(step_sizes):
            stored.pop()
            stored_steps.pop()
        return previous

    steps = range(cfg.steps)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc=f"{cfg.algorithm} ({cfg.method})", unit="step")
    t0 = time.perf_counter()
    k = 0
    try:
        for k in steps:
            y, jac, logits = jacobian(  # type: ignore[misc]
                model_fn, x, chunk_size=cfg.chunk_size, has_aux=True, compile=use_compile
            )
            if not (torch.isfinite(y).all() and torch.isfinite(jac).all()):
                if k == 0:
                    raise InputError("the model output or its Jacobian is NaN/Inf at the input")
                stop_reason = f"non-finite output or Jacobian at step {k}; stopped at step {k - 1}"
                x = rollback(x_prev)
                break
            probs.append(torch.softmax(logits, -1))
            if y0 is None:
                y0 = y
                record(0, x)
                if cfg.corrector:
                    corrector = _Corrector(model_fn, y0, cfg)
            drift.append(float(torch.linalg.vector_norm(y - y0)))
            jac = jac.reshape(jac.shape[0], -1)
            spec: PullbackSpectrum = pullback_spectrum(
                jac,
                y,
                metric=metric,
                method=cfg.method,  # type: ignore[arg-type]
                rtol=cfg.rtol,
            )
            if spec.rank == 0:
                if k == 0:
                    raise RankZeroMetricError(
                        "the pullback metric is zero at the input: the output does not depend on "
                        "the explored segments (flat model output, or segments the model ignores)"
                    )
                stop_reason = f"rank-zero metric at step {k}"
                break
            if direction_rule == "null":
                if spec.rank >= spec.dim:
                    if k == 0:
                        raise InputError(
                            f"the explored space has dimension {spec.dim} and the metric has full "
                            "rank: there is no null direction for SiMEC; explore more segments"
                        )
                    stop_reason = f"no null direction at step {k}"
                    break
                direction = spec.null_direction(generator)
            else:
                direction = spec.nonnull_direction(generator)
            delta = min(spec.step_size(scale), cap)
            x_new = x + delta * direction.reshape(x.shape)
            if corrector is not None:
                x_new, before = corrector(x_new, jac)
                uncorrected.append(before)
            if cfg.projection == "step":
                x_new = torch.maximum(torch.minimum(x_new, upper), lower)
            lambda_max.append(spec.lambda_max)
            step_sizes.append(float(delta))
            ranks.append(spec.rank)
            x_prev, x = x, x_new
            if not torch.isfinite(x).all():
                stop_reason = f"non-finite point at step {k + 1}; stopped at step {k}"
                x = rollback(x_prev)
                break
            if float(torch.linalg.vector_norm(x - start)) > cfg.divergence_ratio * start_norm:
                stop_reason = (
                    f"diverged at step {k + 1}: ||x - x0|| > {cfg.divergence_ratio:g} ||x0||"
                )
                break
            if (k + 1) % cfg.record_every == 0 or k + 1 == cfg.steps:
                record(k + 1, x)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(p=f"{float(probs[-1].max()):.3f}", lmax=f"{spec.lambda_max:.3g}")
    except KeyboardInterrupt:
        stop_reason = f"interrupted at step {k}"
    finally:
        if bar is not None:
            bar.close()

    # the point reached last: make sure its output and the point itself are recorded
    n_done = len(step_sizes)
    with torch.no_grad():
        if len(probs) == n_done and torch.isfinite(x).all():
            y, logits = model_fn(x)
            if y0 is None:
                y0 = y
            probs.append(torch.softmax(logits, -1))
            drift.append(float(torch.linalg.vector_norm(y - y0)))
        elif len(probs) > n_done + 1:
            probs = probs[: n_done + 1]
            drift = drift[: n_done + 1]
    if not stored_steps or stored_steps[-1] != n_done:
        if torch.isfinite(x).all() and len(probs) == n_done + 1:
            record(n_done, x)
    elapsed = time.perf_counter() - t0

    trajectory = torch.stack(stored)
    if cfg.projection == "end":
        # Algorithm 1 line 11: project the stored points onto the feasible region
        sel = trajectory[:, rows]
        trajectory[:, rows] = torch.maximum(torch.minimum(sel, upper), lower)
        traj_probs = torch.softmax(batched_logits(adapter, prepared, trajectory), -1)
    else:
        traj_probs = torch.stack([probs[s] for s in stored_steps])

    return ExplorationResult(
        config=cfg.to_dict(),
        probabilities=torch.stack(probs).detach().cpu(),
        lambda_max=lambda_max,
        step_sizes=step_sizes,
        ranks=ranks,
        drift=drift,
        trajectory=trajectory.detach().cpu(),
        trajectory_steps=stored_steps,
        trajectory_probabilities=traj_probs.detach().cpu(),
        stop_reason=stop_reason,
        elapsed_seconds=elapsed,
        segment_names=prepared.segment_names,
        explored_segments=rows.tolist(),
        labels=list(adapter.labels),
        uncorrected_drift=uncorrected,
        input_description=prepared.description,
        model={
            **adapter.describe(),
            "dtype": str(adapter.dtype).replace("torch.", ""),
            "device": str(adapter.device),
        },
        environment=environment(),
    )
