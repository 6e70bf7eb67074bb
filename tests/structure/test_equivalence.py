"""Pseudodistance bounds (Definitions 4-5) on models whose answer is known in closed form."""

import math

import pytest
import torch

from simec.errors import InputError
from simec.structure.equivalence import (
    EquivalenceConfig,
    Refinement,
    batched_output_fn,
    curve_length,
    equivalence_bounds,
    output_distance,
    resample_curve,
    subdivide,
    verdict,
)


@pytest.fixture
def linear():
    """A: (3 x 12), the inputs x, y: (3, 4), float64 (drawn in that order)."""
    gen = torch.Generator().manual_seed(7)
    shapes = ((3, 12), (3, 4), (3, 4))
    return tuple(torch.randn(*s, generator=gen, dtype=torch.float64) for s in shapes)


def logits_of(a):
    return lambda x: a @ x.reshape(-1)


def null_vector(a, shape, seed=1):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(a.shape[1], generator=gen, dtype=a.dtype)
    q, _ = torch.linalg.qr(a.T)
    v = z - q @ (q.T @ z)
    return v.reshape(shape)


def test_linear_logits_bounds_meet_at_the_exact_pseudodistance(linear):
    a, x, y = linear
    fn = batched_output_fn(logits_of(a), "euclidean-logits")
    cfg = EquivalenceConfig(output_metric="euclidean-logits", segments=4, energy_iterations=20)
    res = equivalence_bounds(fn, x, y, cfg)
    exact = float(torch.linalg.vector_norm(a @ (x - y).reshape(-1)))
    assert res.lower_bound == pytest.approx(exact, rel=1e-12)
    # the straight line's image is a straight segment: its pseudolength is exact at once
    assert res.straight_line == pytest.approx(exact, rel=1e-12) and res.straight_converged
    assert res.lower_bound <= res.upper_bound * (1 + 1e-12)
    assert res.upper_bound == pytest.approx(exact, rel=1e-9)
    assert res.verdict == "not equivalent"


def test_linear_model_class_is_x_plus_null_space(linear):
    a, x, _ = linear
    fn = batched_output_fn(logits_of(a), "euclidean-logits")
    y = x + 3.0 * null_vector(a, x.shape)
    assert float(torch.linalg.vector_norm(y - x)) > 1.0  # far apart in the input space
    res = equivalence_bounds(fn, x, y, EquivalenceConfig(output_metric="euclidean-logits"))
    assert res.lower_bound < 1e-12 and res.upper_bound < 1e-12
    assert res.verdict == "equivalent"


@pytest.mark.parametrize("metric", ["euclidean-probs", "fisher-rao"])
def test_softmax_of_linear_optimised_curve_reaches_the_lower_bound(linear, metric):
    """With A of full row rank every probability vector is reachable, so the shortest image
    curve is the output geodesic and Pd equals the lower bound; the straight input line is
    longer (its image bends), and the optimised curve comes within 1% of the bound."""
    a, x, y = linear
    fn = batched_output_fn(logits_of(a), metric)
    cfg = EquivalenceConfig(
        output_metric=metric, segments=16, energy_iterations=500, refine_rtol=1e-3
    )
    res = equivalence_bounds(fn, x, y, cfg)
    p, q = torch.softmax(a @ x.reshape(-1), 0), torch.softmax(a @ y.reshape(-1), 0)
    if metric == "fisher-rao":
        exact = 2 * math.acos(float((p * q).sqrt().sum()))
    else:
        exact = float(torch.linalg.vector_norm(p - q))
    assert res.lower_bound == pytest.approx(exact, rel=1e-10)
    assert res.upper_converged and res.upper_bound >= exact * (1 - 1e-6)
    assert res.straight_line > res.upper_bound  # optimising helped
    assert res.upper_bound <= exact * 1.01
    assert res.verdict == "not equivalent"


def test_fisher_rao_distance_by_hand():
    p = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    q = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    assert float(output_distance("fisher-rao", p, q)) == pytest.approx(math.pi)
    r = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
    # 2 arccos(sqrt(.25) + 0 + 0) = 2 arccos(0.5) = 2 pi / 3
    assert float(output_distance("fisher-rao", p, r)) == pytest.approx(2 * math.pi / 3)
    assert float(output_distance("euclidean-probs", p, r)) == pytest.approx(math.sqrt(0.875))


def test_curve_length_of_an_arc_converges_from_below():
    """A quarter circle of radius 2 (length pi): inscribed polygons grow towards it."""
    fn = lambda t: torch.stack([2 * torch.cos(t[:, 0]), 2 * torch.sin(t[:, 0])], 1)  # noqa: E731
    points = torch.tensor([[0.0], [math.pi / 2]], dtype=torch.float64)
    measured = curve_length(fn, points, "euclidean-logits", Refinement(rtol=1e-6))
    lengths = [length for _, length in measured.history]
    assert lengths == sorted(lengths) and all(v <= math.pi for v in lengths)
    assert measured.converged and measured.length == pytest.approx(math.pi, rel=1e-5)
    capped = curve_length(fn, points, "euclidean-logits", Refinement(rtol=1e-9, max_segments=8))
    assert not capped.converged and capped.segments == 8


class _NoBackward(torch.autograd.Function):
    """The identity forward; a backward that fails like a kernel vmap cannot differentiate."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("LSE is not correctly aligned (strideH)")


def test_a_model_without_a_gradient_is_an_error_not_an_unoptimised_curve():
    """Seen on an H200: the energy's backward failed, minimise_energy caught the RuntimeError as
    a failed line search and returned the straight line as if it were optimised."""
    from simec.errors import ModelError
    from simec.structure.equivalence import minimise_energy

    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    line = torch.linspace(0, 1, 5, dtype=torch.float64)[:, None] * torch.tensor([[1.0, 2.0, 3.0]])
    works = batched_output_fn(lambda x: a @ x, "euclidean-logits")
    moved = minimise_energy(works, line + 0.1 * torch.sin(line), "euclidean-logits", iterations=5)
    assert not torch.equal(moved, line + 0.1 * torch.sin(line))  # the optimiser does run
    broken = lambda pts: works(_NoBackward.apply(pts))  # noqa: E731
    with pytest.raises(ModelError, match="cannot be differentiated.*LSE"):
        minimise_energy(broken, line + 0.1 * torch.sin(line), "euclidean-logits", iterations=5)


def test_a_non_finite_energy_keeps_the_best_curve_seen():
    from simec.structure.equivalence import minimise_energy

    line = torch.linspace(0, 1, 5, dtype=torch.float64)[:, None] * torch.ones(1, 2)
    nan_after_first = {"calls": 0}

    def fn(points):
        nan_after_first["calls"] += 1
        y = points * 1.0
        return y if nan_after_first["calls"] == 1 else y * float("nan")

    out = minimise_energy(fn, line, "euclidean-logits", iterations=5)
    assert torch.equal(out, line)


def test_subdivide_and_resample_keep_the_polyline():
    pts = torch.tensor([[0.0, 0.0], [2.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    fine = subdivide(pts)
    assert fine.tolist() == [[0, 0], [1, 0], [2, 0], [2, 0.5], [2, 1]]
    even = resample_curve(pts, 3)  # total arc 3: points at arc 0, 1, 2, 3
    assert torch.allclose(
        even, torch.tensor([[0, 0], [1, 0], [2, 0], [2, 1.0]], dtype=torch.float64)
    )


def test_verdicts_and_bad_options():
    assert verdict(0.5, 0.6, True, 1e-3) == "not equivalent"
    assert verdict(0.0, 1e-4, True, 1e-3) == "equivalent"
    assert verdict(0.0, 1e-4, False, 1e-3) == "undetermined"  # not a certified upper bound
    assert verdict(0.0, 0.2, True, 1e-3) == "undetermined"
    with pytest.raises(InputError, match="closed-form"):
        EquivalenceConfig(output_metric="custom").validate()
    with pytest.raises(InputError, match="segments"):
        EquivalenceConfig(segments=0).validate()
    fn = batched_output_fn(lambda x: x.reshape(-1)[:3], "euclidean-logits")
    with pytest.raises(InputError, match="different shapes"):
        equivalence_bounds(fn, torch.ones(2, 3), torch.ones(3, 2))


def test_tiny_vit_simec_endpoint_is_equivalent_and_another_image_is_not(one_thread):
    from simec.explore import explore
    from simec.models import from_model
    from simec.structure.equivalence import Embedded, compare_inputs
    from tests.conftest import tiny_vit

    adapter = from_model(tiny_vit(), dtype="float64")
    gen = torch.Generator().manual_seed(0)
    image = 0.05 + 0.9 * torch.rand(8, 8, generator=gen, dtype=torch.float64)
    other = 0.05 + 0.9 * torch.rand(8, 8, generator=gen, dtype=torch.float64)
    walk = explore(adapter, image, steps=15, corrector=True, projection="none", seed=0)
    end = walk.trajectory[-1]
    assert float((end - walk.trajectory[0]).norm()) > 0.1  # it did move
    cfg = EquivalenceConfig(segments=4, energy_iterations=15, tol=1e-3, max_segments=32)
    same = compare_inputs(
        adapter, image, Embedded(end), cfg, curves={"simec walk": walk.trajectory}
    )
    assert same.verdict == "equivalent", same.summary()
    assert same.upper_bound <= 1e-3 and same.upper_converged
    assert same.straight_line > same.upper_bound  # the straight line leaves the class
    different = compare_inputs(adapter, image, other, cfg)
    assert different.verdict == "not equivalent" and different.lower_bound > 1e-3
    assert different.upper_bound >= different.lower_bound * (1 - 1e-9)
