"""Batched Jacobians and batched low-rank spectra against their single-input references."""

import pytest
import torch

from simec import InputError, jacobian, pullback_spectrum
from simec.geometry import batched_jacobian, lowrank_spectra
from tests.conftest import tiny_vit


def test_batched_jacobian_of_linear_models_is_each_weight_matrix(linear_model):
    model, x0 = linear_model
    gen = torch.Generator().manual_seed(0)
    xs = torch.stack([x0, x0 + torch.randn(x0.shape, generator=gen, dtype=x0.dtype), 2 * x0])
    scales = torch.tensor([1.0, -2.0, 0.5], dtype=x0.dtype)

    def fn(x, scale):  # a per-input argument, batched along dim 0 like x
        return torch.softmax(scale * model(x), -1)

    y, jac = batched_jacobian(fn, xs, scales)
    assert y.shape == (3, 3) and jac.shape == (3, 3, 4, 5)
    for b in range(3):
        y_b, jac_b = jacobian(lambda x, b=b: fn(x, scales[b]), xs[b])
        torch.testing.assert_close(y[b], y_b, rtol=0, atol=1e-15)
        torch.testing.assert_close(jac[b], jac_b, rtol=0, atol=1e-15)
    for chunk in (1, 2):
        _, chunked = batched_jacobian(fn, xs, scales, chunk_size=chunk)
        torch.testing.assert_close(chunked, jac, rtol=0, atol=1e-15)


def test_batched_jacobian_of_a_vit_matches_autograd_per_input():
    model = tiny_vit().double()
    pixels = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    emb = model.vit.embeddings(pixels).detach()

    def fn(x, pix):
        handle = model.vit.embeddings.register_forward_hook(lambda m, i, o: x.unsqueeze(0))
        try:
            logits = model(pixel_values=pix.unsqueeze(0)).logits[0]
        finally:
            handle.remove()
        return torch.softmax(logits, -1), logits

    y, jac, logits = batched_jacobian(fn, emb, pixels, has_aux=True)
    for b in range(2):
        ref = torch.autograd.functional.jacobian(lambda x, b=b: fn(x, pixels[b])[0], emb[b])
        torch.testing.assert_close(jac[b], ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(torch.softmax(logits[b], -1), y[b])


def test_batched_jacobian_rejects_non_vector_outputs():
    with pytest.raises(InputError, match="vector"):
        batched_jacobian(lambda x: x * 2, torch.ones(2, 3, 4))
    with pytest.raises(InputError, match="chunk_size"):
        batched_jacobian(lambda x: x.sum(0), torch.ones(2, 3, 4), chunk_size=0)


@pytest.mark.parametrize("q, n", [(3, 40), (10, 10), (12, 5)])
def test_lowrank_spectra_equal_the_single_input_spectra(q, n):
    gen = torch.Generator().manual_seed(q * n)
    a = torch.randn(4, q, n, generator=gen, dtype=torch.float64)
    a[1, -1] = a[1, 0]  # rank deficient
    a[2] = 0  # zero metric
    batch = lowrank_spectra(a)
    assert batch.finite.all()
    for b in range(4):
        ref = pullback_spectrum(a[b], metric="euclidean-logits", method="lowrank")
        rank = int(batch.rank[b])
        assert rank == ref.rank
        assert bool(batch.keep[b, :rank].all()) and not bool(batch.keep[b, rank:].any())
        assert float(batch.lambda_max[b]) == pytest.approx(ref.lambda_max, rel=1e-12, abs=0)
        torch.testing.assert_close(batch.vectors[b][:, :rank], ref.eigenvectors, atol=1e-12, rtol=0)
        torch.testing.assert_close(
            batch.singular_values[b, :rank] ** 2, ref.eigenvalues, rtol=1e-12, atol=0
        )
    assert int(batch.rank[2]) == 0


def test_lowrank_spectra_mark_non_finite_inputs_instead_of_failing():
    a = torch.randn(3, 2, 6, dtype=torch.float64)
    a[1, 0, 3] = float("nan")
    a[2, 1, 1] = float("inf")
    batch = lowrank_spectra(a)
    assert batch.finite.tolist() == [True, False, False]
    assert batch.rank.tolist()[1:] == [0, 0]
    assert torch.isfinite(batch.vectors).all()
    with pytest.raises(InputError, match="batch"):
        lowrank_spectra(a[0])
