"""Guided SiMEC: walk toward a target without leaving the equivalence class of the start.

Not in the paper; built on Algorithm 1 (``simec.explore.simec``). At each step, instead of a
random null direction, the walk takes the projection of (target - p_k) onto the null space of
the pullback metric g(p_k) (eq. 5):

    v_k = P_null(p_k) (target - p_k),        d_k = ||v_k|| (the projected distance)
    delta_k = min(c / sqrt(lambda_max), cap, d_k)   (Algorithm 1 line 7, never past d_k)
    p_{k+1} = p_k + delta_k v_k / d_k, then the Gauss-Newton corrector back onto N(x) = N(p_0).

The walk stops when d_k <= ``tolerance`` * ||p_0 - target||: no null direction brings it closer,
so it cannot get nearer the target without changing the output; with ``patience`` P, also when
the remaining distance ||p_k - target|| has not fallen below 0.999 of its least value for P
steps (it stopped getting closer: e.g. the target lies on another piece of the level set; d_k
itself may grow for a while on a curved level set as the null space turns toward the target).
Otherwise after K steps. Every
step records the remaining distance ||p_k - target|| / ||p_0 - target||.

For a linear model N(x) = A x the null space is the same everywhere: the walk goes straight to
p_0 + P_null(target - p_0), i.e. it reaches the target exactly when target - p_0 lies in null(A)
and otherwise stops at the projection, at remaining distance ||P_row(target - p_0)|| / ||...||.

The walk does not project onto the feasible box (the target may lie outside the start's box):
its ``projection`` is recorded as "none".
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from .._io import environment
from ..errors import InputError, RankZeroMetricError
from ..geometry import steps
from ..geometry.jacobian import jacobian
from ..geometry.metrics import get_output_metric
from ..geometry.spectrum import PullbackSpectrum, pullback_spectrum
from ..models.base import ModelAdapter, PreparedInput
from .config import RULES, ExploreConfig
from .corrector import Corrector
from .model_function import model_function
from .result import ExplorationResult
from .segments import Segments

__all__ = ["guided_direction", "walk_toward"]


def guided_direction(spectrum: PullbackSpectrum, x: Tensor, target: Tensor) -> tuple[Tensor, float]:
    """(unit v, d): the null-space part of ``target - x`` (``spectrum.project_null``),
    normalised, and its length d (0 gives a zero vector)."""
    v = spectrum.project_null((target - x).reshape(-1))
    length = float(torch.linalg.vector_norm(v))
    return (v / length if length > 0 else v), length


def _target_rows(adapter: ModelAdapter, target: Any, prepared: PreparedInput, rows: Tensor):
    if isinstance(target, Tensor) and target.shape == prepared.embeddings.shape:
        x = target
    else:
        x = adapter.prepare(target).embeddings
    if x.shape != prepared.embeddings.shape:
        raise InputError(
            f"the target embeds to shape {tuple(x.shape)}, the input to "
            f"{tuple(prepared.embeddings.shape)}: give a target of the same size (same image "
            "size, or a text with the same number of tokens)"
        )
    return x.to(prepared.embeddings)[rows]


def walk_toward(
    adapter: ModelAdapter,
    raw_input: Any,
    target: Any,
    config: ExploreConfig | None = None,
    *,
    tolerance: float = 1e-6,
    patience: int | None = None,
    max_seconds: float | None = None,
    **options: Any,
) -> ExplorationResult:
    """Guided SiMEC from ``raw_input`` toward ``target`` (a raw input, or a tensor of the
    explored shape); see the module docstring. The corrector is always on (N(x) = N(p_0)).
    The result's ``remaining_distance`` has one value per point p_0 .. p_K. ``patience``: see
    the module docstring; ``max_seconds``: stop once the walk has run this long."""
    cfg = replace(config or ExploreConfig(), **options)
    cfg = replace(cfg, algorithm="simec", corrector=True, projection="none").validate()
    if cfg.box != "input":
        raise InputError("a guided walk (toward=...) does not take a box")
    if cfg.restricted:
        raise InputError("a guided walk (toward=...) does not take top_k/top_mass")
    if not 0 <= tolerance < 1:
        raise InputError(f"tolerance must lie in [0, 1), got {tolerance!r}")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise InputError(f"patience must be a positive integer, got {patience!r}")
    metric = get_output_metric(cfg.output_metric)
    prepared = adapter.prepare(raw_input)
    x0 = prepared.embeddings
    seg = Segments.select(x0, cfg.segments)
    goal = _target_rows(adapter, target, prepared, seg.rows)
    x = x0[seg.rows].clone()
    start_norm = float(torch.linalg.vector_norm(x))
    cap = cfg.max_step * start_norm if cfg.max_step is not None else math.inf
    total = float(torch.linalg.vector_norm(goal - x))
    if total == 0:
        raise InputError("the target is the input itself (distance 0)")

    model_fn = model_function(adapter, prepared, seg, metric)
    rule, corrector, last = RULES["simec"], None, x
    probs, drift, remaining, lams, sizes, ranks, before = [], [], [], [], [], [], []
    stored, stored_steps = [], []
    stop, t0 = None, time.perf_counter()
    least, least_at = math.inf, 0  # the least remaining distance so far, and its step
    try:
        for k in range(cfg.steps + 1):
            y, jac, logits = jacobian(
                model_fn, x, chunk_size=cfg.chunk_size, has_aux=True, max_memory=cfg.max_memory
            )
            if not (torch.isfinite(y).all() and torch.isfinite(jac).all()):
                if k == 0:
                    raise InputError("the model output or its Jacobian is NaN/Inf at the input")
                stop = f"non-finite output or Jacobian at step {k}"
                break
            if corrector is None:
                corrector, y0 = Corrector(model_fn, y, cfg), y
            last = x
            probs.append(torch.softmax(logits, -1))
            drift.append(float(torch.linalg.vector_norm(y - y0)))
            remaining.append(float(torch.linalg.vector_norm(goal - x)) / total)
            if k % cfg.record_every == 0:
                stored.append(seg.full(x).detach().clone())
                stored_steps.append(k)
            spec = pullback_spectrum(
                jac,
                y,
                metric=metric,
                method=cfg.method,  # type: ignore[arg-type]
                rtol=cfg.rtol,  # type: ignore[arg-type]
            )
            if spec.rank == 0:
                if k == 0:
                    raise RankZeroMetricError("the pullback metric is zero at the input")
                stop = f"rank-zero metric at step {k}"
                break
            v, d = guided_direction(spec, x, goal)
            if d <= tolerance * total:
                stop = f"projected distance vanished at step {k}"
                break
            if remaining[-1] < 0.999 * least:
                least, least_at = remaining[-1], k
            elif patience is not None and k - least_at >= patience:
                stop = f"stopped getting closer at step {k}"
                break
            if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                stop = f"time budget spent at step {k}"
                break
            if k == cfg.steps:
                break
            size = steps.rule_step_size(
                cfg.step_rule,
                spec.lambda_max,
                float(spec.eigenvalues[-1]) if cfg.step_rule == "paper-final" else None,
                scale=rule.c * cfg.step_multiplier,
                eta=cfg.eta * cfg.step_multiplier,
                cap=cap,
            )
            delta = min(size, d)
            x, first = corrector(x + delta * v.reshape(x.shape), jac.reshape(jac.shape[0], -1))
            lams.append(spec.lambda_max)
            sizes.append(delta)
            ranks.append(spec.rank)
            before.append(first)
    except KeyboardInterrupt:
        stop = f"interrupted at step {len(probs) - 1}"
    n = len(probs)  # points measured; the last step (if any) beyond them is dropped
    lams, sizes, ranks, before = lams[: n - 1], sizes[: n - 1], ranks[: n - 1], before[: n - 1]
    if stored_steps[-1] != n - 1:  # the last measured point is always stored
        stored_steps.append(n - 1)
        stored.append(seg.full(last).detach().clone())
    trajectory = torch.stack(stored)
    description = f"{prepared.description} -> toward target"
    return ExplorationResult(
        config=replace(ExploreConfig.from_dict(cfg.to_dict()), extra={**cfg.extra, "guided": True}),
        probabilities=torch.stack(probs).detach().cpu(),
        lambda_max=lams,
        step_sizes=sizes,
        ranks=ranks,
        drift=drift,
        trajectory=trajectory.detach().cpu(),
        trajectory_steps=stored_steps,
        trajectory_probabilities=torch.stack([probs[s] for s in stored_steps]).detach().cpu(),
        stop_reason=stop or "completed",
        elapsed_seconds=time.perf_counter() - t0,
        segment_names=prepared.segment_names,
        explored_segments=seg.rows.tolist(),
        labels=prepared.output_labels(adapter),
        uncorrected_drift=before,
        input_description=description,
        model={
            **adapter.describe(),
            "dtype": str(adapter.dtype).replace("torch.", ""),
            "device": str(adapter.device),
        },
        environment=environment(),
        remaining_distance=remaining,
    )
