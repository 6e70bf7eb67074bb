"""SiMEC (Algorithm 1) and SiMExp (Algorithm 2): one stepping loop, two direction rules.

Segment selection follows Algorithm 4: only the rows of x listed in ``segments`` move, and the
Jacobian is taken with respect to those rows alone (the others are held fixed).

One walk is a ``_Walk``: its state, its random generator and the rules of one step.
``explore`` drives one walk, ``explore_batch`` drives many in lockstep: their Jacobians are
computed as one batch (``batched_jacobian``) and their low-rank spectra as one batch
(``lowrank_spectra``), then every walk takes its own step with its own generator, through the
same code as a single run. So B inputs explored together give the results of B separate runs
with the same seeds, up to the round-off of batched kernels.

Host reads: everything a step needs on the host (whether the point, the output and the
Jacobian are finite, the largest singular value, the rank, the distance from the start) is
packed into one small tensor and read back once per step for the whole batch; per-step records
(probabilities, drift, stored points) stay on the model's device until the run ends.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.func import vmap

from .._io import environment
from ..errors import InputError, RankZeroMetricError
from ..geometry.jacobian import batched_jacobian, jacobian, quiet_vmap
from ..geometry.metrics import OutputMetric, get_output_metric
from ..geometry.spectrum import lowrank_spectra, pullback_spectrum
from ..models.base import ModelAdapter, PreparedInput
from .config import ALGORITHMS, ExploreConfig
from .result import ExplorationResult

__all__ = ["batched_logits", "explore", "explore_batch", "feasible_box"]

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


class _Status(NamedTuple):
    """What one step of one walk needs on the host, read back once per step for the batch."""

    point_ok: bool  # the current point is finite
    finite: bool  # the output, the Jacobian and G^1/2 J are finite there
    lambda_max: float
    rank: int
    distance: float  # ||x - x0|| over the explored segments


class _Step(NamedTuple):
    """The last step taken, kept to retry it with a smaller step (``recover``)."""

    x: Tensor
    direction: Tensor
    delta: float
    jac: Tensor
    lambda_max: float
    rank: int


class _Walk:
    """One exploration: its state, its generator, and the rules of one step."""

    def __init__(
        self,
        adapter: ModelAdapter,
        prepared: PreparedInput,
        cfg: ExploreConfig,
        metric: OutputMetric,
        box: Box | None,
    ) -> None:
        self.adapter, self.prepared, self.cfg, self.metric = adapter, prepared, cfg, metric
        self.direction_rule, scale = ALGORITHMS[cfg.algorithm]
        self.scale = scale * cfg.step_multiplier
        x0 = prepared.embeddings
        self.x0 = x0
        self.rows = _resolve_rows(cfg.segments, x0.shape[0], x0.device)
        self.all_rows = len(self.rows) == x0.shape[0]
        self.lower, self.upper = _resolve_box(box, x0, self.rows)
        self.generator = torch.Generator(device=x0.device).manual_seed(cfg.seed)
        self.x = x0[self.rows].clone()
        self.start = self.x.clone()
        self.start_norm = float(torch.linalg.vector_norm(self.start))
        self.cap = cfg.max_step * self.start_norm if cfg.max_step is not None else math.inf
        self.bound = cfg.divergence_ratio * self.start_norm
        self.corrector: _Corrector | None = None
        self.y0: Tensor | None = None

        self.probs: list[Tensor] = []
        self.drift: list[Tensor] = []
        self.lambda_max: list[float] = []
        self.step_sizes: list[float] = []
        self.ranks: list[int] = []
        self.uncorrected: list[float] = []
        self.stored: list[Tensor] = []
        self.stored_steps: list[int] = []
        self.recoveries: list[dict[str, Any]] = []
        self.x_prev = self.x
        self.last: _Step | None = None
        self.pending = False  # x was reached by the last step and is not checked yet
        self.halvings = 0  # consecutive retries of the current step
        self.stop_reason: str | None = None

        def model_fn(xs: Tensor) -> tuple[Tensor, Tensor]:
            logits = adapter.logits(self.full(xs), prepared)
            return metric.output(logits), logits

        self.model_fn = model_fn

    # -- bookkeeping --------------------------------------------------------------------------
    @property
    def done(self) -> int:
        return len(self.step_sizes)

    @property
    def active(self) -> bool:
        """Still needs Jacobians: not stopped and fewer than ``steps`` steps taken."""
        return self.stop_reason is None and self.done < self.cfg.steps

    def full(self, xs: Tensor) -> Tensor:
        return xs if self.all_rows else self.x0.index_copy(0, self.rows, xs)

    def record(self, k: int, point: Tensor) -> None:
        self.stored.append(self.full(point).detach().clone())
        self.stored_steps.append(k)

    def _undo_step(self) -> Tensor:
        """Forget the last step (its point or the output there is unusable); return its start."""
        n = self.done - 1
        for values in (self.lambda_max, self.step_sizes, self.ranks, self.uncorrected):
            del values[n:]
        del self.probs[n + 1 :], self.drift[n + 1 :]
        while self.stored_steps and self.stored_steps[-1] > n:
            self.stored.pop()
            self.stored_steps.pop()
        self.pending = False
        self.x = self.x_prev
        return self.x

    def _fail(self, reason: str, stop_reason: str, *, rollback: bool = True) -> None:
        """A bad step: retry it with half the step size (``recover``), or stop the walk."""
        last = self.last
        if last is not None and self.halvings < self.cfg.recover:
            self.halvings += 1
            self._undo_step()
            delta = last.delta / 2
            self.recoveries.append({"step": self.done, "reason": reason, "step_size": delta})
            self._take(last.x, last.direction, delta, last.jac, last.lambda_max, last.rank)
            return
        self.stop_reason = stop_reason
        if rollback:
            self._undo_step()
        self.pending = False

    def _check_point(self, point_ok: bool, distance: float) -> bool:
        """Check the point the last step reached; False if the walk retried or stopped."""
        self.pending = False
        k = self.done
        if not point_ok:
            self._fail("non-finite point", f"non-finite point at step {k}; stopped at step {k - 1}")
            return False
        if distance > self.bound:
            self._fail(
                "diverged",
                f"diverged at step {k}: ||x - x0|| > {self.cfg.divergence_ratio:g} ||x0||",
                rollback=False,
            )
            return False
        return True

    # -- one step -----------------------------------------------------------------------------
    def advance(
        self, status: _Status, y: Tensor, jac: Tensor, logits: Tensor, vectors: Tensor
    ) -> None:
        """One iteration at the current point x: check it, then step (Algorithm 1/2, lines 3-9).

        ``vectors`` (n, >= rank): the metric's non-null eigenvectors first, canonical signs.
        """
        cfg = self.cfg
        if self.pending:
            if not self._check_point(status.point_ok, status.distance):
                return
            if self.done % cfg.record_every == 0:
                self.record(self.done, self.x)
        k = self.done
        if not status.finite:
            if k == 0:
                raise InputError("the model output or its Jacobian is NaN/Inf at the input")
            self._fail(
                "non-finite output or Jacobian",
                f"non-finite output or Jacobian at step {k}; stopped at step {k - 1}",
            )
            return
        self.halvings = 0
        self.probs.append(torch.softmax(logits, -1))
        if self.y0 is None:
            self.y0 = y
            self.record(0, self.x)
            if cfg.corrector:
                self.corrector = _Corrector(self.model_fn, y, cfg)
        self.drift.append(torch.linalg.vector_norm(y - self.y0))
        rank, dim = status.rank, int(vectors.shape[0])
        if rank == 0:
            if k == 0:
                raise RankZeroMetricError(
                    "the pullback metric is zero at the input: the output does not depend on "
                    "the explored segments (flat model output, or segments the model ignores)"
                )
            self.stop_reason = f"rank-zero metric at step {k}"
            return
        if self.direction_rule == "null":
            if rank >= dim:
                if k == 0:
                    raise InputError(
                        f"the explored space has dimension {dim} and the metric has full "
                        "rank: there is no null direction for SiMEC; explore more segments"
                    )
                self.stop_reason = f"no null direction at step {k}"
                return
            direction = _null_direction(vectors[:, :rank], self.generator)
        else:
            direction = _nonnull_direction(vectors, rank, self.generator)
        delta = min(self.scale / status.lambda_max**0.5, self.cap)
        self._take(self.x, direction, delta, jac.reshape(jac.shape[0], -1), status.lambda_max, rank)

    def _take(
        self, x: Tensor, direction: Tensor, delta: float, jac: Tensor, lam: float, rank: int
    ) -> None:
        x_new = x + delta * direction.reshape(x.shape)
        if self.corrector is not None:
            x_new, before = self.corrector(x_new, jac)
            self.uncorrected.append(before)
        if self.cfg.projection == "step":
            x_new = torch.maximum(torch.minimum(x_new, self.upper), self.lower)
        self.lambda_max.append(lam)
        self.step_sizes.append(float(delta))
        self.ranks.append(rank)
        self.last = _Step(x, direction, float(delta), jac, lam, rank)
        self.x_prev, self.x, self.pending = x, x_new, True

    # -- the end ------------------------------------------------------------------------------
    def _repair(self) -> None:
        """After Ctrl-C (which can land mid-step): cut every record to one consistent length."""
        n = min(len(self.lambda_max), len(self.step_sizes), len(self.ranks))
        for values in (self.lambda_max, self.step_sizes, self.ranks):
            del values[n:]
        if self.cfg.corrector:
            del self.uncorrected[n:]
        m = min(len(self.probs), len(self.drift), n + 1)
        del self.probs[m:], self.drift[m:]

    def settle(self) -> None:
        """Check the last point reached and evaluate the model there (no Jacobian needed)."""
        self._repair()
        with torch.no_grad():
            while True:
                if self.pending:
                    ok = bool(torch.isfinite(self.x).all())
                    distance = float(torch.linalg.vector_norm(self.x - self.start))
                    if not self._check_point(ok, distance):
                        continue
                n = self.done
                if len(self.probs) == n and n == len(self.drift):
                    y, logits = self.model_fn(self.x)
                    if n > 0 and not (torch.isfinite(y).all() and torch.isfinite(logits).all()):
                        self._fail(
                            "non-finite output",
                            f"non-finite output at step {n}; stopped at step {n - 1}",
                        )
                        continue
                    if self.y0 is None:
                        self.y0 = y
                    self.probs.append(torch.softmax(logits, -1))
                    self.drift.append(torch.linalg.vector_norm(y - self.y0))
                break
        n = self.done
        if not self.stored_steps or self.stored_steps[-1] != n:
            if len(self.probs) == n + 1 and torch.isfinite(self.x).all():
                self.record(n, self.x)

    def result(self, elapsed: float, batch: dict[str, Any] | None = None) -> ExplorationResult:
        cfg, rows = self.cfg, self.rows
        trajectory = torch.stack(self.stored)
        if cfg.projection == "end":
            # Algorithm 1 line 11: project the stored points onto the feasible region
            sel = trajectory[:, rows]
            trajectory[:, rows] = torch.maximum(torch.minimum(sel, self.upper), self.lower)
            logits = batched_logits(self.adapter, self.prepared, trajectory)
            traj_probs = torch.softmax(logits, -1)
        else:
            traj_probs = torch.stack([self.probs[s] for s in self.stored_steps])
        labels = getattr(self.prepared, "output_labels", None)
        return ExplorationResult(
            config=cfg.to_dict(),
            probabilities=torch.stack(self.probs).detach().cpu(),
            lambda_max=self.lambda_max,
            step_sizes=self.step_sizes,
            ranks=self.ranks,
            drift=torch.stack(self.drift).tolist(),
            trajectory=trajectory.detach().cpu(),
            trajectory_steps=self.stored_steps,
            trajectory_probabilities=traj_probs.detach().cpu(),
            stop_reason=self.stop_reason or "completed",
            elapsed_seconds=elapsed,
            segment_names=self.prepared.segment_names,
            explored_segments=rows.tolist(),
            labels=labels(self.adapter) if labels is not None else list(self.adapter.labels),
            uncorrected_drift=self.uncorrected,
            input_description=self.prepared.description,
            model={
                **self.adapter.describe(),
                "dtype": str(self.adapter.dtype).replace("torch.", ""),
                "device": str(self.adapter.device),
            },
            environment=environment(),
            recoveries=self.recoveries,
            batch=batch or {},
        )


def _null_direction(basis: Tensor, generator: torch.Generator) -> Tensor:
    """A unit vector uniformly distributed in the null space (PullbackSpectrum.null_direction)."""
    z = torch.randn(basis.shape[0], generator=generator, dtype=basis.dtype, device=basis.device)
    v = z - basis @ (basis.T @ z)
    return v / torch.linalg.vector_norm(v)


def _nonnull_direction(vectors: Tensor, rank: int, generator: torch.Generator) -> Tensor:
    """One non-null eigenvector chosen uniformly, with a random sign; the draw of
    PullbackSpectrum.nonnull_direction, chosen on the device (no read-back of the index)."""
    draw = torch.randint(0, 2 * rank, (1,), generator=generator, device=vectors.device)
    sign = 1 - 2 * (draw % 2).to(vectors.dtype)
    return sign * vectors.index_select(1, draw // 2)[:, 0]


# -- driving walks ----------------------------------------------------------------------------
JacobianFn = Callable[[list[_Walk]], tuple[Tensor, Tensor, Tensor]]


def _statuses(walks: list[_Walk], y: Tensor, jac: Tensor) -> tuple[list[_Status], list[Tensor]]:
    """Spectra of every walk's pullback metric and the host facts of its step, one read-back."""
    cfg, metric = walks[0].cfg, walks[0].metric
    count, q = y.shape
    flat = jac.reshape(count, q, -1)
    xs = torch.stack([w.x for w in walks])
    starts = torch.stack([w.start for w in walks])
    point_ok = torch.isfinite(xs).flatten(1).all(dim=1)
    distance = torch.linalg.vector_norm((xs - starts).flatten(1), dim=1)
    if metric.factor is None:
        a = flat
    else:
        a = torch.stack([metric.apply_factor(y[i], flat[i]) for i in range(count)])
    finite = torch.isfinite(y).all(dim=1) & torch.isfinite(flat).flatten(1).all(dim=1)
    if cfg.method == "lowrank":
        spectra = lowrank_spectra(a, rtol=cfg.rtol)
        packed = torch.stack(
            [
                point_ok.to(torch.float64),
                (finite & spectra.finite).to(torch.float64),
                spectra.singular_values[:, 0].to(torch.float64),
                spectra.rank.to(torch.float64),
                distance.to(torch.float64),
            ],
            dim=1,
        ).tolist()
        out = [_Status(bool(p), bool(f), s**2, int(r), d) for p, f, s, r, d in packed]
        return out, list(spectra.vectors.unbind(0))
    # exact: one eigendecomposition per walk (each reads its spectrum back; O(n^3) dominates)
    finite = finite & torch.isfinite(a).flatten(1).all(dim=1)
    packed = torch.stack(
        [point_ok.to(torch.float64), finite.to(torch.float64), distance.to(torch.float64)], 1
    ).tolist()
    statuses, vectors = [], []
    for i, (p, f, d) in enumerate(packed):
        lam, rank, vec = 0.0, 0, flat.new_zeros(flat.shape[2], 0)
        if p and f:
            spec = pullback_spectrum(
                flat[i],
                y[i],
                metric=metric,
                method="exact",
                rtol=cfg.rtol,
            )
            lam, rank, vec = spec.lambda_max, spec.rank, spec.eigenvectors
        statuses.append(_Status(bool(p), bool(f), lam, rank, d))
        vectors.append(vec)
    return statuses, vectors


def _drive(walks: list[_Walk], jacobian_fn: JacobianFn, bar: Any = None) -> None:
    """Step every walk until it stops or has taken its steps; Ctrl-C stops them all."""
    try:
        while True:
            active = [w for w in walks if w.active]
            if not active:
                break
            y, jac, logits = jacobian_fn(active)
            statuses, vectors = _statuses(active, y, jac)
            before = sum(w.done for w in active)
            for i, walk in enumerate(active):
                walk.advance(statuses[i], y[i], jac[i], logits[i], vectors[i])
            if bar is not None:
                bar.update(max(sum(w.done for w in active) - before, 0))
                bar.set_postfix(lmax=f"{statuses[0].lambda_max:.3g}")
    except KeyboardInterrupt:
        for walk in walks:
            if walk.stop_reason is None:
                walk.stop_reason = f"interrupted at step {walk.done}"


def _single_jacobian(walk: _Walk, use_compile: bool) -> JacobianFn:
    cfg = walk.cfg

    def fn(active: list[_Walk]) -> tuple[Tensor, Tensor, Tensor]:
        y, jac, logits = jacobian(  # type: ignore[misc]
            walk.model_fn, walk.x, chunk_size=cfg.chunk_size, has_aux=True, compile=use_compile
        )
        return y[None], jac[None], logits[None]

    return fn


def _split_extras(prepared: PreparedInput) -> tuple[dict[str, Any], dict[str, Any]]:
    extras = getattr(prepared, "extras", None) or {}
    tensors = {k: v for k, v in extras.items() if isinstance(v, Tensor)}
    return tensors, {k: v for k, v in extras.items() if k not in tensors}


def _batch_key(walk: _Walk) -> tuple:
    """Walks with equal keys can share one batched Jacobian (same shapes, same fixed values)."""

    def sig(value: Any) -> Any:
        if isinstance(value, Tensor):
            return ("tensor", tuple(value.shape), str(value.dtype), str(value.device))
        try:
            hash(value)
            return ("value", value)
        except TypeError:
            return ("object", id(value))

    p = walk.prepared
    tensors, others = _split_extras(p)
    return (
        tuple(p.embeddings.shape),
        tuple(walk.rows.tolist()),
        tuple(sorted((k, sig(v)) for k, v in p.model_inputs.items())),
        tuple(sorted((k, sig(v)) for k, v in tensors.items())),
        tuple(sorted((k, sig(v)) for k, v in others.items())),
    )


def _batched_jacobian_fn(group: list[_Walk]) -> JacobianFn:
    template = group[0]
    adapter, metric, cfg = template.adapter, template.metric, template.cfg
    rows, all_rows = template.rows, template.all_rows
    _, static_extras = _split_extras(template.prepared)
    has_extras = any(f.name == "extras" for f in fields(template.prepared))

    def per_input(
        xs: Tensor, x0: Tensor, inputs: dict[str, Tensor], extras: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        point = xs if all_rows else x0.index_copy(0, rows, xs)
        changes: dict[str, Any] = {"embeddings": x0, "model_inputs": inputs}
        if has_extras:
            changes["extras"] = {**static_extras, **extras}
        logits = adapter.logits(point, replace(template.prepared, **changes))
        return metric.output(logits), logits

    cache: dict[tuple[int, ...], tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]] = {}

    def fn(active: list[_Walk]) -> tuple[Tensor, Tensor, Tensor]:
        key = tuple(id(w) for w in active)
        if key not in cache:  # the active set changes only when a walk stops
            cache.clear()
            preps = [w.prepared for w in active]
            cache[key] = (
                torch.stack([p.embeddings for p in preps]),
                {k: torch.stack([p.model_inputs[k] for p in preps]) for k in preps[0].model_inputs},
                {
                    k: torch.stack([_split_extras(p)[0][k] for p in preps])
                    for k in _split_extras(preps[0])[0]
                },
            )
        x0s, inputs, extras = cache[key]
        xs = torch.stack([w.x for w in active])
        y, jac, logits = batched_jacobian(  # type: ignore[misc]
            per_input, xs, x0s, inputs, extras, chunk_size=cfg.chunk_size, has_aux=True
        )
        return y, jac, logits

    return fn


def _prepare_config(config: ExploreConfig | None, options: dict[str, Any]) -> ExploreConfig:
    return replace(config or ExploreConfig(), **options).validate()


def _progress_bar(cfg: ExploreConfig, total: int, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{cfg.algorithm} ({cfg.method})", unit="step")


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
    cfg = _prepare_config(config, options)
    metric = get_output_metric(cfg.output_metric)
    walk = _Walk(adapter, adapter.prepare(raw_input), cfg, metric, box)
    bar = _progress_bar(cfg, cfg.steps, progress)
    t0 = time.perf_counter()
    try:
        _drive([walk], _single_jacobian(walk, cfg.use_compile()), bar)
        walk.settle()
    finally:
        if bar is not None:
            bar.close()
    return walk.result(time.perf_counter() - t0)


def explore_batch(
    adapter: ModelAdapter,
    raw_inputs: Sequence[Any],
    config: ExploreConfig | None = None,
    *,
    seeds: Sequence[int] | None = None,
    box: Box | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    **options: Any,
) -> list[ExplorationResult]:
    """Explore several inputs at once; the same results as ``explore`` on each, in order.

    ``seeds`` gives each input its own seed (default: ``config.seed`` for all, i.e. exactly the
    runs ``explore(adapter, raw, config)`` would make). Inputs whose explored tensors and model
    inputs have the same shapes share batched Jacobians (at most ``batch_size`` at a time, all
    by default); others are batched with their own kind (texts of different token counts, for
    instance). Every walk keeps its own generator, spectrum and stop reason; a walk that stops
    leaves the batch. A model that cannot be vmapped is run one input at a time (with a
    warning). ``elapsed_seconds`` of each result is the wall time of its batch; ``result.batch``
    says which batch it was in. The compiled Jacobian (``compile``) is used for batches of one
    only (``compile=True`` with larger batches is an error; "auto" runs them eager). An input
    that cannot be explored (unreadable, flat output at the start, ...) raises, as ``explore``
    would. Ctrl-C stops every walk and returns what was done (stop_reason "interrupted").
    """
    cfg = _prepare_config(config, options)
    raw_inputs = list(raw_inputs)
    if seeds is None:
        seeds = [cfg.seed] * len(raw_inputs)
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(raw_inputs):
        raise InputError(f"got {len(seeds)} seeds for {len(raw_inputs)} inputs")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    metric = get_output_metric(cfg.output_metric)
    walks = [
        _Walk(adapter, adapter.prepare(raw), replace(cfg, seed=seed), metric, box)
        for raw, seed in zip(raw_inputs, seeds)
    ]
    groups: dict[tuple, list[int]] = {}
    for i, walk in enumerate(walks):
        groups.setdefault(_batch_key(walk), []).append(i)
    size = batch_size or len(walks) or 1
    batches = [
        members[j : j + size] for members in groups.values() for j in range(0, len(members), size)
    ]
    if cfg.compile and any(len(members) > 1 for members in batches):
        raise InputError(
            "compile=True is not available for batched Jacobians: use compile=None/False, or "
            "batch_size=1"
        )
    results: list[ExplorationResult | None] = [None] * len(walks)
    bar = _progress_bar(cfg, cfg.steps * len(walks), progress)
    try:
        for number, members in enumerate(batches):
            group = [walks[i] for i in members]
            t0 = time.perf_counter()
            _drive_group(group, bar)
            for walk in group:
                walk.settle()
            elapsed = time.perf_counter() - t0
            for position, i in enumerate(members):
                info = {"index": number, "size": len(members), "position": position}
                results[i] = walks[i].result(elapsed, info)
            if any((walks[i].stop_reason or "").startswith("interrupted") for i in members):
                for later in batches[number + 1 :]:
                    for i in later:
                        walks[i].stop_reason = "interrupted at step 0"
                        walks[i].settle()
                        results[i] = walks[i].result(0.0, {"index": -1, "size": 0})
                break
    finally:
        if bar is not None:
            bar.close()
    return [r for r in results if r is not None]


def _drive_group(group: list[_Walk], bar: Any) -> None:
    if len(group) == 1:  # a batch of one is an explore() run, compiled Jacobian included
        _drive(group, _single_jacobian(group[0], group[0].cfg.use_compile()), bar)
        return
    batched = _batched_jacobian_fn(group)
    first = {"call": True}

    def fn(active: list[_Walk]) -> tuple[Tensor, Tensor, Tensor]:
        try:
            return batched(active)
        except (RuntimeError, NotImplementedError) as exc:
            if not first["call"]:
                raise
            raise _NotBatchable(exc) from exc
        finally:
            first["call"] = False

    try:
        _drive(group, fn, bar)
    except _NotBatchable as exc:
        warnings.warn(
            f"simec: this model cannot be run as a batch ({type(exc.cause).__name__}: "
            f"{str(exc.cause)[:160]}); exploring the inputs one at a time",
            RuntimeWarning,
            stacklevel=3,
        )
        for walk in group:
            _drive([walk], _single_jacobian(walk, False), bar)


class _NotBatchable(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause
