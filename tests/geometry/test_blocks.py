"""Per-token blocks (``simec.geometry.blocks``) against a direct per-block eigendecomposition,
and the official code's step rule by hand."""

from __future__ import annotations

import math

import pytest
import torch

from simec.errors import InputError
from simec.geometry.blocks import (
    block_nonnull_directions,
    block_null_directions,
    block_spectra,
    block_step_sizes,
)
from simec.geometry.steps import official_code_step_size, rule_step_size


def _factor(q: int, m: int, h: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(q, m * h, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("q,h", [(3, 5), (6, 4)])  # wide blocks (null spaces) and tall ones
def test_block_spectra_equal_eigh_of_each_block(q, h):
    m = 4
    a = _factor(q, m, h)
    spectra = block_spectra(a, h)
    for i in range(m):
        a_i = a[:, i * h : (i + 1) * h]  # token i's columns: dy/dx_i
        w, v = torch.linalg.eigh(a_i.T @ a_i)
        w, v = w.flip(0), v.flip(1)
        k = min(q, h)
        torch.testing.assert_close(spectra.eigenvalues[i], w[:k], rtol=1e-10, atol=1e-12)
        assert int(spectra.rank[i]) == min(q, h)
        for j in range(k):  # eigenvectors up to sign (distinct eigenvalues here)
            got, want = spectra.vectors[i, :, j], v[:, j]
            assert abs(float(got @ want)) == pytest.approx(1.0, abs=1e-9)
        assert float(spectra.lambda_max[i]) == pytest.approx(float(w[0]), rel=1e-12)
        assert float(spectra.lambda_min[i]) == pytest.approx(float(w[k - 1]), rel=1e-9)
        expected_min_all = 0.0 if h > q else float(w[-1])
        assert float(spectra.lambda_min_all[i]) == pytest.approx(expected_min_all, rel=1e-9)


def test_block_is_the_diagonal_block_of_the_joint_metric():
    q, m, h = 3, 3, 4
    a = _factor(q, m, h, seed=1)
    g = a.T @ a  # the joint metric of eq. (5)
    spectra = block_spectra(a, h)
    for i in range(m):
        block = g[i * h : (i + 1) * h, i * h : (i + 1) * h]
        vals = torch.linalg.eigvalsh(block).flip(0)[:q]
        torch.testing.assert_close(spectra.eigenvalues[i], vals, rtol=1e-10, atol=1e-12)


def test_absolute_threshold_counts_small_eigenvalues_as_zero():
    # block 0: eigenvalues 4 and 0.0025 (singular values 2, 0.05); block 1: 9 and 1
    a = torch.zeros(2, 6, dtype=torch.float64)
    a[0, 0], a[1, 1] = 2.0, 0.05
    a[0, 3], a[1, 4] = 3.0, 1.0
    spectra = block_spectra(a, 3, atol=0.01)
    assert spectra.rank.tolist() == [1, 2]
    assert spectra.lambda_min.tolist() == pytest.approx([4.0, 1.0])
    assert block_spectra(a, 3).rank.tolist() == [2, 2]  # the relative rule keeps 0.0025


def test_per_block_null_directions_are_joint_null_directions():
    q, m, h = 2, 3, 5
    a = _factor(q, m, h, seed=2)
    spectra = block_spectra(a, h)
    v = block_null_directions(spectra, torch.Generator().manual_seed(0))
    assert v.shape == (m, h)
    torch.testing.assert_close(torch.linalg.vector_norm(v, dim=1), torch.ones(m, dtype=v.dtype))
    for i in range(m):  # each block's own null space: A_i v_i = 0
        assert float(torch.linalg.vector_norm(a[:, i * h : (i + 1) * h] @ v[i])) < 1e-12
    # the joint move (every token by its own direction) lies in the joint null space of eq. (5)
    assert float(torch.linalg.vector_norm(a @ v.reshape(-1))) < 1e-12


def test_per_block_nonnull_directions_are_block_eigenvectors_with_random_signs():
    q, m, h = 3, 2, 4
    a = _factor(q, m, h, seed=3)
    spectra = block_spectra(a, h)
    seen = set()
    for seed in range(40):
        v = block_nonnull_directions(spectra, torch.Generator().manual_seed(seed))
        for i in range(m):
            matches = [
                (j, s)
                for j in range(q)
                for s in (1, -1)
                if torch.allclose(v[i], s * spectra.vectors[i, :, j], atol=0, rtol=0)
            ]
            assert len(matches) == 1
            seen.add((i, *matches[0]))
    assert len(seen) == m * q * 2  # every eigenvector and sign of every block is drawn


def test_full_rank_or_zero_blocks_are_refused():
    a = _factor(4, 2, 3)  # q > h: full-rank blocks, no null direction
    with pytest.raises(InputError, match="full rank"):
        block_null_directions(block_spectra(a, 3), None)
    zero = torch.zeros(2, 6, dtype=torch.float64)
    zero[0, :3] = 1.0
    with pytest.raises(InputError, match="zero"):
        block_nonnull_directions(block_spectra(zero, 3), None)
    with pytest.raises(InputError, match="width 4"):
        block_spectra(a, 4)


def test_official_code_step_rule_by_hand():
    # a spectrum with a null space: min|lambda| = 0, so delta = eta / sqrt(4 / 1e-6) = eta 5e-4
    assert official_code_step_size(4.0, 0.0, eta=1.0) == pytest.approx(5e-4, rel=1e-12)
    assert official_code_step_size(4.0, 0.0, eta=10.0) == pytest.approx(5e-3, rel=1e-12)
    # full rank, eigenvalues {4, 1}: eta / sqrt(4 / (1 + 1e-6)) = 0.5 * sqrt(1.000001)
    assert official_code_step_size(4.0, 1.0, eta=1.0) == pytest.approx(
        0.5 * math.sqrt(1.000001), rel=1e-14
    )
    assert official_code_step_size(4.0, 1.0, eta=1.0, cap=0.1) == 0.1
    with pytest.raises(ValueError):
        official_code_step_size(0.0, 0.0, eta=1.0)


def test_block_step_sizes_by_hand():
    # block 0: J_0 = [[3, 0, 0], [0, 1, 0]] (eigenvalues 9, 1, 0); block 1: J_1 = [[0, 0, 2],
    # [0, 0, 0]] (4, 0, 0); block 2: zero
    a = torch.zeros(2, 9, dtype=torch.float64)
    a[0, 0], a[1, 1], a[0, 5] = 3.0, 1.0, 2.0
    spectra = block_spectra(a, 3)
    code = block_step_sizes(spectra, "official-code", scale=99.0, eta=10.0)
    # eta / sqrt(lmax / (0 + 1e-6)): 10 * 1e-3 / 3, 10 * 1e-3 / 2, and 0 for the zero block
    assert code.tolist() == pytest.approx([1e-2 / 3, 5e-3, 0.0], rel=1e-12)
    final = block_step_sizes(spectra, "paper-final", scale=99.0, eta=10.0)
    assert final.tolist() == pytest.approx([10 / 3, 10.0, 0.0], rel=1e-12)  # sqrt(1/9), sqrt(4/4)
    v1 = block_step_sizes(spectra, "paper-v1", scale=2.0, eta=99.0)
    assert v1.tolist() == pytest.approx([2 / 3, 1.0, 0.0], rel=1e-12)
    with pytest.raises(ValueError, match="step rule"):
        block_step_sizes(spectra, "paper-v2", scale=1.0, eta=1.0)
    # the same rule on one joint spectrum (rule_step_size, as the joint walk calls it)
    assert rule_step_size(
        "official-code", 4.0, None, scale=99.0, eta=10.0, lambda_min_all=0.0
    ) == pytest.approx(5e-3, rel=1e-12)
    with pytest.raises(ValueError, match="lambda_min_all"):
        rule_step_size("official-code", 4.0, 1.0, scale=1.0, eta=1.0)


def test_blocks_without_a_direction_get_zero_rows_when_not_strict():
    a = torch.zeros(2, 6, dtype=torch.float64)
    a[0, 0], a[1, 1] = 1.0, 1.0  # block 0: identity (full rank); block 1: zero
    spectra = block_spectra(a, 2)
    null = block_null_directions(spectra, torch.Generator().manual_seed(0), strict=False)
    assert null[0].tolist() == [0.0, 0.0]
    assert float(torch.linalg.vector_norm(null[1])) == pytest.approx(1.0)
    nonnull = block_nonnull_directions(spectra, torch.Generator().manual_seed(0), strict=False)
    assert nonnull[1].tolist() == [0.0, 0.0]
    assert float(torch.linalg.vector_norm(nonnull[0])) == pytest.approx(1.0)
    # the draws of the blocks that have a direction do not depend on ``strict``
    b = _factor(2, 3, 4, seed=5)
    full = block_spectra(b, 4)
    for draw in (block_null_directions, block_nonnull_directions):
        strict = draw(full, torch.Generator().manual_seed(3))
        loose = draw(full, torch.Generator().manual_seed(3), strict=False)
        assert torch.equal(strict, loose)
