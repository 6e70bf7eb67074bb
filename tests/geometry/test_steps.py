import math

import pytest
import torch

from simec.geometry.steps import nonnull_direction, null_direction, step_size


def test_step_size_is_c_over_the_root_of_lambda_max_with_a_cap():
    assert step_size(4.0, 1.0) == 0.5
    assert step_size(4.0, 2.0) == 1.0
    assert step_size(0.25, 2.0, cap=3.0) == 3.0  # 4.0 capped
    assert step_size(2.0, 1.0, cap=math.inf) == pytest.approx(1 / math.sqrt(2.0), rel=1e-15)


def _basis(n=9, r=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, r, generator=gen, dtype=torch.float64))
    return q


def test_null_direction_is_the_normalised_residual_of_a_gaussian_draw():
    basis = _basis()
    v = null_direction(basis, torch.Generator().manual_seed(7))
    # reference: the same Gaussian draw minus its least-squares fit by the basis
    z = torch.randn(9, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    fit = torch.linalg.lstsq(basis, z[:, None]).solution[:, 0]
    ref = z - basis @ fit
    torch.testing.assert_close(v, ref / torch.linalg.vector_norm(ref), rtol=1e-12, atol=1e-14)
    assert float((basis.T @ v).abs().max()) < 1e-12


def test_nonnull_direction_draws_every_signed_eigenvector_uniformly():
    vectors = _basis(n=6, r=4)
    rank = 3  # only the first three columns are non-null
    gen = torch.Generator().manual_seed(0)
    counts: dict[tuple[int, int], int] = {}
    draws = 1200
    for _ in range(draws):
        v = nonnull_direction(vectors, rank, gen)
        hits = [(i, s) for i in range(4) for s in (1, -1) if torch.equal(v, s * vectors[:, i])]
        assert len(hits) == 1
        counts[hits[0]] = counts.get(hits[0], 0) + 1
    assert set(counts) == {(i, s) for i in range(rank) for s in (1, -1)}
    for count in counts.values():  # 200 expected each; 5 sigma is about +-65
        assert abs(count - draws / (2 * rank)) < 65
