"""Output restriction (simec.geometry.restriction): the algebra of the dropped part, in float64.

Independent references: the full and the restricted pullbacks are formed from Jacobians taken
by ``torch.func.jacrev`` of the probabilities and of the coarse output, with the metric's own
matrix G(y) (``OutputMetric.matrix``); D is formed directly from the logit Jacobian. Nothing
here uses the identities the module derives except as the thing under test.
"""

import math

import pytest
import torch
from torch.func import jacrev

from simec.errors import InputError
from simec.geometry.metrics import get_output_metric
from simec.geometry.pullback import pullback_matrix
from simec.geometry.restriction import (
    choose_classes,
    coarse_output,
    dropped_pullback,
    leakage,
    restrictable,
)

F64 = torch.float64


def _model(q=9, n=7, seed=0):
    """A small non-linear logit model x -> z (q,), float64."""
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.randn(11, n, generator=gen, dtype=F64)
    w2 = torch.randn(q, 11, generator=gen, dtype=F64)
    b = 2.0 * torch.randn(q, generator=gen, dtype=F64)
    x = torch.randn(n, generator=gen, dtype=F64)
    return (lambda v: w2 @ torch.tanh(w1 @ v) + b), x


def _pullbacks(f, x, classes, metric_name):
    """(full pullback, restricted pullback, logits, logit Jacobian), each from its own jacrev."""
    metric = get_output_metric(metric_name)
    with_rest = restrictable(metric_name)
    z, jz = f(x), jacrev(f)(x)
    p = torch.softmax(z, -1)
    jp = jacrev(lambda v: torch.softmax(f(v), -1))(x)
    full = pullback_matrix(jp, metric.matrix(p))

    def coarse(v):
        return coarse_output(torch.softmax(f(v), -1), classes, with_rest=with_rest)

    yc = coarse(x)
    restricted = pullback_matrix(jacrev(coarse)(x), metric.matrix(yc))
    return full, restricted, z, jz


@pytest.mark.parametrize("metric_name", ["fisher-rao", "euclidean-probs"])
@pytest.mark.parametrize("k", [1, 3, 6])
def test_full_minus_restricted_is_the_dropped_part_and_psd(metric_name, k):
    f, x = _model(seed=k)
    classes = choose_classes(f(x), top_k=k)
    full, restricted, z, jz = _pullbacks(f, x, classes, metric_name)
    d = dropped_pullback(jz, z, classes, with_rest=restrictable(metric_name))
    scale = float(torch.linalg.matrix_norm(full))
    assert float(torch.linalg.matrix_norm(full - restricted - d)) <= 1e-12 * scale
    # positive semi-definite: the restricted metric is a lower bound (Loewner order)
    assert float(torch.linalg.eigvalsh(d).min()) >= -1e-13 * scale
    assert float(torch.linalg.matrix_norm(d)) > 1e-6 * scale  # the test is not vacuous


def test_fisher_rao_loses_nothing_when_one_class_is_left_out():
    """A rest of one class has no spread: D = 0, the restricted metric is the full one."""
    f, x = _model(seed=8)
    classes = choose_classes(f(x), top_k=8)
    full, restricted, z, jz = _pullbacks(f, x, classes, "fisher-rao")
    torch.testing.assert_close(restricted, full, rtol=0, atol=1e-12 * float(full.abs().max()))
    assert float(dropped_pullback(jz, z, classes, with_rest=True).abs().max()) == 0


def test_aggregating_the_rest_is_not_a_lower_bound_for_euclidean_probs():
    """Why euclidean-probs keeps p_S alone: (p_S, p_rest) would leave an indefinite error."""
    f, x = _model(seed=4)
    classes = choose_classes(f(x), top_k=2)
    metric = get_output_metric("euclidean-probs")
    jp = jacrev(lambda v: torch.softmax(f(v), -1))(x)
    full = pullback_matrix(jp)

    def coarse(v):
        return coarse_output(torch.softmax(f(v), -1), classes, with_rest=True)

    diff = full - pullback_matrix(jacrev(coarse)(x), metric.matrix(coarse(x)))
    assert float(torch.linalg.eigvalsh(diff).min()) < 0


def test_coarse_fisher_rao_output_is_softmax_of_restricted_logits():
    f, x = _model(seed=1)
    z = f(x)
    classes = choose_classes(z, top_k=3)
    rest = [i for i in range(z.shape[0]) if i not in classes.tolist()]
    r = torch.cat([z[classes], torch.logsumexp(z[rest], 0, keepdim=True)])
    coarse = coarse_output(torch.softmax(z, -1), classes, with_rest=True)
    torch.testing.assert_close(coarse, torch.softmax(r, -1), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("metric_name", ["fisher-rao", "euclidean-probs"])
def test_leakage_along_a_direction_is_v_d_v_and_below_its_bound(metric_name):
    with_rest = restrictable(metric_name)
    for seed in range(5):
        f, x = _model(seed=10 + seed)
        z, jz = f(x), jacrev(f)(x)
        classes = choose_classes(z, top_k=2)
        d = dropped_pullback(jz, z, classes, with_rest=with_rest)
        gen = torch.Generator().manual_seed(seed)
        v = torch.randn(x.shape[0], generator=gen, dtype=F64)
        v = v / torch.linalg.vector_norm(v)
        found = leakage(z, jz @ v, classes, with_rest=with_rest)
        exact = float(v @ d @ v)
        assert math.isclose(found.leakage, exact, rel_tol=1e-12, abs_tol=1e-300)
        assert found.leakage <= found.bound * (1 + 1e-12)
        p = torch.softmax(z, -1)
        assert math.isclose(found.dropped_mass, 1 - float(p[classes].sum()), rel_tol=1e-12)


def test_fisher_rao_bound_is_attained_where_the_dropped_mass_is_known():
    """Linear logits z = W x + b with S = {0, 1} and four rest classes of equal logit b_r,
    whose gradients are +w, -w, +w, -w: the dropped mass is 4 e^{b_r} / sum e^{b}, and along
    v = w / |w| the leakage equals its bound p_rest * range^2 / 4 (factor 1); ||D||_2 and tr D
    equal p_rest |w|^2 (the bound p_rest L^2 with L = |w|, also attained)."""
    n = 5
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(n, generator=gen, dtype=F64)
    top = torch.randn(2, n, generator=gen, dtype=F64)
    weight = torch.cat([top, torch.stack([w, -w, w, -w])])
    bias = torch.tensor([3.0, 2.5, 0.1, 0.1, 0.1, 0.1], dtype=F64)
    x = torch.zeros(n, dtype=F64)
    z = weight @ x + bias
    classes = choose_classes(z, top_k=2)
    assert classes.tolist() == [0, 1]
    mass = 4 * math.exp(0.1) / (math.exp(3.0) + math.exp(2.5) + 4 * math.exp(0.1))
    d = dropped_pullback(weight, z, classes, with_rest=True)
    v = w / torch.linalg.vector_norm(w)
    found = leakage(z, weight @ v, classes, with_rest=True)
    assert math.isclose(found.dropped_mass, mass, rel_tol=1e-14)
    assert math.isclose(found.leakage, found.bound, rel_tol=1e-12)  # tight: factor 1
    assert math.isclose(found.leakage, float(v @ d @ v), rel_tol=1e-12)
    norm2 = float(w @ w)
    assert math.isclose(float(torch.linalg.eigvalsh(d).max()), mass * norm2, rel_tol=1e-12)
    assert math.isclose(float(torch.trace(d)), mass * norm2, rel_tol=1e-12)
    # the full pullback really is the restricted one plus D here too
    metric = get_output_metric("fisher-rao")
    jp = jacrev(lambda u: torch.softmax(weight @ u + bias, -1))(x)
    full = pullback_matrix(jp, metric.matrix(torch.softmax(z, -1)))

    def coarse(u):
        return coarse_output(torch.softmax(weight @ u + bias, -1), classes, with_rest=True)

    restricted = pullback_matrix(jacrev(coarse)(x), metric.matrix(coarse(x)))
    torch.testing.assert_close(full - restricted, d, rtol=0, atol=1e-13)


def test_choose_classes_top_k_and_top_mass():
    z = torch.log(torch.tensor([0.05, 0.4, 0.3, 0.15, 0.1], dtype=F64))
    assert choose_classes(z, top_k=2).tolist() == [1, 2]
    assert choose_classes(z, top_k=9).tolist() == [1, 2, 3, 4, 0]
    assert choose_classes(z, top_mass=0.7).tolist() == [1, 2]
    assert choose_classes(z, top_mass=0.71).tolist() == [1, 2, 3]
    assert choose_classes(z, top_mass=1.0).tolist() == [1, 2, 3, 4, 0]
    assert choose_classes(z, top_mass=0.01).tolist() == [1]


def test_all_classes_chosen_drops_nothing():
    f, x = _model(seed=2, q=4)
    z, jz = f(x), jacrev(f)(x)
    classes = choose_classes(z, top_k=4)
    for with_rest in (True, False):
        assert float(dropped_pullback(jz, z, classes, with_rest=with_rest).abs().max()) == 0
        assert leakage(z, jz[:, 0], classes, with_rest=with_rest).bound == 0


@pytest.mark.parametrize("name", ["euclidean-logits", "custom"])
def test_logit_metrics_are_refused_with_one_line(name):
    with pytest.raises(InputError) as info:
        restrictable(name)
    assert "\n" not in str(info.value) and "logits" in str(info.value)
