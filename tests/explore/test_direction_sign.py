"""SiMExp's eigenvector sign (``ExploreConfig.direction_sign``): "random" (default) or "fixed"
(the decomposition's canonical sign, as the official code walks along eigh's eigenvector as
returned). Checked on hand-built linear models whose walks are known in closed form."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from simec import TorchAdapter
from simec.errors import InputError
from simec.explore import explore
from simec.explore.config import ExploreConfig
from simec.geometry.blocks import block_nonnull_directions, block_spectra
from simec.geometry.steps import nonnull_direction
from tests.conftest import LinearLogits

pytestmark = pytest.mark.usefixtures("one_thread")

FREE = {"max_step": None, "projection": "none", "output_metric": "euclidean-logits"}


def _canonical(v: torch.Tensor) -> torch.Tensor:
    """v / ||v|| with its largest-magnitude entry positive (computed here, independently)."""
    v = v / torch.linalg.vector_norm(v)
    return v if float(v[v.abs().argmax()]) > 0 else -v


def _rank_one(shape=(4, 5)):
    """logits = u v^T vec(x) + b: g = ||u||^2 v v^T has one non-null eigenvector, v / ||v||, with
    lambda = ||u||^2 ||v||^2; per token i (a row of x) the block g_i = ||u||^2 v_i v_i^T."""
    gen = torch.Generator().manual_seed(11)
    u = torch.randn(3, generator=gen, dtype=torch.float64)
    v = torch.randn(shape[0] * shape[1], generator=gen, dtype=torch.float64)
    bias = torch.randn(3, generator=gen, dtype=torch.float64)
    x0 = torch.randn(*shape, generator=gen, dtype=torch.float64)
    model = LinearLogits(torch.outer(u, v), bias, shape)
    return TorchAdapter(model, dtype="float64"), u, v, x0


def test_fixed_and_random_draw_the_same_eigenvector_and_fixed_keeps_its_sign():
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(9, 4, generator=gen, dtype=torch.float64))
    vectors = torch.stack([_canonical(q[:, j]) for j in range(4)], dim=1)
    signs = set()
    for seed in range(40):
        fixed = nonnull_direction(vectors, 3, torch.Generator().manual_seed(seed), sign="fixed")
        rand = nonnull_direction(vectors, 3, torch.Generator().manual_seed(seed))
        column = int((vectors.T @ fixed).abs().argmax())
        assert column < 3  # a non-null one
        torch.testing.assert_close(fixed, vectors[:, column], rtol=0, atol=0)
        torch.testing.assert_close(rand.abs(), fixed.abs(), rtol=0, atol=0)
        signs.add(round(float(torch.dot(rand, fixed))))
    assert signs == {1.0, -1.0}  # random gives both signs, on the same eigenvectors
    with pytest.raises(ValueError, match="direction sign"):
        nonnull_direction(vectors, 3, None, sign="eigh")


def test_block_directions_fixed_are_the_canonical_eigenvectors_of_each_block():
    gen = torch.Generator().manual_seed(1)
    factor = torch.randn(3, 4 * 6, generator=gen, dtype=torch.float64)
    spectra = block_spectra(factor, 6)
    for seed in range(10):
        fixed = block_nonnull_directions(spectra, torch.Generator().manual_seed(seed), sign="fixed")
        rand = block_nonnull_directions(spectra, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(rand.abs(), fixed.abs(), rtol=0, atol=0)
        for i in range(4):
            a_i = factor[:, 6 * i : 6 * (i + 1)]
            w, v = torch.linalg.eigh(a_i.T @ a_i)  # the reference: eigh of the block itself
            # fixed is one of the block's non-null eigenvectors, with the canonical sign
            overlaps = (v[:, w > 1e-9 * w.max()].T @ fixed[i]).abs()
            assert float(overlaps.max()) == pytest.approx(1.0, abs=1e-10)
            torch.testing.assert_close(fixed[i], _canonical(fixed[i]), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="direction sign"):
        block_nonnull_directions(spectra, None, sign="both")


@pytest.mark.parametrize("rule", ["paper-v1", "official-code"])
def test_a_fixed_sign_simexp_walk_on_a_rank_one_model_goes_straight(rule):
    """One non-null eigenvector, a constant metric: with the fixed sign every step is the same,
    x_K = x_0 + K delta v_hat; with a random sign the steps partly cancel."""
    adapter, u, v, x0 = _rank_one()
    steps, eta = 10, 10.0
    lam = float(u @ u) * float(v @ v)
    delta = 2 / math.sqrt(lam) if rule == "paper-v1" else eta / math.sqrt(lam / 1e-6)
    expected = x0 + steps * delta * _canonical(v).reshape(x0.shape)
    options = dict(algorithm="simexp", steps=steps, step_rule=rule, eta=eta, **FREE)
    fixed = explore(adapter, x0, direction_sign="fixed", seed=3, **options)
    torch.testing.assert_close(fixed.trajectory[-1], expected, rtol=1e-10, atol=1e-12)
    lengths = []
    for seed in range(4):
        rand = explore(adapter, x0, seed=seed, **options)
        moved = (rand.trajectory[-1] - x0).reshape(-1)
        # still along v, by a whole number of steps of the same sign sum
        k = float(moved @ _canonical(v)) / delta
        assert k == pytest.approx(round(k), abs=1e-8) and abs(round(k)) <= steps
        torch.testing.assert_close(moved, k * delta * _canonical(v), rtol=1e-9, atol=1e-12)
        lengths.append(abs(round(k)))
    assert min(lengths) < steps  # at least one random walk did not go straight


def test_a_fixed_sign_token_walk_moves_each_token_straight_along_its_block():
    """Per token i the block g_i = ||u||^2 v_i v_i^T: its only eigenvector is v_i / ||v_i||, and
    the v1 rule gives delta_i = 2 / (||u|| ||v_i||)."""
    adapter, u, v, x0 = _rank_one()
    steps = 6
    rows = v.reshape(x0.shape)
    expected = torch.stack(
        [
            x0[i] + steps * 2 / (math.sqrt(float(u @ u)) * float(rows[i].norm())) * _canonical(r)
            for i, r in enumerate(rows)
        ]
    )
    result = explore(
        adapter,
        x0,
        algorithm="simexp",
        steps=steps,
        metric_blocks="token",
        direction_sign="fixed",
        seed=0,
        **FREE,
    )
    torch.testing.assert_close(result.trajectory[-1], expected, rtol=1e-10, atol=1e-12)


def test_simec_ignores_the_sign_and_the_default_walk_is_unchanged(linear_model):
    model, x0 = linear_model
    adapter = TorchAdapter(model, dtype="float64")
    a = explore(adapter, x0, steps=5, seed=2, **FREE)
    b = explore(adapter, x0, steps=5, seed=2, direction_sign="fixed", **FREE)
    torch.testing.assert_close(a.trajectory, b.trajectory, rtol=0, atol=0)
    c = explore(adapter, x0, algorithm="simexp", steps=5, seed=2, **FREE)
    d = explore(adapter, x0, algorithm="simexp", steps=5, seed=2, direction_sign="random", **FREE)
    torch.testing.assert_close(c.trajectory, d.trajectory, rtol=0, atol=0)


def test_direction_sign_is_validated_recorded_and_an_option():
    from simec.cli import build_parser
    from simec.cli.options import dataclass_from_args
    from simec.experiments.interpretations import InterpretationsConfig, paper_final_walk

    with pytest.raises(InputError, match="direction_sign='up'"):
        ExploreConfig(direction_sign="up").validate()
    restored = ExploreConfig.from_dict(ExploreConfig(direction_sign="fixed").to_dict())
    assert restored.direction_sign == "fixed"
    parser = build_parser()
    args = parser.parse_args(
        ["explore", "--model", "m", "--input", "i", "--out", "o", "--direction-sign", "fixed"]
    )
    assert args.direction_sign == "fixed"
    argv = ["experiment", "interpretations", "--model", "m", "--data", "d", "--out", "o"]
    cfg = dataclass_from_args(
        InterpretationsConfig, parser.parse_args([*argv, "--direction-sign", "fixed"])
    )
    assert cfg.explore == replace(paper_final_walk(), direction_sign="fixed")
