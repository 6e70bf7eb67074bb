import torch

from simec.explore.perturbation import perturbation_explore, step_velocity
from simec.models import from_model
from tests.conftest import tiny_vit


def test_velocity_rule_keeps_turns_and_reinitialises():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(50, dtype=torch.float64)
    eta = 0.1
    kept = reinit = 0
    for _ in range(2000):
        for changed in (False, True):
            new = step_velocity(v, changed, eta, 0.2, gen)
            eps = (new - (-v if changed else v)) / eta
            if abs(float(eps @ v)) < 1e-9 * float(eps.norm() * v.norm()):
                kept += 1  # a_t v + eta * eps with eps orthogonal to v
            else:
                reinit += 1
    assert abs(reinit / (kept + reinit) - 0.2) < 0.03


def test_baseline_runs_for_a_step_count_and_a_time_budget(image):
    adapter = from_model(tiny_vit())
    res = perturbation_explore(adapter, image, steps=30, keep_every=10, seed=1)
    assert res.iterations == 30 and res.kept_steps == [0, 10, 20]
    assert res.kept_images.min() >= 0 and res.kept_images.max() <= 1
    assert 0 <= res.informative <= 30
    timed = perturbation_explore(adapter, image, steps=None, time_budget=0.2)
    assert timed.iterations > 0 and timed.elapsed_seconds < 1.0
