"""Guided SiMEC (walk toward a target inside the class) on models with a known answer."""

import pytest
import torch

from simec import TorchAdapter
from simec.errors import InputError
from simec.explore import ExplorationResult, explore
from simec.explore.guided import guided_direction


@pytest.fixture
def linear(linear_model):
    model, x0 = linear_model
    return TorchAdapter(model, dtype="float64"), model.weight.detach(), x0


def null_part(a, d):
    q, _ = torch.linalg.qr(a.T)
    flat = d.reshape(-1)
    return (flat - q @ (q.T @ flat)).reshape(d.shape)


def test_reaches_a_target_in_the_class_exactly(linear):
    adapter, a, x0 = linear
    gen = torch.Generator().manual_seed(1)
    target = x0 + null_part(a, torch.randn(x0.shape, generator=gen, dtype=x0.dtype))
    res = explore(
        adapter, x0, toward=target, steps=200, max_step=0.05, output_metric="euclidean-logits"
    )
    assert res.stop_reason.startswith("projected distance vanished")
    assert res.remaining_distance[0] == 1.0 and res.remaining_distance[-1] < 1e-9
    torch.testing.assert_close(res.trajectory[-1], target, rtol=0, atol=1e-9)
    # it moved along the class: the logits never changed
    assert max(res.drift) < 1e-9
    dist = res.remaining_distance
    assert all(b <= a + 1e-12 for a, b in zip(dist, dist[1:]))  # monotone
    assert max(res.step_sizes) <= 0.05 * float(x0.norm()) * (1 + 1e-12)


def test_stops_at_the_projection_with_the_distance_it_reports(linear):
    adapter, a, x0 = linear
    gen = torch.Generator().manual_seed(2)
    target = x0 + torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
    res = explore(
        adapter, x0, toward=target, steps=500, max_step=None, output_metric="euclidean-logits"
    )
    assert res.stop_reason.startswith("projected distance vanished")
    reached = x0 + null_part(a, target - x0)
    torch.testing.assert_close(res.trajectory[-1], reached, rtol=0, atol=1e-9)
    expected = float((target - reached).norm() / (target - x0).norm())
    assert res.remaining_distance[-1] == pytest.approx(expected, rel=1e-9)
    assert 0 < expected < 1


def test_softmax_model_keeps_the_output_and_gets_closer(linear_model):
    model, x0 = linear_model

    def forward(x):
        return torch.log_softmax(model(torch.tanh(x)), -1)  # nonlinear, same class structure

    adapter = TorchAdapter(forward, dtype="float64")
    gen = torch.Generator().manual_seed(3)
    target = x0 + 0.5 * torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
    res = explore(adapter, x0, toward=target, steps=60, max_step=0.02)
    assert res.remaining_distance[-1] < res.remaining_distance[0]
    assert max(res.drift) < 1e-6  # the corrector holds N(x) = N(x0)
    assert len(res.remaining_distance) == res.steps_completed + 1


def test_guided_direction_and_errors(linear, tmp_path):
    adapter, a, x0 = linear
    from simec.geometry.spectrum import pullback_spectrum

    spectrum = pullback_spectrum(a, method="exact")  # g = A^T A: null space = null(A)
    v, d = guided_direction(spectrum, x0, x0 + 1.0)
    assert float(v.norm()) == pytest.approx(1.0) and float((a @ v).abs().max()) < 1e-12
    with pytest.raises(InputError, match="distance 0"):
        explore(adapter, x0, toward=x0.clone(), steps=3)
    with pytest.raises(InputError, match="same size"):
        explore(adapter, x0, toward=torch.ones(2, 2, dtype=x0.dtype), steps=3)
    res = explore(adapter, x0, toward=x0 + 1.0, steps=3, output_metric="euclidean-logits")
    res.save(tmp_path / "run")
    again = ExplorationResult.load(tmp_path / "run")
    assert again.remaining_distance == res.remaining_distance and again.config.extra["guided"]


@pytest.mark.parametrize("space", ["embeddings", "pixels"])
def test_tiny_vit_with_segments_in_both_spaces(space):
    from simec.models import from_model
    from tests.conftest import tiny_vit

    torch.set_num_threads(1)
    adapter = from_model(tiny_vit(), dtype="float64", space=space)
    gen = torch.Generator().manual_seed(0)
    image = 0.05 + 0.9 * torch.rand(8, 8, generator=gen, dtype=torch.float64)
    other = 0.05 + 0.9 * torch.rand(8, 8, generator=gen, dtype=torch.float64)
    segments = (1, 2, 5, 6)
    res = explore(
        adapter,
        image,
        toward=other,
        steps=10,
        segments=segments,
        max_step=0.05,
        corrector_iterations=5,
    )
    assert res.explored_segments == list(segments)
    x0 = adapter.prepare(image).embeddings
    fixed = [i for i in range(x0.shape[0]) if i not in segments]
    assert torch.equal(res.trajectory[-1][fixed], x0[fixed])  # only the chosen rows moved
    assert res.remaining_distance[-1] < res.remaining_distance[0]
    assert max(res.drift) < 1e-6


def test_cli_toward(vit_dir, tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    from simec.cli import main

    rng = np.random.default_rng(0)
    paths = []
    for n in range(2):
        paths.append(tmp_path / f"img{n}.png")
        Image.fromarray(rng.integers(20, 235, size=(8, 8), dtype=np.uint8)).save(paths[-1])
    out = tmp_path / "guided"
    argv = ["explore", "--model", str(vit_dir), "--input", str(paths[0])]
    code = main([*argv, "--toward", str(paths[1]), "--steps", "5", "--out", str(out)])
    assert code in (0, 3)
    summary = json.loads((out / "summary.json").read_text())
    dist = summary["remaining_distance"]
    assert len(dist) == summary["steps_completed"] + 1 and dist[-1] < dist[0] == 1.0
    assert summary["config"]["extra"]["guided"] is True
    assert summary["config"]["extra"]["toward"] == str(paths[1])
    assert "remaining distance to the target" in capsys.readouterr().out


# -- the guided walk is a walk of the one loop (issue 24) -------------------------------------
def test_guided_stop_rules():
    from simec.explore import policy

    # order: rank zero, then the projected distance, then patience, then the clock
    assert policy.guided_stop(0, 4, 0.0, 1.0, 99, 1, 99.0, 1.0) == "rank-zero metric at step 4"
    assert policy.guided_stop(0, 0, 1.0, 0.0, 0, None, 0.0, None) == "rank-zero metric at step 0"
    vanished = policy.guided_stop(3, 5, 1e-7, 1e-6, 99, 1, 99.0, 1.0)
    assert vanished == "projected distance vanished at step 5"
    assert (
        policy.guided_stop(3, 5, 1.0, 1e-6, 3, 3, 99.0, 1.0) == "stopped getting closer at step 5"
    )
    assert policy.guided_stop(3, 5, 1.0, 1e-6, 2, 3, 99.0, 1.0) == "time budget spent at step 5"
    assert policy.guided_stop(3, 5, 1.0, 1e-6, 2, 3, 0.5, 1.0) is None
    assert policy.guided_stop(3, 5, 1.0, 1e-6, 50, None, 5.0, None) is None


def test_walk_records_carry_the_remaining_distance(linear):
    """The Walk's records (``Step.remaining_distance``) are what the result reports; ordinary
    walks record none."""
    from simec.explore.driver import drive_group
    from simec.explore.guided import Guided, _config, _walkers

    adapter, _, x0 = linear
    cfg = _config(None, {"steps": 4, "output_metric": "euclidean-logits"}, 1e-6, None)
    (walker,) = _walkers(adapter, [(x0, x0 + 1.0)], cfg, tolerance=1e-6)
    assert isinstance(walker.stepper, Guided)
    drive_group([walker], None)
    walker.settle()
    recorded = [s.remaining_distance for s in walker.walk.steps]
    assert recorded[0] == 1.0 and len(recorded) == 5
    goal = (x0 + 1.0).reshape(-1)
    points = [s.point for s in walker.walk.steps]
    for r, p in zip(recorded, points):
        assert r == pytest.approx(
            float((goal - p.reshape(-1)).norm()) / float(goal.sub(x0.reshape(-1)).norm())
        )
    plain = explore(adapter, x0, steps=2, output_metric="euclidean-logits")
    assert plain.remaining_distance == []


def test_batched_walks_match_single_walks(linear_model):
    """walk_toward_batch: the results of walk_toward on each pair (batched Jacobians, one
    clock per batch), a critical point skipped (None) or raised."""
    from simec.errors import RankZeroMetricError
    from simec.explore.guided import walk_toward, walk_toward_batch

    model, x0 = linear_model

    def forward(x):
        return torch.log_softmax(model(torch.tanh(x)), -1)

    adapter = TorchAdapter(forward, dtype="float64")
    gen = torch.Generator().manual_seed(4)
    pairs = [
        (x0, x0 + 0.5 * torch.randn(x0.shape, generator=gen, dtype=x0.dtype)) for _ in range(3)
    ]
    pairs[1] = (x0 + 0.1, pairs[1][1])
    options = dict(steps=12, max_step=0.02, patience=3)
    batched = walk_toward_batch(adapter, pairs, **options)
    for (start, target), res in zip(pairs, batched):
        alone = walk_toward(adapter, start, target, **options)
        assert res is not None and res.stop_reason == alone.stop_reason
        assert res.remaining_distance == pytest.approx(alone.remaining_distance, rel=0, abs=1e-12)
        torch.testing.assert_close(res.trajectory, alone.trajectory, rtol=0, atol=1e-12)
        assert res.config.extra["guided"] and res.input_description.endswith("toward target")

    flat = TorchAdapter(lambda x: torch.stack([(x**2).sum(), torch.zeros(())]), dtype="float64")
    zero = torch.zeros(4, 5, dtype=torch.float64)
    found = walk_toward_batch(flat, [(zero, x0), (x0, 2 * x0)], skip_critical=True, steps=3)
    assert found[0] is None and found[1] is not None
    with pytest.raises(RankZeroMetricError, match="zero at the input"):
        walk_toward(flat, zero, x0, steps=3)


def test_a_guided_step_that_fails_is_recovered(linear_model):
    """A step into a region where the model is NaN is retried with half the size (``recover``),
    as in every walk; without ``recover`` the walk stops on its last good point."""
    model, x0 = linear_model
    limit = float(x0.reshape(-1)[0]) + 0.3

    def forward(x):
        bad = x.reshape(-1)[0] > limit
        return torch.where(bad, torch.nan, 1.0) * model(x)

    adapter = TorchAdapter(forward, dtype="float64")
    target = x0.clone()
    target.reshape(-1)[0] += 2.0
    options = dict(steps=40, max_step=0.05, output_metric="euclidean-logits")
    stopped = explore(adapter, x0, toward=target, **options)
    assert "non-finite" in stopped.stop_reason and not stopped.recoveries
    recovered = explore(adapter, x0, toward=target, recover=30, **options)
    assert recovered.recoveries and recovered.steps_completed > stopped.steps_completed
    assert float(recovered.trajectory[-1].reshape(-1)[0]) <= limit
    assert recovered.remaining_distance[-1] < stopped.remaining_distance[-1]
