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
