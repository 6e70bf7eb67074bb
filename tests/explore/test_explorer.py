import importlib
import math
import warnings

import pytest
import torch

import simec
from simec import ExplorationResult, InputError, RankZeroMetricError, TorchAdapter, explore
from simec.models import from_model
from tests.conftest import TEXT, LayerNormHead, tiny_bert, tiny_vit


@pytest.fixture
def vit64():
    return from_model(tiny_vit(), dtype="float64")


@pytest.fixture
def bert64(tokenizer):
    return from_model(tiny_bert(), tokenizer, dtype="float64")


def _output_change(adapter, raw, direction_fn, length):
    prepared = adapter.prepare(raw)
    x0 = prepared.embeddings
    p0 = torch.softmax(adapter.logits(x0, prepared), -1)
    v = direction_fn(x0).reshape(x0.shape)
    p1 = torch.softmax(adapter.logits(x0 + length * v, prepared), -1)
    return float(torch.linalg.vector_norm(p1 - p0))


def test_simec_step_is_second_order_and_random_step_is_first_order(vit64, image):
    res = explore(vit64, image, steps=1, max_step=None, step_multiplier=0.01, projection="none")
    x0, x1 = res.trajectory[0], res.trajectory[1]
    delta = float(torch.linalg.vector_norm(x1 - x0))
    along = (x1 - x0) / delta
    prepared = vit64.prepare(image)

    def change(direction, length):
        return _output_change(vit64, image, lambda _: direction, length)

    gen = torch.Generator().manual_seed(5)
    rand = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    rand /= torch.linalg.vector_norm(rand)
    simec_change = change(along, delta)
    random_change = change(rand, delta)
    assert simec_change < 1e-2 * random_change
    # second order: halving the step divides the change by ~4 (a first-order one would halve)
    ratio = change(along, delta / 2) / simec_change
    assert 0.2 < ratio < 0.3
    assert prepared.embeddings.shape == x0.shape


@pytest.mark.parametrize("which", ["vit", "bert"])
def test_simexp_changes_the_predicted_class_probability(which, vit64, bert64, image):
    adapter, raw = (vit64, image) if which == "vit" else (bert64, TEXT)
    kw = dict(steps=20, seed=0, projection="none")
    exp = explore(adapter, raw, algorithm="simexp", **kw)
    sim = explore(adapter, raw, algorithm="simec", **kw)
    i = exp.initial_class
    exp_change = abs(float(exp.probabilities[-1, i] - exp.probabilities[0, i]))
    sim_change = abs(float(sim.probabilities[-1, i] - sim.probabilities[0, i]))
    assert exp_change > 1e-2
    assert exp_change > 10 * sim_change


@pytest.mark.parametrize("which", ["vit", "bert"])
def test_corrector_keeps_the_predicted_probability(which, vit64, bert64, image):
    adapter, raw = (vit64, image) if which == "vit" else (bert64, TEXT)
    kw = dict(steps=200, seed=1, projection="none", max_step=0.05)
    plain = explore(adapter, raw, **kw)
    corrected = explore(adapter, raw, corrector=True, **kw)
    assert corrected.stop_reason == "completed" and corrected.steps_completed == 200
    i = corrected.initial_class
    drift_with = (corrected.probabilities[:, i] - corrected.probabilities[0, i]).abs().max()
    drift_without = (plain.probabilities[:, i] - plain.probabilities[0, i]).abs().max()
    assert drift_with < 1e-4
    assert drift_without > 10 * drift_with
    # the record tells both stories: drift before correction and after
    assert len(corrected.uncorrected_drift) == 200
    assert max(corrected.drift) < max(corrected.uncorrected_drift)


def test_same_seed_same_trajectory_and_other_seed_differs(vit64, image):
    a = explore(vit64, image, steps=5, seed=7)
    b = explore(vit64, image, steps=5, seed=7)
    c = explore(vit64, image, steps=5, seed=8)
    assert torch.equal(a.trajectory, b.trajectory)  # one process, one machine: bit for bit
    # another seed draws other directions: the walks part by a fair part of a step (0.097 here,
    # steps of 0.14), not by round-off
    assert float((a.trajectory - c.trajectory).abs().max()) > 0.1 * a.step_sizes[0]


def test_exact_and_lowrank_walk_the_same_path(vit64, image):
    kw = dict(steps=3, seed=2, projection="none", rtol=1e-10)
    for algorithm in ("simec", "simexp"):
        low = explore(vit64, image, method="lowrank", algorithm=algorithm, **kw)
        ex = explore(vit64, image, method="exact", algorithm=algorithm, **kw)
        torch.testing.assert_close(low.trajectory, ex.trajectory, rtol=0, atol=1e-8)
        assert low.step_sizes == pytest.approx(ex.step_sizes, rel=1e-6)


def test_only_selected_segments_move(vit64, image):
    res = explore(vit64, image, steps=4, segments=(1, 5, 6), projection="none")
    moved = (res.trajectory[-1] - res.trajectory[0]).abs().sum(dim=1) > 0
    assert moved.nonzero().flatten().tolist() == [1, 5, 6]
    assert res.explored_segments == [1, 5, 6]
    with pytest.raises(InputError, match="out of range"):
        explore(vit64, image, steps=1, segments=(99,))


def test_step_projection_keeps_every_point_in_the_box(vit64, image):
    res = explore(vit64, image, algorithm="simexp", steps=10, projection="step", max_step=0.2)
    x0 = res.trajectory[0]
    lo, hi = x0.amin(0), x0.amax(0)
    assert ((res.trajectory >= lo - 1e-12) & (res.trajectory <= hi + 1e-12)).all()
    user = explore(vit64, image, steps=3, projection="step", box=(-0.1, 0.1))
    assert user.trajectory[1:].abs().max() <= 0.1 + 1e-12


def test_end_projection_projects_stored_points_and_reevaluates_them(vit64, image):
    res = explore(vit64, image, algorithm="simexp", steps=6, projection="end", max_step=0.3)
    x0 = res.trajectory[0]
    lo, hi = x0.amin(0), x0.amax(0)
    assert ((res.trajectory >= lo - 1e-12) & (res.trajectory <= hi + 1e-12)).all()
    prepared = vit64.prepare(image)
    p_last = torch.softmax(vit64.logits(res.trajectory[-1], prepared), -1)
    torch.testing.assert_close(res.trajectory_probabilities[-1], p_last)


def test_step_cap_bounds_every_step(vit64, image):
    res = explore(vit64, image, algorithm="simexp", steps=10, max_step=0.01)
    norm0 = float(torch.linalg.vector_norm(res.trajectory[0]))
    assert max(res.step_sizes) <= 0.01 * norm0 * (1 + 1e-12)
    paper = [2 / math.sqrt(lam) for lam in res.lambda_max]
    assert all(s <= p * (1 + 1e-12) for s, p in zip(res.step_sizes, paper))


def test_record_every_and_record_fields(vit64, image):
    res = explore(vit64, image, steps=7, record_every=3)
    assert res.trajectory_steps == [0, 3, 6, 7]
    assert res.probabilities.shape == (8, 3)
    assert len(res.predicted) == 8 and len(res.drift) == 8
    assert len(res.lambda_max) == len(res.step_sizes) == len(res.ranks) == 7
    assert set(res.ranks) == {2}  # softmax over 3 classes: rank q - 1


def test_save_and_load_round_trip(vit64, image, tmp_path):
    res = explore(vit64, image, steps=3)
    res.save(tmp_path / "run")
    back = ExplorationResult.load(tmp_path / "run")
    assert torch.equal(back.trajectory, res.trajectory)
    torch.testing.assert_close(back.probabilities, res.probabilities)
    assert back.config == res.config and back.stop_reason == res.stop_reason
    assert back.predicted == res.predicted
    assert back.environment["packages"]["torch"] == torch.__version__.split("+")[0] or True


def test_constant_model_is_a_rank_zero_error():
    adapter = TorchAdapter(lambda x: torch.zeros(3, dtype=x.dtype) * x.sum() + 1.0)
    with pytest.raises(RankZeroMetricError, match="does not depend"):
        explore(adapter, torch.randn(4, 6), steps=2)


def test_non_finite_output_stops_with_a_reason_and_no_garbage():
    base = LayerNormHead().double()

    def forward(x):
        out = base(x)
        # a Python branch, not torch.where (whose gradient would be NaN everywhere)
        return out * float("nan") if float(x.abs().max()) > 3.0 else out

    x0 = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    res = explore(
        TorchAdapter(forward, dtype="float64"),
        x0,
        algorithm="simexp",
        steps=200,
        max_step=0.5,
        projection="none",
    )
    assert res.stop_reason.startswith("non-finite")
    assert torch.isfinite(res.probabilities).all() and torch.isfinite(res.trajectory).all()
    assert res.steps_completed == len(res.step_sizes) < 200
    assert res.trajectory_steps[-1] == res.steps_completed


def test_uncapped_paper_rule_grows_the_step_and_the_cap_stops_it():
    model = LayerNormHead().double()
    x0 = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    adapter = TorchAdapter(model, dtype="float64")
    paper = explore(adapter, x0, algorithm="simexp", steps=60, max_step=None, projection="none")
    capped = explore(adapter, x0, algorithm="simexp", steps=60, projection="none")
    assert paper.step_sizes[-1] > 5 * paper.step_sizes[0] or paper.stop_reason != "completed"
    assert capped.stop_reason == "completed"
    assert max(capped.step_sizes) <= 0.02 * float(torch.linalg.vector_norm(x0)) * (1 + 1e-12)


def test_ctrl_c_returns_the_work_done_so_far():
    model = LayerNormHead().double()
    calls = {"n": 0}

    def forward(x):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return model(x)

    x0 = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    res = explore(TorchAdapter(forward, dtype="float64"), x0, steps=50)
    assert res.stop_reason.startswith("interrupted")
    assert 0 < res.steps_completed < 50
    assert res.probabilities.shape[0] == res.steps_completed + 1


def test_unknown_option_values_are_clear_errors(vit64, image):
    for bad in (
        dict(algorithm="simex"),
        dict(method="svd"),
        dict(projection="box"),
        dict(output_metric="l2"),
        dict(steps=-1),
        dict(step_multiplier=0),
    ):
        with pytest.raises(InputError):
            explore(vit64, image, **bad)
    with pytest.raises(TypeError):
        explore(vit64, image, stepz=3)


def test_public_api_is_small_and_flat():
    assert callable(simec.explore) and callable(simec.load_adapter)
    assert "explore" in simec.__all__


@pytest.mark.slow
@pytest.mark.compiles
def test_compiled_jacobian_walks_the_same_path_as_eager(image, monkeypatch):
    """The compiled walk really is compiled (a fallback to eager, which warns, fails the test:
    otherwise it would compare the eager path with itself) and follows the eager path."""
    jac_module = importlib.import_module("simec.geometry.jacobian")
    monkeypatch.setattr(jac_module, "_WARNED", set())  # warn even if an earlier test saw it
    adapter = from_model(tiny_vit())
    kw = dict(steps=6, seed=3, segments=(0, 3, 4, 9))
    eager = explore(adapter, image, compile=False, **kw)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "simec: compiled Jacobian unavailable", RuntimeWarning)
        compiled = explore(adapter, image, compile=True, **kw)
    torch.testing.assert_close(compiled.trajectory, eager.trajectory, rtol=0, atol=1e-5)
    torch.testing.assert_close(compiled.probabilities, eager.probabilities, rtol=0, atol=1e-6)


def test_compile_is_automatic_only_for_long_runs(monkeypatch):
    from simec.explore.config import AUTO_COMPILE_STEPS, ExploreConfig

    monkeypatch.delenv("SIMEC_COMPILE", raising=False)
    assert not ExploreConfig(steps=AUTO_COMPILE_STEPS - 1).use_compile()
    assert ExploreConfig(steps=AUTO_COMPILE_STEPS).use_compile()
    assert not ExploreConfig(steps=AUTO_COMPILE_STEPS, compile=False).use_compile()
    monkeypatch.setenv("SIMEC_COMPILE", "0")
    assert not ExploreConfig(steps=10 * AUTO_COMPILE_STEPS).use_compile()
    monkeypatch.setenv("SIMEC_COMPILE", "1")
    assert ExploreConfig(steps=1).use_compile()
