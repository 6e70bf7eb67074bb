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

from ..errors import InputError, ModelError
from ..geometry.jacobian import quiet_vmap, vmapped_attention
from ..geometry.metrics import OutputMetric, get_output_metric
from ..models.base import ModelAdapter, PreparedInput

__all__ = [
    "CurveLength",
    "Embedded",
    "EquivalenceConfig",
    "EquivalenceResult",
    "Refinement",
    "CertifiedLength",
    "batched_output_fn",
    "certified_length",
    "compare_inputs",
    "curve_length",
    "equivalence_bounds",
    "minimise_energy",
    "output_distance",
    "perturbed_line",
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
        default=4096,
        metadata={"help": "stop subdividing the optimised curve at this many segments"},
    )
    max_samples: int = field(
        default=65536,
        metadata={
            "help": "model evaluations of one certified length measurement (and as many again "
            "to verify it)"
        },
    )
    budget_seconds: float = field(
        default=40.0,
        metadata={
            "help": "wall-clock seconds for the search of curves (guided walks, optimisation, "
            "restarts); the best certified curve found by then is reported, every reported "
            "bound is still certified; 0: no limit (reproducible across machines)"
        },
    )
    restarts: int = field(
        default=2,
        metadata={
            "help": "perturbed straight lines also optimised while the verdict is undetermined "
            "(escapes symmetric stationary points)"
        },
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
        if not (isinstance(self.budget_seconds, (int, float)) and self.budget_seconds >= 0):
            raise InputError(f"budget_seconds must be >= 0, got {self.budget_seconds!r}")
        if not isinstance(self.restarts, int) or self.restarts < 0:
            raise InputError(f"restarts must be >= 0, got {self.restarts!r}")
        if not isinstance(self.max_samples, int) or self.max_samples < 2:
            raise InputError(f"max_samples must be an integer >= 2, got {self.max_samples!r}")
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
    """When a measured length counts as converged: one more halving changes it by at most
    ``rtol`` of itself (or ``atol``); never beyond ``max_segments`` segments of the optimised
    polyline. ``certified_length`` samples every segment at least ``min_samples`` / (its share
    of the curve's input-space length) times and evaluates the model at most ``max_samples``
    times while subdividing (and as many again for the verification)."""

    rtol: float = 0.01
    atol: float = 0.0
    max_segments: int = 4096
    max_samples: int = 65536
    min_samples: int = 32


@dataclass(frozen=True)
class CertifiedLength:
    """The pseudolength of a polyline, certified by adaptive subdivision and a verification
    (``certified_length``)."""

    length: float  # the bound: the verified length plus its last growth (>= the curve's Pl)
    measured: float  # the verified inscribed length (<= the curve's pseudolength)
    vertices: float  # the inscribed length through the polyline's own vertices only
    samples: int  # points of the verified sampling
    converged: bool  # every segment's length stopped growing, at the verification too
    max_drift: float  # max d_G(N(gamma(t)), N(gamma(0))) over the verified samples


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


def _evaluate(fn: PointsFn, points: Tensor, chunk: int = 512) -> Tensor:
    """fn over many points, ``chunk`` at a time (bounded memory)."""
    return torch.cat([fn(part) for part in points.split(chunk)])


def _inscribed(name: str, ys: Tensor) -> float:
    return float(output_distance(name, ys[:-1], ys[1:]).sum())


def certified_length(
    fn: PointsFn,
    points: Tensor,
    metric: str | OutputMetric,
    refine: Refinement = Refinement(),
) -> CertifiedLength:
    """An upper bound on the pseudolength of the polyline through ``points`` (m+1, ...).

    Every segment is sampled evenly, with pieces in proportion to its input-space length (at
    least ``refine.min_samples`` over the whole curve: a long segment whose ends and midpoint
    share the output cannot pass for a constant one), and each segment's pieces are halved (at
    least once) until its own inscribed length grows by at most
    ``rtol`` of itself + its share of ``atol``. Then the whole curve is verified at twice that
    density: the bound is the verified length plus each segment's last growth (an inscribed
    length approaches the curve's from below with an error that shrinks ~4x per halving on a
    smooth curve, so the last growth exceeds what is left). ``converged``: every segment met
    the rule, at the verification too, within ``refine.max_samples`` evaluations."""
    name = _metric_name(metric)
    m = len(points) - 1
    with torch.no_grad():
        ends = _evaluate(fn, points)
        vertices = _inscribed(name, ends)
        flat = points.reshape(m + 1, -1)
        seg = torch.linalg.vector_norm(flat[1:] - flat[:-1], dim=1).tolist()
        total = sum(seg)
        if m == 0 or total == 0.0:
            drift = float(output_distance(name, ends, ends[:1]).max())
            return CertifiedLength(vertices, vertices, vertices, m + 1, True, drift)
        h = total / max(refine.min_samples, m)
        moving = [i for i in range(m) if seg[i] > 0]
        ys: dict[int, Tensor] = {}

        def sample(which: list[int], pieces: dict[int, int]) -> None:
            """Refine ``ys[i]`` of the segments ``which`` to ``pieces[i]`` pieces (a multiple of
            the current count), evaluating only the new points."""
            parts, ts = [], []
            for i in which:
                n = pieces[i]
                t = torch.arange(1, n, dtype=points.dtype, device=points.device) / n
                if i in ys:  # keep the points already measured: only the new ones
                    old = len(ys[i]) - 1
                    t = t[torch.arange(1, n, device=points.device) % (n // old) != 0]
                ts.append(t)
                shape = (-1, *([1] * (points.ndim - 1)))
                parts.append(points[i] + t.reshape(shape) * (points[i + 1] - points[i]))
            if not parts:
                return
            values = _evaluate(fn, torch.cat(parts)).split([len(t) for t in ts])
            for i, new in zip(which, values):
                n = pieces[i]
                out = torch.empty((n + 1, ends.shape[1]), dtype=ends.dtype, device=ends.device)
                keep = torch.zeros(n + 1, dtype=torch.bool, device=ends.device)
                if i in ys:
                    step = n // (len(ys[i]) - 1)
                    keep[::step] = True
                    out[keep] = ys[i]
                else:
                    keep[[0, -1]] = True
                    out[0], out[-1] = ends[i], ends[i + 1]
                out[~keep] = new
                ys[i] = out

        pieces = {i: max(1, math.ceil(seg[i] / h)) for i in moving}
        sample(moving, pieces)
        lengths = {i: _inscribed(name, ys[i]) for i in moving}
        share = {i: refine.atol * seg[i] / total for i in moving}
        used = sum(pieces.values()) + 1
        active, capped = list(moving), False
        while active:
            extra = sum(pieces[i] for i in active)
            if used + extra > refine.max_samples:
                capped = True
                break
            for i in active:
                pieces[i] *= 2
            sample(active, pieces)
            used += extra
            grown = {i: _inscribed(name, ys[i]) - lengths[i] for i in active}
            for i in active:
                lengths[i] += grown[i]
            active = [i for i in active if grown[i] > refine.rtol * lengths[i] + share[i]]
        # the verification: every segment at twice the density it was accepted at
        for i in moving:
            pieces[i] *= 2
        sample(moving, pieces)
        measured, bound, converged = 0.0, 0.0, not capped
        for i in moving:
            finer = _inscribed(name, ys[i])
            growth = max(finer - lengths[i], 0.0)
            converged = converged and growth <= refine.rtol * finer + share[i]
            measured += finer
            bound += finer + growth
        samples = torch.cat([ends[:1], *(ys[i][1:] for i in moving)])
        drift = float(output_distance(name, samples, ends[:1]).max())
    return CertifiedLength(bound, measured, vertices, len(samples), converged, drift)


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


class _OutOfTime(Exception):
    """The time budget is spent (internal: stops an L-BFGS run)."""


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() > deadline


def _share(deadline: float | None, left: int) -> float | None:
    """The deadline of the next of ``left`` attempts still to run: an equal share of the time
    left before ``deadline`` (time one attempt does not use passes to the others), so that one
    slow optimisation cannot leave the other starting curves untried."""
    if deadline is None:
        return None
    now = time.perf_counter()
    return now + max(0.0, deadline - now) / max(left, 1)


def minimise_energy(
    fn: PointsFn,
    start: Tensor,
    metric: str | OutputMetric,
    *,
    iterations: int = 50,
    deadline: float | None = None,
) -> Tensor:
    """Move the interior points of the polyline ``start`` (m+1, ...) to lower its discrete
    energy (L-BFGS with a strong-Wolfe line search); the end points stay. Returns the curve of
    least energy seen (by ``deadline``, a ``time.perf_counter()`` value, at the latest)."""
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
        if _past(deadline):
            raise _OutOfTime
        opt.zero_grad()
        curve = torch.cat([ends[:1], inner, ends[1:]])
        energy = _energy_terms(name, fn(curve)).sum()
        value = float(energy.detach())
        if math.isfinite(value) and value < best["energy"]:
            best["energy"], best["curve"] = value, curve.detach().clone()
        if math.isfinite(value):
            try:
                energy.backward()
            except RuntimeError as exc:  # the model cannot be differentiated here: not a
                raise _NoGradient(exc) from exc  # line-search failure, never hidden
        return energy

    try:
        opt.step(closure)
    except (RuntimeError, _OutOfTime):  # a non-finite line search, or no time left: keep the
        pass  # best curve seen
    except _NoGradient as exc:
        raise ModelError(
            f"the model cannot be differentiated along the curve ({exc.__cause__}); "
            "the curve cannot be optimised"
        ) from exc
    return best["curve"]


class _NoGradient(Exception):
    """The energy's backward pass failed (e.g. a kernel that cannot be differentiated under
    vmap). Not a RuntimeError, so that the optimiser's own failures, which are caught, never
    include it: before, such a failure returned the start curve as if it were optimised."""


def _rank(measured: CertifiedLength) -> tuple[bool, float]:
    """Sort key of measured curves: a converged bound first, then the shorter."""
    return (not measured.converged, measured.length)


def shortest_curve(
    fn: PointsFn,
    start: Tensor,
    metric: str | OutputMetric,
    refine: Refinement = Refinement(),
    *,
    iterations: int = 50,
    enough: float = 0.0,
    deadline: float | None = None,
) -> tuple[Tensor, CertifiedLength]:
    """Minimise the energy of ``start``, then subdivide and minimise again, until the
    optimised polyline's own vertices resolve its certified length (to ``refine.rtol``), or
    a converged bound <= ``enough`` is found, or a refinement no longer shortens the best
    converged bound by ``refine.rtol``, or ``refine.max_segments`` is reached. Returns
    the best curve met on the way (a converged bound first, then the shortest) and its
    ``certified_length``: on a curved level set the bound shrinks with every halving while
    the last refinement may not converge, so the best is not always the last. Past
    ``deadline`` (a ``time.perf_counter()`` value) the optimisation stops and the curve reached
    is measured, without further refinement."""
    curve, best = start, None
    while True:
        curve = minimise_energy(fn, curve, metric, iterations=iterations, deadline=deadline)
        measured = certified_length(fn, curve, metric, refine)
        # a refinement that did not shorten the best converged bound by rtol: no more gain
        stalled = best is not None and measured.length > best[1].length * (1 - refine.rtol)
        if best is None or _rank(measured) < _rank(best[1]):
            best = (curve, measured)
        resolved = measured.converged and (
            measured.length - measured.vertices <= refine.rtol * measured.length + refine.atol
        )
        done = best[1].converged and best[1].length <= enough
        stalled = stalled and best[1].converged
        over = 2 * (len(curve) - 1) > refine.max_segments or _past(deadline)
        if resolved or done or stalled or over:
            return best
        curve = subdivide(curve)


def perturbed_line(a: Tensor, b: Tensor, segments: int, generator: torch.Generator) -> Tensor:
    """The straight line a -> b bent by a half sine wave of amplitude ||b - a|| / 2 in a random
    direction orthogonal to b - a: a start off the line, which a symmetric model (the line
    through a stationary point of the energy) cannot pull back onto it."""
    w = torch.linspace(0, 1, segments + 1, dtype=a.dtype, device=a.device)
    shape = (-1, *([1] * a.ndim))
    d = (b - a).reshape(-1)
    u = torch.randn(d.shape, generator=generator, dtype=a.dtype).to(a.device)
    dd = float(d @ d)
    if dd > 0:
        u = u - (u @ d) / dd * d
    norm = float(torch.linalg.vector_norm(u))
    amplitude = 0.5 * math.sqrt(dd)
    bump = (amplitude / norm * u).reshape(a.shape) if norm > 0 else torch.zeros_like(a)
    return a + w.reshape(shape) * (b - a) + torch.sin(math.pi * w).reshape(shape) * bump


# -- the bounds -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EquivalenceResult:
    """Bounds on Pd(A, B) and the verdict (see the module docstring)."""

    lower_bound: float  # d_G(N(A), N(B))
    upper_bound: float  # the certified pseudolength of the best curve found
    upper_converged: bool  # its measurement converged (else not a certified bound)
    straight_line: float  # certified pseudolength of the straight segment A -> B
    straight_converged: bool
    best_curve: str  # which start the best curve came from
    candidates: dict[str, float]  # start name -> certified length of its optimised curve
    verdict: str
    config: EquivalenceConfig
    curve: Tensor  # (m+1, ...) the best curve's points
    curve_outputs: Tensor  # (m+1, q) the metric's coordinates y along it
    seconds: float
    extras: dict[str, Any] = field(default_factory=dict)
    candidates_tried: int = 0  # starting curves optimised (straight, restarts, given curves)
    curve_drift: float = 0.0  # max d_G(N(gamma(t)), N(A)) over the verified samples of the curve
    verified_samples: int = 0  # points at which the best curve's length was verified

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
            "candidates_tried": self.candidates_tried,
            "curve_drift": self.curve_drift,
            "verified_samples": self.verified_samples,
            "verdict": self.verdict,
            "config": asdict(self.config),
            "curve_points": int(self.curve.shape[0]),
            "seconds": self.seconds,
            **self.extras,
        }


def verdict(lower: float, upper: float, converged: bool, tol: float, drift: float = 0.0) -> str:
    """``equivalent`` / ``not equivalent`` / ``undetermined`` from the two bounds (and the
    curve's largest output change ``drift``, which an equivalent pair keeps within tol)."""
    if lower > tol:
        return "not equivalent"
    if converged and upper <= tol and drift <= tol:
        return "equivalent"
    return "undetermined"


def equivalence_bounds(
    fn: PointsFn,
    a: Tensor,
    b: Tensor,
    config: EquivalenceConfig | None = None,
    *,
    curves: dict[str, Tensor] | None = None,
    deadline: float | None = None,
) -> EquivalenceResult:
    """Lower and upper bounds on Pd(a, b) for the model ``fn`` (points -> metric coordinates).

    ``curves``: more starting curves (name -> points from a to b), e.g. guided walks; a and b
    are added at the ends; a curve of fewer than ``config.segments`` segments is resampled to
    that many by arc length, a longer one keeps its points. While no curve certifies the pair
    equivalent and the lower bound does not decide it, ``config.restarts`` perturbed straight
    lines (``perturbed_line``, seeded by ``config.seed``) are optimised too. The search stops
    at ``deadline`` (a ``time.perf_counter()`` value; default: ``config.budget_seconds`` from
    now): the straight line is always measured, each starting curve is optimised for at most
    an equal share of the time left (what one does not use passes to the next), each curve
    optimised is measured before it counts, and the curves not tried for lack of time are
    listed in ``extras``.
    """
    cfg = (config or EquivalenceConfig()).validate()
    if a.shape != b.shape:
        raise InputError(
            f"the two inputs have different shapes {tuple(a.shape)} and {tuple(b.shape)}: "
            "equivalence compares inputs of one explored space (texts of equal token count)"
        )
    t0 = time.perf_counter()
    if deadline is None and cfg.budget_seconds > 0:
        deadline = t0 + cfg.budget_seconds
    name = cfg.output_metric
    generator = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        ya, yb = fn(torch.stack([a, b]))
    lower = float(output_distance(name, ya, yb))
    weights = torch.linspace(0, 1, cfg.segments + 1, dtype=a.dtype, device=a.device)
    line = a + weights.reshape(-1, *([1] * a.ndim)) * (b - a)
    refine = Refinement(cfg.refine_rtol, cfg.tol / 10, cfg.max_segments, cfg.max_samples)
    straight = certified_length(fn, line, name, refine)
    # the order counts when the time budget runs out: while the lower bound leaves the verdict
    # open, the given curves first (built to stay in the class); else the straight line first
    starts: dict[str, Tensor] = {} if lower <= cfg.tol else {"straight line": line}
    for key, points in (curves or {}).items():
        if points.shape[1:] != a.shape:
            raise InputError(f"curve {key!r} has points of shape {tuple(points.shape[1:])}")
        full = torch.cat([a[None], points.to(a), b[None]])
        starts[key] = full if len(full) > cfg.segments else resample_curve(full, cfg.segments)
    starts.setdefault("straight line", line)
    best: tuple[CertifiedLength, str, Tensor] = (straight, "straight line (not optimised)", line)
    candidates: dict[str, float] = {}
    # a converged bound this low needs no more refinement: it decides the verdict, or it is
    # within refine_rtol of the lower bound
    enough = max(cfg.tol, lower * (1 + cfg.refine_rtol))

    skipped: list[str] = []

    def attempt(key: str, start: Tensor, until: float | None) -> None:
        nonlocal best
        if _past(deadline):
            skipped.append(key)
            return
        curve, measured = shortest_curve(
            fn,
            start,
            name,
            refine,
            iterations=cfg.energy_iterations,
            enough=enough,
            deadline=until,
        )
        candidates[key] = measured.length
        if _rank(measured) < _rank(best[0]):
            best = (measured, key, curve)

    def decided() -> bool:
        top = best[0]
        return lower > cfg.tol or (
            top.converged and top.length <= cfg.tol and top.max_drift <= cfg.tol
        )

    # each starting curve gets an equal share of the time left; restarts share what remains
    for n, (key, start) in enumerate(starts.items()):
        attempt(key, start, _share(deadline, len(starts) - n))
    for k in range(cfg.restarts):
        if decided() or _past(deadline):
            break
        line_k = perturbed_line(a, b, cfg.segments, generator)
        attempt(f"perturbed line {k + 1}", line_k, _share(deadline, cfg.restarts - k))
    measured, which, curve = best
    with torch.no_grad():
        outputs = fn(curve)
    return EquivalenceResult(
        lower_bound=lower,
        upper_bound=measured.length,
        upper_converged=measured.converged,
        straight_line=straight.length,
        straight_converged=straight.converged,
        best_curve=which,
        candidates=candidates,
        verdict=verdict(lower, measured.length, measured.converged, cfg.tol, measured.max_drift),
        config=cfg,
        curve=curve.detach(),
        curve_outputs=outputs.detach(),
        seconds=time.perf_counter() - t0,
        candidates_tried=len(candidates),
        curve_drift=measured.max_drift,
        verified_samples=measured.samples,
        extras={"time_budget_spent": _past(deadline), "skipped_for_time": skipped},
    )


def batched_output_fn(logits: Callable[[Tensor], Tensor], metric: str | OutputMetric) -> PointsFn:
    """points (m, *shape) -> the metric's coordinates y (m, q), vmapped over the points
    (one point at a time for models that cannot be vmapped)."""
    out = get_output_metric(metric).output
    single = lambda x: out(logits(x))  # noqa: E731
    mapped = vmap(single)

    def fn(points: Tensor) -> Tensor:
        try:
            with quiet_vmap(), vmapped_attention(points):
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
