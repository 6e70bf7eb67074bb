"""Are two inputs the same to the model? Bounds on the pseudodistance (Definitions 4-5).

The SiMEC paper (Section 2, ``../shared/reference/001_*``) equips the input space with the
pullback g = J^T G J of the output metric G (eq. 5) and defines the pseudolength of a curve,
Pl(gamma) = integral of sqrt(g(gamma', gamma')) (Definition 4), the pseudodistance
Pd(x, y) = inf Pl(gamma) over curves from x to y (Definition 5), and x ~ y iff Pd(x, y) = 0.
Proposition 1: Pl(gamma) is the length, under G, of the image curve N o gamma in the output
space. Everything here rests on that:

- **Lower bound.** The image of any curve from A to B joins N(A) to N(B), so its length is at
  least the geodesic distance between them: Pd(A, B) >= d_G(N(A), N(B)). Euclidean metrics
  (``euclidean-probs``, ``euclidean-logits``): ||N(A) - N(B)||. ``fisher-rao`` (G = diag(1/p)
  on the simplex): the map p -> 2 sqrt(p) sends it isometrically onto a sphere of radius 2, so
  d = 2 arccos(sum_i sqrt(p_i q_i)).
- **Upper bound.** Any curve's pseudolength. A curve here is the polyline through points
  gamma_0 = A, ..., gamma_m = B of the input space. The sum of d_G(N(gamma_i), N(gamma_{i+1}))
  is the length of a polygon inscribed in the image curve: it is at most that curve's length
  and grows towards it as the polyline is subdivided. So the length of a curve is measured by
  halving every segment (midpoints in the input space: the same polyline) until the sum changes
  by less than ``refine_rtol``; only then is it reported as an upper bound (``converged``).
- **The curve.** Interior points are moved to minimise the discrete energy
  sum_i e(N(gamma_i), N(gamma_{i+1})) (L-BFGS), starting from the straight line and from any
  other curves given (e.g. guided SiMEC walks A -> B and B -> A). e is the squared distance for
  the Euclidean metrics and, for Fisher-Rao, the squared chord 4 ||sqrt(p) - sqrt(q)||^2 of the
  sphere (smooth where the arc's arccos is not; it equals the squared arc to second order).
  Minimising energy spreads the image points evenly along a shortest image curve. The
  optimised polyline is then subdivided and optimised again until one more halving changes
  its length by less than ``refine_rtol`` (``shortest_curve``).

Verdict with tolerance ``tol`` (output units): ``equivalent`` if the upper bound <= tol,
``not equivalent`` if the lower bound > tol, otherwise ``undetermined`` (both numbers given).
A pair with equal outputs whose level set is disconnected stays undetermined: Proposition 3
needs a curve along which the output stays constant, and the bounds say whether one was found.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.func import vmap

from ..errors import InputError
from ..geometry.jacobian import quiet_vmap
from ..geometry.metrics import OutputMetric, get_output_metric
from ..models.base import ModelAdapter, PreparedInput

__all__ = [
    "CurveLength",
    "Embedded",
    "EquivalenceConfig",
    "EquivalenceResult",
    "Refinement",
    "batched_output_fn",
    "compare_inputs",
    "curve_length",
    "equivalence_bounds",
    "minimise_energy",
    "output_distance",
    "resample_curve",
    "shortest_curve",
    "subdivide",
    "verdict",
]

#: output metrics with a closed-form geodesic distance (what the lower bound needs)
SUPPORTED_METRICS = ("euclidean-probs", "euclidean-logits", "fisher-rao")
VERDICTS = ("equivalent", "not equivalent", "undetermined")

PointsFn = Callable[[Tensor], Tensor]  # points (m, *shape) -> outputs y (m, q)


@dataclass(frozen=True)
class EquivalenceConfig:
    """Options of ``equivalence_bounds``."""

    output_metric: str = field(
        default="euclidean-probs",
        metadata={"help": f"output metric G: one of {', '.join(SUPPORTED_METRICS)}"},
    )
    tol: float = field(
        default=1e-3,
        metadata={"help": "verdict tolerance on the pseudodistance, in output units"},
    )
    segments: int = field(
        default=16, metadata={"help": "segments of the optimised curve (interior points + 1)"}
    )
    energy_iterations: int = field(
        default=50,
        metadata={"help": "L-BFGS iterations minimising the curve's energy, per refinement"},
    )
    refine_rtol: float = field(
        default=0.01,
        metadata={"help": "subdivide a curve until its length changes by less than this fraction"},
    )
    max_segments: int = field(
        default=1024, metadata={"help": "stop subdividing at this many segments"}
    )
    seed: int = field(default=0, metadata={"help": "random seed"})

    def validate(self) -> EquivalenceConfig:
        if self.output_metric not in SUPPORTED_METRICS:
            raise InputError(
                f"output_metric={self.output_metric!r}: equivalence needs a closed-form output "
                f"distance, one of {list(SUPPORTED_METRICS)}"
            )
        for name in ("tol", "refine_rtol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise InputError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(self.segments, int) or self.segments < 1:
            raise InputError(f"segments must be a positive integer, got {self.segments!r}")
        if not isinstance(self.energy_iterations, int) or self.energy_iterations < 0:
            raise InputError(f"energy_iterations must be >= 0, got {self.energy_iterations!r}")
        if not isinstance(self.max_segments, int) or self.max_segments < self.segments:
            raise InputError(
                f"max_segments must be an integer >= segments ({self.segments}), "
                f"got {self.max_segments!r}"
            )
        return self


# -- distances in the output space ------------------------------------------------------------
def output_distance(metric: str | OutputMetric, ya: Tensor, yb: Tensor) -> Tensor:
    """Geodesic distance d_G between outputs ya, yb (..., q), in the metric's coordinates y
    (probabilities for ``euclidean-probs``/``fisher-rao``, logits for ``euclidean-logits``)."""
    name = _metric_name(metric)
    if name == "fisher-rao":
        overlap = (ya.clamp_min(0) * yb.clamp_min(0)).sqrt().sum(-1)
        return 2 * torch.arccos(overlap.clamp(-1.0, 1.0))
    return torch.linalg.vector_norm(ya - yb, dim=-1)


def _energy_terms(name: str, ys: Tensor) -> Tensor:
    """Squared (chord) distances between consecutive outputs ys (m+1, q) -> (m,)."""
    if name == "fisher-rao":
        roots = 2 * ys.clamp_min(0).sqrt()
        return (roots[1:] - roots[:-1]).pow(2).sum(-1)
    return (ys[1:] - ys[:-1]).pow(2).sum(-1)


def _metric_name(metric: str | OutputMetric) -> str:
    name = metric if isinstance(metric, str) else metric.name
    if name not in SUPPORTED_METRICS:
        raise InputError(f"no closed-form distance for output metric {name!r}")
    return name


# -- curves -----------------------------------------------------------------------------------
def subdivide(points: Tensor) -> Tensor:
    """The same polyline with every segment halved: (m+1, ...) -> (2m+1, ...)."""
    mids = 0.5 * (points[1:] + points[:-1])
    out = torch.empty((2 * len(points) - 1, *points.shape[1:]), dtype=points.dtype)
    out = out.to(points.device)
    out[0::2], out[1::2] = points, mids
    return out


@dataclass(frozen=True)
class CurveLength:
    """The pseudolength of a polyline, measured with successive subdivisions."""

    length: float  # the finest inscribed-polygon length (<= the curve's pseudolength)
    segments: int  # segments of the finest subdivision
    converged: bool  # the last halving changed the length by <= refine_rtol
    history: tuple[tuple[int, float], ...]  # (segments, length) per subdivision


@dataclass(frozen=True)
class Refinement:
    """When a subdivided polyline's length counts as converged: one more halving changes it by
    at most ``rtol`` of itself (or ``atol``); never beyond ``max_segments`` segments."""

    rtol: float = 0.01
    atol: float = 0.0
    max_segments: int = 1024


def curve_length(
    fn: PointsFn,
    points: Tensor,
    metric: str | OutputMetric,
    refine: Refinement = Refinement(),
) -> CurveLength:
    """Pseudolength of the polyline through ``points`` (m+1, ...), subdividing it as
    ``refine`` says (the inscribed length grows towards the curve's pseudolength)."""
    name = _metric_name(metric)
    with torch.no_grad():
        ys = fn(points)
        length = float(output_distance(name, ys[:-1], ys[1:]).sum())
        history = [(len(points) - 1, length)]
        while True:
            segments = 2 * (len(points) - 1)
            if segments > refine.max_segments:
                return CurveLength(length, len(points) - 1, False, tuple(history))
            points = subdivide(points)
            ys = fn(points)
            finer = float(output_distance(name, ys[:-1], ys[1:]).sum())
            history.append((segments, finer))
            change, length = abs(finer - length), finer
            if change <= max(refine.rtol * finer, refine.atol):
                return CurveLength(length, segments, True, tuple(history))


def resample_curve(points: Tensor, count: int) -> Tensor:
    """``count`` + 1 points evenly spaced by arc length (in the input space) along a polyline."""
    flat = points.reshape(len(points), -1)
    steps = torch.linalg.vector_norm(flat[1:] - flat[:-1], dim=1)
    arc = torch.cat([steps.new_zeros(1), steps.cumsum(0)])
    total = float(arc[-1])
    if total == 0.0:
        return points[:1].expand(count + 1, *points.shape[1:]).clone()
    targets = torch.linspace(0.0, total, count + 1, dtype=arc.dtype, device=arc.device)
    idx = torch.searchsorted(arc, targets, right=True).clamp(1, len(points) - 1)
    lo, hi = arc[idx - 1], arc[idx]
    w = ((targets - lo) / (hi - lo).clamp_min(torch.finfo(arc.dtype).tiny)).clamp(0, 1)
    out = flat[idx - 1] + w[:, None] * (flat[idx] - flat[idx - 1])
    out[0], out[-1] = flat[0], flat[-1]
    return out.reshape(count + 1, *points.shape[1:])


def minimise_energy(
    fn: PointsFn, start: Tensor, metric: str | OutputMetric, *, iterations: int = 50
) -> Tensor:
    """Move the interior points of the polyline ``start`` (m+1, ...) to lower its discrete
    energy (L-BFGS with a strong-Wolfe line search); the end points stay. Returns the curve of
    least energy seen."""
    name = _metric_name(metric)
    ends = start[[0, -1]].detach()
    if len(start) < 3 or iterations == 0:
        return start.detach().clone()
    inner = start[1:-1].detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [inner],
        lr=1.0,
        max_iter=iterations,
        history_size=20,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )
    best: dict[str, Any] = {"energy": math.inf, "curve": start.detach().clone()}

    def closure() -> Tensor:
        opt.zero_grad()
        curve = torch.cat([ends[:1], inner, ends[1:]])
        energy = _energy_terms(name, fn(curve)).sum()
        value = float(energy.detach())
        if math.isfinite(value) and value < best["energy"]:
            best["energy"], best["curve"] = value, curve.detach().clone()
        if math.isfinite(value):
            energy.backward()
        return energy

    try:
        opt.step(closure)
    except RuntimeError:  # a non-finite line search: keep the best curve seen
        pass
    return best["curve"]


def shortest_curve(
    fn: PointsFn,
    start: Tensor,
    metric: str | OutputMetric,
    refine: Refinement = Refinement(),
    *,
    iterations: int = 50,
) -> tuple[Tensor, CurveLength]:
    """Minimise the energy of ``start``, then subdivide and minimise again, until one halving
    of the optimised polyline changes its length as little as ``refine`` asks (the
    discretisation resolves the curve) or its ``max_segments`` is reached. Returns the curve and
    its length."""
    curve = start
    while True:
        curve = minimise_energy(fn, curve, metric, iterations=iterations)
        measured = curve_length(fn, curve, metric, refine)
        resolved = measured.converged and len(measured.history) == 2
        if resolved or 2 * (len(curve) - 1) > refine.max_segments:
            return curve, measured
        curve = subdivide(curve)


# -- the bounds -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EquivalenceResult:
    """Bounds on Pd(A, B) and the verdict (see the module docstring)."""

    lower_bound: float  # d_G(N(A), N(B))
    upper_bound: float  # the pseudolength of the best curve found
    upper_converged: bool  # its subdivision met refine_rtol (else a lower estimate of it)
    straight_line: float  # pseudolength of the straight segment A -> B
    straight_converged: bool
    best_curve: str  # which start the best curve came from
    candidates: dict[str, float]  # start name -> length of its optimised curve
    verdict: str
    config: EquivalenceConfig
    curve: Tensor  # (m+1, ...) the best curve's points
    curve_outputs: Tensor  # (m+1, q) the metric's coordinates y along it
    seconds: float
    extras: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "lower_bound": self.lower_bound,
            "upper_bound": self.upper_bound,
            "upper_converged": self.upper_converged,
            "straight_line": self.straight_line,
            "straight_converged": self.straight_converged,
            "best_curve": self.best_curve,
            "candidates": dict(self.candidates),
            "verdict": self.verdict,
            "config": asdict(self.config),
            "curve_points": int(self.curve.shape[0]),
            "seconds": self.seconds,
            **self.extras,
        }


def verdict(lower: float, upper: float, converged: bool, tol: float) -> str:
    """``equivalent`` / ``not equivalent`` / ``undetermined`` from the two bounds."""
    if lower > tol:
        return "not equivalent"
    if converged and upper <= tol:
        return "equivalent"
    return "undetermined"


def equivalence_bounds(
    fn: PointsFn,
    a: Tensor,
    b: Tensor,
    config: EquivalenceConfig | None = None,
    *,
    curves: dict[str, Tensor] | None = None,
) -> EquivalenceResult:
    """Lower and upper bounds on Pd(a, b) for the model ``fn`` (points -> metric coordinates).

    ``curves``: more starting curves (name -> points from a to b), e.g. guided walks; a and b
    are added at the ends; a curve of fewer than ``config.segments`` segments is resampled to
    that many by arc length, a longer one keeps its points.
    """
    cfg = (config or EquivalenceConfig()).validate()
    if a.shape != b.shape:
        raise InputError(
            f"the two inputs have different shapes {tuple(a.shape)} and {tuple(b.shape)}: "
            "equivalence compares inputs of one explored space (texts of equal token count)"
        )
    t0 = time.perf_counter()
    name = cfg.output_metric
    torch.manual_seed(cfg.seed)
    with torch.no_grad():
        ya, yb = fn(torch.stack([a, b]))
    lower = float(output_distance(name, ya, yb))
    weights = torch.linspace(0, 1, cfg.segments + 1, dtype=a.dtype, device=a.device)
    line = a + weights.reshape(-1, *([1] * a.ndim)) * (b - a)
    refine = Refinement(cfg.refine_rtol, cfg.tol / 10, cfg.max_segments)
    straight = curve_length(fn, line, name, refine)
    starts = {"straight line": line}
    for key, points in (curves or {}).items():
        if points.shape[1:] != a.shape:
            raise InputError(f"curve {key!r} has points of shape {tuple(points.shape[1:])}")
        full = torch.cat([a[None], points.to(a), b[None]])
        starts[key] = full if len(full) > cfg.segments else resample_curve(full, cfg.segments)
    best: tuple[float, bool, str, Tensor] | None = None
    candidates: dict[str, float] = {}
    for key, start in starts.items():
        curve, measured = shortest_curve(fn, start, name, refine, iterations=cfg.energy_iterations)
        candidates[key] = measured.length
        rank = (not measured.converged, measured.length)
        if best is None or rank < (not best[1], best[0]):
            best = (measured.length, measured.converged, key, curve)
    assert best is not None
    if (not straight.converged, straight.length) < (not best[1], best[0]):
        best = (straight.length, straight.converged, "straight line (not optimised)", line)
    upper, converged, which, curve = best
    with torch.no_grad():
        outputs = fn(curve)
    return EquivalenceResult(
        lower_bound=lower,
        upper_bound=upper,
        upper_converged=converged,
        straight_line=straight.length,
        straight_converged=straight.converged,
        best_curve=which,
        candidates=candidates,
        verdict=verdict(lower, upper, converged, cfg.tol),
        config=cfg,
        curve=curve.detach(),
        curve_outputs=outputs.detach(),
        seconds=time.perf_counter() - t0,
    )


def batched_output_fn(logits: Callable[[Tensor], Tensor], metric: str | OutputMetric) -> PointsFn:
    """points (m, *shape) -> the metric's coordinates y (m, q), vmapped over the points
    (one point at a time for models that cannot be vmapped)."""
    out = get_output_metric(metric).output
    single = lambda x: out(logits(x))  # noqa: E731
    mapped = vmap(single)

    def fn(points: Tensor) -> Tensor:
        try:
            with quiet_vmap():
                return mapped(points)
        except (RuntimeError, NotImplementedError):
            return torch.stack([single(p) for p in points])

    return fn


@dataclass(frozen=True)
class Embedded:
    """A point already in the adapter's explored space (e.g. the end of a walk), not a raw input."""

    x: Tensor


def compare_inputs(
    adapter: ModelAdapter, a: Any, b: Any, config: EquivalenceConfig | None = None, **bounds: Any
) -> EquivalenceResult:
    """Bounds on Pd(A, B) for two raw inputs (or ``Embedded`` points, or inputs already
    prepared by the adapter) of one model; ``bounds``: keyword options of
    ``equivalence_bounds`` (``curves``).

    The model runs from A's prepared input (its fixed model inputs: a text's attention mask,
    for instance), so A and B must have explored tensors of one shape.
    """
    cfg = (config or EquivalenceConfig()).validate()
    if isinstance(a, Embedded) and isinstance(b, Embedded):
        raise InputError("at least one of the two inputs must be a raw input (image or text)")
    preps = {
        k: v if isinstance(v, PreparedInput) else adapter.prepare(v)
        for k, v in (("a", a), ("b", b))
        if not isinstance(v, Embedded)
    }
    ctx = preps.get("a") or preps["b"]
    xa, xb = (
        (v.x if isinstance(v, Embedded) else preps[k].embeddings).to(
            device=adapter.device, dtype=adapter.dtype
        )
        for k, v in (("a", a), ("b", b))
    )
    if xa.shape != xb.shape:
        raise InputError(
            f"the two inputs embed to different shapes {tuple(xa.shape)} and {tuple(xb.shape)}: "
            "compare images of one size, or texts with the same number of tokens"
        )
    fn = batched_output_fn(lambda x: adapter.logits(x, ctx), cfg.output_metric)
    return equivalence_bounds(fn, xa, xb, cfg, **bounds)
