"""Equivalence verdicts that are never wrong (issue 24): analytic models whose pseudodistance
Pd (Definitions 4-5) is known in closed form.

- Disconnected level sets: every curve between two components crosses an output the pair does
  not share, so Pd > 0 although N(A) = N(B): never ``equivalent``. The pairs are chosen so that
  one straight segment's ends AND midpoint share the output (the trap of measuring a polyline
  through too few points).
- Curved connected level sets (sphere, ellipsoid): Pd = 0, ``equivalent`` at the defaults.
- Curved models with Pd > 0: the upper bound within 3% of Pd.
- Every returned curve: the reported upper bound >= an independent dense re-measurement of that
  curve, minus 0.1%.
- Critical points (rank-zero metric): a verdict, never a traceback.
"""

import math

import pytest
import torch
from torch import nn

from simec import TorchAdapter
from simec.structure.equivalence import (
    EquivalenceConfig,
    Refinement,
    batched_output_fn,
    equivalence_bounds,
    output_distance,
)
from simec.structure.equivalence_run import compare_pair

pytestmark = pytest.mark.usefixtures("one_thread")


# -- the models -------------------------------------------------------------------------------
class Product(nn.Module):
    """f = x1 x2 x3. The level set f = c > 0 has four components (sign patterns +++, +--, -+-,
    --+); a curve between two of them crosses a coordinate plane (f = 0), so Pd = 2c, attained
    by a curve along which f falls monotonically to 0 and rises back."""

    def forward(self, x):
        return x.reshape(-1)[:3].prod().reshape(1)


class Cubic(nn.Module):
    """f = t^3 - t, t = x1: the level set f = 0 is the three planes t = -1, 0, 1. From t = -1
    to t = 1 any curve's image covers f on [-1, 1]: Pd = its total variation 8 / (3 sqrt 3)."""

    def forward(self, x):
        t = x.reshape(-1)[0]
        return (t**3 - t).reshape(1)


class Sine(nn.Module):
    """f = sin(x1): from x1 = 0 to x1 = 4 pi, Pd = the total variation of sin, 8."""

    def forward(self, x):
        return torch.sin(x.reshape(-1)[0]).reshape(1)


class Radial(nn.Module):
    """A classifier whose output depends on s = sum_i d_i x_i^2 only: logits (s, 0). Level sets
    are spheres (d = 1) or ellipsoids; s = 0 is a critical point (rank-zero metric)."""

    def __init__(self, d=(1.0, 1.0, 1.0)):
        super().__init__()
        self.register_buffer("d", torch.tensor(d, dtype=torch.float64))

    def forward(self, x):
        s = (self.d * x.reshape(-1) ** 2).sum()
        return torch.stack([s, torch.zeros_like(s)])


def defaults(**options):
    """The default settings, but without the wall-clock budget (``budget_seconds=0``): the
    verdicts here must not depend on how loaded the machine is."""
    return EquivalenceConfig(budget_seconds=0, **options)


def point(*values):
    return torch.tensor([values], dtype=torch.float64)


def _product_pair():
    """A = (1, 1, 1) and B = (1/s^2, -s, -s) on two components of x1 x2 x3 = 1, with s chosen
    (bisection) so that the midpoint of the segment AB has product 1 too."""
    lo, hi = 2.0, 6.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if (1 + mid**-2) * (mid - 1) ** 2 < 8 else (lo, mid)
    s = 0.5 * (lo + hi)
    return point(1, 1, 1), point(s**-2, -s, -s)


DISCONNECTED = {
    # name: (model, A, B, Pd)
    "product": (Product(), *_product_pair(), 2.0),
    "cubic": (Cubic(), point(-1, 0, 0), point(1, 3, 0), 8 / (3 * math.sqrt(3))),
    "sine": (Sine(), point(0, 0, 0), point(4 * math.pi, 3, 0), 8.0),
}
THIRD = 2 * math.pi / 3  # 120 degrees
CONNECTED = {
    "sphere": (Radial(), point(1, 0, 0), point(math.cos(THIRD), math.sin(THIRD), 0)),
    "ellipsoid": (
        Radial((1.0, 4.0, 9.0)),
        point(1, 0, 0),
        point(math.cos(THIRD), 0, math.sin(THIRD) / 3),
    ),
    "sphere, antipodal": (Radial(), point(1, 0, 0), point(-1, 0, 0)),
}


def fn_of(model, metric):
    adapter = TorchAdapter(model, dtype="float64")
    return adapter, batched_output_fn(lambda x: adapter.logits(x, None), metric)


def dense_length(fn, curve, metric, pieces=2000):
    """The curve's pseudolength re-measured independently: every segment cut into ``pieces``."""
    w = torch.linspace(0, 1, pieces + 1, dtype=curve.dtype).reshape(-1, *([1] * (curve.ndim - 1)))
    total = 0.0
    for p, q in zip(curve[:-1], curve[1:]):
        ys = fn(p + w * (q - p))
        total += float(output_distance(metric, ys[:-1], ys[1:]).sum())
    return total


def assert_certified(res, fn, metric):
    """The reported upper bound is an upper bound of the returned curve's length (to 0.1%)."""
    dense = dense_length(fn, res.curve, metric)
    assert res.upper_bound >= dense * (1 - 1e-3) - 1e-12, (res.upper_bound, dense)
    return dense


# -- disconnected level sets: never equivalent ------------------------------------------------
@pytest.mark.parametrize("name", list(DISCONNECTED))
def test_the_trap_pairs_share_the_output_at_both_ends_and_the_midpoint(name):
    model, a, b, _ = DISCONNECTED[name]
    _, fn = fn_of(model, "euclidean-logits")
    ys = fn(torch.stack([a, 0.5 * (a + b), b]))
    assert float((ys - ys[0]).abs().max()) < 1e-12


@pytest.mark.parametrize("name", list(DISCONNECTED))
def test_disconnected_level_sets_are_never_equivalent(name):
    model, a, b, pd = DISCONNECTED[name]
    adapter, fn = fn_of(model, "euclidean-logits")
    res = compare_pair(adapter, a, b, defaults(output_metric="euclidean-logits"))
    assert res.verdict == "undetermined", res.summary()
    assert res.lower_bound < 1e-12
    assert res.upper_converged
    assert res.upper_bound >= pd * (1 - 1e-3)  # no curve is shorter than Pd
    assert res.upper_bound <= pd * 1.03  # and the bound is tight
    assert_certified(res, fn, "euclidean-logits")


@pytest.mark.parametrize("name", ["cubic", "sine"])
def test_a_candidate_with_one_long_segment_is_measured_along_it(name):
    """A candidate curve that sits at A and jumps to B in one segment whose midpoint shares the
    output (what a guided walk's path ended with): its length is that of the whole jump."""
    model, a, b, pd = DISCONNECTED[name]
    _, fn = fn_of(model, "euclidean-logits")
    cfg = defaults(output_metric="euclidean-logits", restarts=0)
    res = equivalence_bounds(fn, a, b, cfg, curves={"jump": a.expand(40, *a.shape)})
    assert res.verdict == "undetermined"
    assert res.candidates["jump"] >= pd * (1 - 1e-3)
    assert_certified(res, fn, "euclidean-logits")


def test_certified_length_of_one_segment_hiding_its_change():
    from simec.structure.equivalence import certified_length

    _, fn = fn_of(Cubic(), "euclidean-logits")
    segment = torch.stack([point(-1, 0, 0), point(1, 0, 0)])
    measured = certified_length(fn, segment, "euclidean-logits", Refinement(rtol=1e-3))
    exact = 8 / (3 * math.sqrt(3))
    assert measured.converged and measured.vertices == 0.0  # the vertices alone see nothing
    assert exact * (1 - 1e-3) <= measured.length <= exact * 1.01
    assert measured.max_drift == pytest.approx(2 / (3 * math.sqrt(3)), rel=1e-2)


def test_certified_length_of_an_arc_is_above_it():
    """A quarter circle of radius 2 (length pi), one segment: the bound is >= pi, within 0.1%."""
    from simec.structure.equivalence import certified_length

    fn = lambda t: torch.stack([2 * torch.cos(t[:, 0]), 2 * torch.sin(t[:, 0])], 1)  # noqa: E731
    points = torch.tensor([[0.0], [math.pi / 2]], dtype=torch.float64)
    measured = certified_length(fn, points, "euclidean-logits", Refinement(rtol=1e-3))
    assert measured.converged and math.pi <= measured.length <= math.pi * 1.001
    assert measured.measured <= math.pi  # the inscribed polygon is below
    capped = certified_length(fn, points, "euclidean-logits", Refinement(rtol=1e-9, max_samples=64))
    assert not capped.converged and capped.length >= capped.measured


# -- curved connected level sets: equivalent at the defaults ----------------------------------
@pytest.mark.parametrize("name", list(CONNECTED))
def test_curved_connected_level_sets_are_equivalent_at_the_defaults(name):
    model, a, b = CONNECTED[name]
    adapter, fn = fn_of(model, "euclidean-probs")
    res = compare_pair(adapter, a, b, defaults())
    assert res.verdict == "equivalent", res.summary()
    assert res.upper_converged and res.upper_bound <= res.config.tol
    dense = assert_certified(res, fn, "euclidean-probs")
    assert dense <= res.config.tol
    ys = fn(res.curve)
    assert float(output_distance("euclidean-probs", ys, ys[:1]).max()) <= res.config.tol
    assert res.candidates_tried >= 3


def test_antipodal_points_escape_the_symmetric_line():
    """The straight line between antipodal points runs through the centre (a stationary point
    of the energy) and both guided walks stop at step 0: only perturbed starts find the sphere."""
    model, a, b = CONNECTED["sphere, antipodal"]
    adapter, _ = fn_of(model, "euclidean-probs")
    res = compare_pair(adapter, a, b, defaults())
    assert res.straight_line > 0.1  # the straight line leaves the class
    assert res.best_curve not in ("straight line", "guided A->B", "guided B->A")
    assert res.candidates_tried > 3
    again = compare_pair(adapter, a, b, defaults())  # seeded: reproducible
    assert torch.equal(again.curve, res.curve) and again.upper_bound == res.upper_bound


# -- curved models, Pd > 0 --------------------------------------------------------------------
def test_sphere_to_a_larger_sphere_upper_bound_is_within_3_percent():
    """From radius 1 to radius 2, 120 degrees apart: the output only follows s = |x|^2, so
    Pd = |N(B) - N(A)| (the lower bound); the straight line dips inside and is longer."""
    model = Radial()
    adapter, fn = fn_of(model, "euclidean-logits")
    a, b = point(1, 0, 0), point(2 * math.cos(THIRD), 2 * math.sin(THIRD), 0)
    res = compare_pair(adapter, a, b, defaults(output_metric="euclidean-logits"))
    assert res.verdict == "not equivalent"
    assert res.lower_bound == pytest.approx(3.0, rel=1e-12)
    assert res.straight_line > 3.3
    assert 3.0 * (1 - 1e-3) <= res.upper_bound <= 3.0 * 1.03
    assert_certified(res, fn, "euclidean-logits")


# -- critical points: a verdict, not a traceback ----------------------------------------------
def test_a_critical_point_gets_a_verdict_from_the_other_candidates():
    """The centre of the sphere model (gradient 0: rank-zero metric) and a point of s = 1:
    Pd = |N(B) - N(A)| along the straight line (s grows monotonically)."""
    adapter, fn = fn_of(Radial(), "euclidean-logits")
    a, b = point(0, 0, 0), point(1, 0, 0)
    res = compare_pair(adapter, a, b, defaults(output_metric="euclidean-logits"))
    assert res.verdict == "not equivalent"
    assert res.upper_bound == pytest.approx(1.0, rel=1e-3) and res.upper_bound >= 1.0 - 1e-12
    assert "rank-zero" in res.extras["guided A->B"]["stop_reason"]
    assert_certified(res, fn, "euclidean-logits")


def test_two_critical_points_in_one_class_are_equivalent():
    """x1 x2 x3 at 0 and at (1, 0, 0): both critical, both walks fail, the straight line stays
    at f = 0."""
    adapter, fn = fn_of(Product(), "euclidean-logits")
    res = compare_pair(
        adapter, point(0, 0, 0), point(1, 0, 0), defaults(output_metric="euclidean-logits")
    )
    assert res.verdict == "equivalent" and res.upper_bound == 0.0
    for walk in ("guided A->B", "guided B->A"):
        assert "rank-zero" in res.extras[walk]["stop_reason"]
    assert_certified(res, fn, "euclidean-logits")


def test_every_starting_curve_gets_a_share_of_the_time_budget(monkeypatch):
    """An optimisation that would use all the time it is given (a slow model) must not leave
    the other starting curves untried: each gets an equal share of the time left. Before the
    shares, the first curve used the whole budget and the guided walks' paths were skipped."""
    import time

    from simec.structure import equivalence as eq

    model, a, b = CONNECTED["sphere"]
    _, fn = fn_of(model, "fisher-rao")
    given: list[tuple[int, float | None]] = []
    real = eq.shortest_curve

    def slow(fn_, start, metric, refine, *, deadline=None, **kw):
        given.append((len(start), deadline))
        if deadline is not None:  # spend every second it is given, then return its start
            time.sleep(max(0.0, deadline - time.perf_counter()))
        return real(fn_, start, metric, refine, iterations=0, deadline=deadline)

    monkeypatch.setattr(eq, "shortest_curve", slow)
    w = torch.linspace(0, 1, 5, dtype=a.dtype)[1:-1, None, None]
    curves = {"walk 1": a + w * (b - a), "walk 2": b + w * (a - b)}
    t0 = time.perf_counter()
    cfg = EquivalenceConfig(budget_seconds=0.9, restarts=0)
    res = equivalence_bounds(fn, a, b, cfg, curves=curves)
    assert res.extras["skipped_for_time"] == []
    assert res.candidates_tried == 3
    assert len(given) == 3
    # the first share is about a third of the budget (before: all of it)
    assert given[0][1] is not None and given[0][1] - t0 < 0.9 / 2
