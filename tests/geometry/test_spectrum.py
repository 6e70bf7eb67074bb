import math
import tempfile
from pathlib import Path

import pytest
import torch

from simec import ExactTooLargeError, InputError, RankZeroMetricError, pullback_spectrum
from simec.geometry import get_output_metric, pullback_matrix
from simec.geometry.jacobian import jacobian
from simec.models import from_model
from tests.conftest import TEXT, make_tokenizer, tiny_bert, tiny_vit


def principal_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between the column spaces of a and b (orthonormal)."""
    return torch.linalg.svdvals(a.T @ b)


@pytest.mark.parametrize("method", ["lowrank", "exact"])
def test_linear_model_spectrum_is_squared_singular_values(linear_model, method):
    model, x0 = linear_model
    w = model.weight.detach()
    spec = pullback_spectrum(w, method=method)
    expected = torch.linalg.svdvals(w) ** 2
    torch.testing.assert_close(spec.eigenvalues, expected, rtol=1e-10, atol=0)
    assert spec.rank == 3
    assert spec.lambda_max == pytest.approx(float(expected[0]), rel=1e-12)
    # the non-null space is the row space of W
    q, _ = torch.linalg.qr(w.T)
    assert principal_cosines(spec.eigenvectors, q).min() > 1 - 1e-10
    assert spec.step_size(2.0) == pytest.approx(2 / math.sqrt(float(expected[0])))


def _jacobians():
    """(name, Jacobian of the metric output, y) on tiny random HF models in float64."""
    cases = []
    vit = from_model(tiny_vit(), dtype="float64")
    with tempfile.TemporaryDirectory() as tmp:
        bert = from_model(tiny_bert(), make_tokenizer(Path(tmp)), dtype="float64")
    image = torch.rand(8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for name, adapter, raw in (("vit", vit, image), ("bert", bert, TEXT)):
        prepared = adapter.prepare(raw)
        for metric_name in ("euclidean-probs", "euclidean-logits", "fisher-rao"):
            metric = get_output_metric(metric_name)
            y, jac = jacobian(
                lambda x, m=metric, a=adapter, p=prepared: m.output(a.logits(x, p)),
                prepared.embeddings,
            )
            cases.append((f"{name}-{metric_name}", jac, y, metric_name))
    return cases


@pytest.mark.parametrize(
    "name,jac,y,metric", _jacobians(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_exact_and_lowrank_agree_in_float64(name, jac, y, metric):
    low = pullback_spectrum(jac, y, metric=metric, method="lowrank", rtol=1e-10)
    ex = pullback_spectrum(jac, y, metric=metric, method="exact", rtol=1e-10)
    assert low.rank == ex.rank > 0
    torch.testing.assert_close(low.eigenvalues, ex.eigenvalues, rtol=1e-6, atol=0)
    assert low.lambda_max == pytest.approx(ex.lambda_max, rel=1e-6)
    assert low.step_size(1.0) == pytest.approx(ex.step_size(1.0), rel=1e-6)
    assert principal_cosines(low.eigenvectors, ex.eigenvectors).min() > 0.9999
    # same canonical signs: the eigenvectors themselves agree, not only their span
    torch.testing.assert_close(low.eigenvectors, ex.eigenvectors, rtol=0, atol=1e-6)
    # against the n x n matrix J^T G J written out literally (eq. 5)
    g = pullback_matrix(jac, get_output_metric(metric).matrix(y))
    v = ex.eigenvectors
    torch.testing.assert_close(g @ v, v * ex.eigenvalues, rtol=0, atol=1e-8 * ex.lambda_max)


def test_default_tolerances_drop_the_softmax_null_direction():
    # probabilities sum to one, so J has rank <= q - 1: the q-th singular value is round-off
    _, jac, y, metric = _jacobians()[0]
    for method in ("lowrank", "exact"):
        spec = pullback_spectrum(jac, y, metric=metric, method=method)
        assert spec.rank == jac.shape[0] - 1


def test_float32_exact_noise_floor_is_excluded():
    _, jac, y, metric = _jacobians()[0]
    spec = pullback_spectrum(jac.float(), y.float(), metric=metric, method="exact")
    raw = spec.all_eigenvalues
    assert (raw < 0).any(), "float32 eigh of a PSD matrix gives negative round-off eigenvalues"
    assert raw.abs()[spec.rank :].max() < 1e-4 * spec.lambda_max
    assert (spec.eigenvalues > spec.tolerance).all() and spec.rank == jac.shape[0] - 1


@pytest.mark.parametrize("method", ["lowrank", "exact"])
def test_null_and_nonnull_directions(linear_model, method):
    model, _ = linear_model
    w = model.weight.detach()
    spec = pullback_spectrum(w, method=method)
    gen = torch.Generator().manual_seed(0)
    v = spec.null_direction(gen)
    assert torch.linalg.vector_norm(v) == pytest.approx(1.0)
    assert torch.linalg.vector_norm(w @ v) < 1e-12
    u = spec.nonnull_direction(gen)
    g = w.T @ w
    lam = float(u @ g @ u)
    assert any(abs(lam - float(e)) < 1e-9 * float(e) for e in spec.eigenvalues)


def test_rank_zero_metric():
    spec = pullback_spectrum(torch.zeros(3, 10))
    assert spec.rank == 0 and spec.lambda_max == 0.0
    with pytest.raises(RankZeroMetricError):
        spec.step_size()
    with pytest.raises(RankZeroMetricError):
        spec.nonnull_direction()


def test_fisher_rao_and_custom_metrics():
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    fr = get_output_metric("fisher-rao")
    torch.testing.assert_close(fr.matrix(p), torch.diag(1 / p))
    custom = get_output_metric(lambda y: torch.diag(1 / y))
    jac = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = pullback_spectrum(jac, p, metric=fr)
    b = pullback_spectrum(jac, p, metric=custom)
    torch.testing.assert_close(a.eigenvalues, b.eigenvalues)


def test_unknown_method_and_metric_are_clear_errors():
    with pytest.raises(InputError, match="lowrank"):
        pullback_spectrum(torch.ones(2, 3), method="svd")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="euclidean-probs"):
        get_output_metric("cosine")
    with pytest.raises(InputError, match="NaN"):
        pullback_spectrum(torch.tensor([[1.0, float("nan")]]))


def test_exact_refuses_sizes_that_do_not_fit_and_suggests_lowrank():
    with pytest.raises(ExactTooLargeError, match="lowrank"):
        pullback_spectrum(torch.ones(1, 10_000_000, dtype=torch.float64), method="exact")
