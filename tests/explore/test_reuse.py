"""Jacobian reuse (``jacobian_reuse``): predictor-corrector walks on models with known level sets.

* N(x) = softmax(W vec(x) + b): the level set of p0 is the affine subspace
  {x : W (x - x0) in span(1)} (softmax forgets a constant shift of the logits), and the
  probabilities' Jacobian is the same at every point of it.
* N(x) = (||x||^2, a . x, 0) (logits, euclidean metric): the level set is a sphere cut by a
  hyperplane, curved, so a reused Jacobian goes stale as the walk moves.
"""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from torch import nn

from simec import TorchAdapter, explore, explore_batch
from simec.cli import build_parser
from simec.cli import explore as explore_cli
from simec.errors import InputError
from simec.explore import ExplorationResult, ExploreConfig
from simec.explore.config import REUSE_AUTO_MAX_AGE, parse_reuse
from simec.explore.model_function import model_function
from simec.explore.reuse import Basis, Fidelity, Reuse, null_space_angle
from simec.explore.segments import Segments
from simec.geometry.metrics import get_output_metric
from tests.conftest import tiny_vit

TOL = 1e-9


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Softmax(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x):
        return self.weight @ x.reshape(-1) + self.bias


class Quadric(nn.Module):
    """logits (||x||^2, a . x, 0)."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, x):
        flat = x.reshape(-1)
        return torch.stack([flat @ flat, self.a @ flat, flat.new_zeros(())])


def _gen(seed=3):
    return torch.Generator().manual_seed(seed)


def _softmax_case():
    gen = _gen()
    weight = torch.randn(3, 20, generator=gen, dtype=torch.float64)
    bias = torch.randn(3, generator=gen, dtype=torch.float64)
    x0 = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    return TorchAdapter(Softmax(weight, bias), dtype="float64"), x0, weight


def _quadric_case():
    gen = _gen(5)
    a = torch.randn(20, generator=gen, dtype=torch.float64)
    x0 = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    return TorchAdapter(Quadric(a), dtype="float64"), x0, a


def _points(result: ExplorationResult) -> torch.Tensor:
    return result.trajectory.reshape(len(result.trajectory), -1)


COMMON = dict(projection="none", corrector_tolerance=TOL, max_step=0.05)


# ---- the level sets -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "10"])
def test_reuse_stays_on_the_softmax_level_set_and_moves_along_it(mode):
    adapter, x0, weight = _softmax_case()
    steps = 25
    result = explore(adapter, x0, steps=steps, jacobian_reuse=mode, **COMMON)
    assert result.stop_reason == "completed"
    points = _points(result)
    shifts = (points - x0.reshape(1, -1)) @ weight.T  # W (x_k - x0): must lie in span(1)
    off_level = shifts - shifts.mean(dim=1, keepdim=True)
    assert float(off_level.abs().max()) < 1e-8
    assert max(result.drift) < 1e-12  # the probabilities did not move at all
    # and it went somewhere: a random walk of K steps of size delta goes ~ sqrt(K) delta
    distance = float(torch.linalg.vector_norm(points[-1] - points[0]))
    assert distance > 0.5 * math.sqrt(steps) * min(result.step_sizes)
    # the Jacobian is the same all along the level set: only the age rule refreshes it
    f = result.fidelity
    age = REUSE_AUTO_MAX_AGE if mode == "auto" else int(mode)
    assert f.jacobians == math.ceil(steps / age)
    assert f.fresh == [k % age == 0 for k in range(steps)]
    assert all(r["reason"] == "age" for r in f.refreshes)
    assert all(a < 1e-5 for a in f.angles)  # the same null space each time


def test_reuse_stays_on_a_curved_level_set_and_refreshes_when_it_goes_stale():
    adapter, x0, a = _quadric_case()
    r2, ax = float((x0 * x0).sum()), float(a @ x0.reshape(-1))
    steps = 40
    result = explore(adapter, x0, steps=steps, output_metric="euclidean-logits",
                     jacobian_reuse="1000", **{**COMMON, "max_step": 0.1})  # fmt: skip
    assert result.stop_reason == "completed"
    points = _points(result)
    assert float(((points * points).sum(1) - r2).abs().max()) < 10 * TOL
    assert float((points @ a - ax).abs().max()) < 10 * TOL
    distance = float(torch.linalg.vector_norm(points[-1] - points[0]))
    assert distance > 0.5 * math.sqrt(steps) * min(result.step_sizes)
    f = result.fidelity
    # no age refresh (N = 1000): every refresh comes from the corrector or the first residual
    assert f.refreshes and all(r["reason"] != "age" for r in f.refreshes)
    assert 1 < f.jacobians < steps
    assert f.jacobians == 1 + len(f.refreshes)
    assert all(d <= 10 * TOL for d in f.drift_after)
    assert max(d for d in f.drift_before if d is not None) > 100 * TOL  # something to correct


def test_a_forced_stale_jacobian_triggers_a_refresh(monkeypatch):
    """Replace the kept Jacobian by an unrelated one before the second step: the walk notices
    (the step leaves the null space or the corrector fails) and takes a fresh one."""
    adapter, x0, weight = _softmax_case()
    original = Reuse.evaluate
    gen = _gen(11)
    state = {"done": False}

    def stale(self, x):
        if not state["done"]:
            state["done"] = True
            wrong = torch.randn(3, 20, generator=gen, dtype=torch.float64)
            q, _ = torch.linalg.qr(wrong.T)
            b = self.basis
            self.basis = Basis.build(wrong, q, b.rank, b.lambda_max, None, b.step)
        return original(self, x)

    monkeypatch.setattr(Reuse, "evaluate", stale)
    result = explore(adapter, x0, steps=6, jacobian_reuse="auto", **COMMON)
    f = result.fidelity
    assert state["done"]
    assert f.refreshes, "the stale Jacobian was never replaced"
    first = f.refreshes[0]
    assert first["reason"] in ("corrector failed", "left the null space", "slow contraction")
    assert first["step"] in (1, 2)
    assert first["angle_deg"] > 10
    assert max(result.drift) < 1e-8  # the walk stayed on the level set all the same
    assert f.jacobians == 1 + len(f.refreshes)


def test_a_retried_step_the_reused_jacobian_cannot_correct_is_taken_again_fresh(monkeypatch):
    """A step to a point where the output is NaN is retried with half the size; when the
    corrector with the reused Jacobian cannot pull the retried step back, the step is dropped
    and taken again from the last accepted point with a fresh Jacobian. (The walk used to keep
    the failed step and retry it at its NaN point forever.)"""
    from simec.explore import driver
    from tests.conftest import LayerNormHead

    dropped, jacobians = [], []
    retry, evaluations = Reuse.retry, driver.evaluations

    def counted_retry(self, walk, failed, proposal):
        out = retry(self, walk, failed, proposal)
        dropped.append(out is None)
        return out

    def bounded(walks, jacobian_fn):
        jacobians.append(1)
        assert len(jacobians) < 200, "the walk does not progress"
        return evaluations(walks, jacobian_fn)

    monkeypatch.setattr(Reuse, "retry", counted_retry)
    monkeypatch.setattr(driver, "evaluations", bounded)
    adapter = TorchAdapter(LayerNormHead("nan", limit=2.6), dtype="float64")
    start = 0.5 * torch.randn(4, 6, generator=_gen(4), dtype=torch.float64)
    result = explore(adapter, start, steps=40, max_step=0.3, seed=2, recover=4,
                     projection="none", jacobian_reuse="auto")  # fmt: skip
    assert any(dropped), "no retried step was dropped: the case no longer tests the path"
    assert result.stop_reason == "completed" and result.steps_completed == 40
    assert torch.isfinite(result.probabilities).all()
    f = result.fidelity
    assert f.retried >= sum(dropped)
    assert any(r["reason"] == "corrector failed" for r in f.refreshes)


# ---- reuse with N = 1 is the fresh walk with the corrector ---------------------------------


def _vit_adapter():
    from simec import from_model

    return from_model(tiny_vit(), dtype="float64")


@pytest.fixture
def vit_image():
    return torch.rand(8, 8, generator=_gen(0)).numpy()


def test_reuse_one_equals_fresh_with_the_corrector_bit_for_bit(vit_image):
    """With G != I (fisher-rao) both factor each fresh Jacobian with the same SVD: the same
    directions, step sizes, corrector iterations and points, float64 bit for bit."""
    adapter = _vit_adapter()
    common = dict(steps=8, output_metric="fisher-rao", corrector_iterations=8, seed=2)
    fresh = explore(adapter, vit_image, corrector=True, **common)
    one = explore(adapter, vit_image, jacobian_reuse="1", **common)
    assert torch.equal(fresh.trajectory, one.trajectory)
    assert torch.equal(fresh.probabilities, one.probabilities)
    assert fresh.step_sizes == one.step_sizes and fresh.lambda_max == one.lambda_max
    assert fresh.uncorrected_drift == one.uncorrected_drift
    assert fresh.fidelity.corrector_iterations == one.fidelity.corrector_iterations
    assert fresh.fidelity.jacobians == one.fidelity.jacobians == 8
    assert all(one.fidelity.fresh) and one.fidelity.retried == 0


def test_reuse_one_equals_fresh_with_the_corrector_up_to_round_off_when_g_is_identity(
    vit_image,
):
    """With G = I the reuse corrector takes J^+ from the spectrum's factors instead of an SVD
    of its own: the same walk up to the round-off of the pseudo-inverse."""
    adapter = _vit_adapter()
    common = dict(steps=8, corrector_iterations=8, seed=2)
    fresh = explore(adapter, vit_image, corrector=True, **common)
    one = explore(adapter, vit_image, jacobian_reuse="1", **common)
    torch.testing.assert_close(one.trajectory, fresh.trajectory, rtol=0, atol=1e-10)
    assert one.step_sizes == pytest.approx(fresh.step_sizes, rel=1e-9)
    assert fresh.fidelity.jacobians == one.fidelity.jacobians == 8


# ---- the records -----------------------------------------------------------------------------


def test_records_count_jacobians_and_forward_passes():
    adapter, x0, _ = _softmax_case()
    off = explore(adapter, x0, steps=7, **COMMON)
    assert off.fidelity.jacobians == 7 and off.fidelity.jacobian_reuse == "off"
    assert off.fidelity.forward_passes == 1  # the last point, no Jacobian there
    assert off.fidelity.corrector_iterations == [None] * 7
    reused = explore(adapter, x0, steps=7, jacobian_reuse="3", **COMMON)
    f = reused.fidelity
    assert f.jacobians == 3 and f.jacobians_per_step == pytest.approx(3 / 7)
    # the level set is flat: one residual per step (already within tolerance), none elsewhere
    assert f.corrector_iterations == [0] * 7
    assert f.forward_passes == 7
    assert len(f.drift_before) == len(f.drift_after) == 7


def test_batched_reuse_gives_the_single_runs():
    adapter, x0, _ = _softmax_case()
    starts = [x0, x0 + 0.1, x0 - 0.2]
    batch = explore_batch(adapter, starts, steps=9, jacobian_reuse="4", seeds=[0, 1, 2], **COMMON)
    for i, start in enumerate(starts):
        single = explore(adapter, start, steps=9, jacobian_reuse="4", seed=i, **COMMON)
        torch.testing.assert_close(batch[i].trajectory, single.trajectory, rtol=0, atol=1e-12)
        assert batch[i].fidelity.jacobians == single.fidelity.jacobians == 3


def test_fidelity_round_trips_through_save_and_load(tmp_path):
    adapter, x0, _ = _quadric_case()
    result = explore(adapter, x0, steps=12, output_metric="euclidean-logits",
                     jacobian_reuse="auto", **{**COMMON, "max_step": 0.1})  # fmt: skip
    loaded = ExplorationResult.load(result.save(tmp_path / "run"))
    assert loaded.fidelity == result.fidelity
    assert loaded.config.jacobian_reuse == "auto"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["fidelity"]["jacobians"] == result.fidelity.jacobians
    # a summary written before the record existed loads with fidelity None
    del summary["fidelity"]
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    assert ExplorationResult.load(tmp_path / "run").fidelity is None


def test_fidelity_from_dict_ignores_unknown_keys():
    record = Fidelity("auto", 2, 5, [True, False], [0, 1], [0.1, 0.2], [0.0, 0.0])
    assert Fidelity.from_dict({**record.to_dict(), "new": 1}) == record
    assert record.steps == 2 and record.jacobians_per_step == 1.0


def test_null_space_angle_of_rotated_row_spaces():
    n = 6
    e = torch.eye(n, dtype=torch.float64)
    theta = 0.3
    rotated = torch.stack([e[0], math.cos(theta) * e[1] + math.sin(theta) * e[2]], dim=1)

    def basis(vectors):
        jac = vectors.T.clone()
        return Basis.build(jac, vectors, 2, 1.0, torch.ones(2, dtype=torch.float64), 0)

    assert null_space_angle(basis(e[:, :2]), basis(rotated)) == pytest.approx(math.degrees(theta))
    assert null_space_angle(basis(e[:, :2]), basis(e[:, :2])) == pytest.approx(0.0, abs=1e-6)


# ---- the option ------------------------------------------------------------------------------


def test_parse_reuse():
    assert parse_reuse("off") == "off" and parse_reuse("AUTO") == "auto"
    assert parse_reuse("5") == "5" and parse_reuse(3) == "3"
    for bad in ("0", "-2", "often", True, "2.5"):
        with pytest.raises(ValueError, match="off, auto or a positive whole number"):
            parse_reuse(bad)


def test_config_validates_the_option():
    assert ExploreConfig(jacobian_reuse=4).validate().jacobian_reuse == "4"
    assert ExploreConfig(jacobian_reuse="4").reuse_age() == 4
    assert ExploreConfig().reuse_age() is None
    assert ExploreConfig(jacobian_reuse="auto").reuse_age() == REUSE_AUTO_MAX_AGE
    with pytest.raises(InputError, match="jacobian_reuse"):
        ExploreConfig(jacobian_reuse="sometimes").validate()
    with pytest.raises(InputError, match="SiMEC"):
        ExploreConfig(algorithm="simexp", jacobian_reuse="auto").validate()


def test_the_command_line_option(capsys):
    parser = build_parser()
    argv = ["explore", "--model", "m", "--input", "x", "--out", "o"]
    assert explore_cli.config_from_args(parser.parse_args(argv)).jacobian_reuse == "off"
    for text, want in (("auto", "auto"), ("7", "7"), ("off", "off")):
        args = parser.parse_args([*argv, "--jacobian-reuse", text])
        assert explore_cli.config_from_args(args).jacobian_reuse == want
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([*argv, "--jacobian-reuse", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--jacobian-reuse" in err and "positive whole number" in err
    sub = next(
        a
        for a in parser._subparsers._group_actions[0].choices["explore"]._actions  # noqa: SLF001
        if "--jacobian-reuse" in a.option_strings
    )
    assert sub.metavar == "off|auto|N" and sub.default == "off"
    assert isinstance(sub, argparse.Action)


# ---- explore keeps one model function per adapter and input ------------------------------


def test_model_function_is_made_once_per_adapter_and_input():
    adapter, x0, _ = _softmax_case()
    metric = get_output_metric("euclidean-probs")
    first = adapter.prepare(x0)
    segments = Segments.select(first.embeddings, None)
    fn = model_function(adapter, first, segments, metric)
    assert model_function(adapter, adapter.prepare(x0.clone()), segments, metric) is fn
    other = model_function(adapter, adapter.prepare(x0 + 1), segments, metric)
    assert other is not fn
    y, _ = other(x0 + 1)
    torch.testing.assert_close(y, torch.softmax(adapter.logits(x0 + 1, first), -1))
    logits = get_output_metric("euclidean-logits")
    assert model_function(adapter, first, segments, logits) is not fn


def test_the_cache_of_model_functions_does_not_keep_an_adapter_alive():
    import gc
    import weakref

    adapter, x0, _ = _softmax_case()
    explore(adapter, x0, steps=2, **COMMON)
    ref = weakref.ref(adapter)
    del adapter
    gc.collect()
    assert ref() is None


# ---- a reused step: its point verified and the next step evaluated in one batched call ------


def _one_at_a_time(monkeypatch):
    """``ModelFunction.many`` without batching: the points one call each, in order."""
    from simec.explore.model_function import ModelFunction

    def many(self, points):
        with torch.no_grad():
            outs = [self(p) for p in points]
        return (torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])), len(outs)

    monkeypatch.setattr(ModelFunction, "many", many)


def test_a_reused_step_checks_its_point_and_the_next_prediction_in_one_call(vit_image, monkeypatch):
    adapter = _vit_adapter()
    common = dict(steps=30, jacobian_reuse="auto", seed=4, max_step=0.05, projection="none")
    result = explore(adapter, vit_image, **common)
    f = result.fidelity
    assert f.jacobians < 30
    assert f.forward_points > f.forward_passes  # some calls evaluated two points
    # every accepted point's output is the model's at that very point (not the lookahead's)
    prepared = adapter.prepare(vit_image)
    with torch.no_grad():
        outputs = torch.stack(
            [torch.softmax(adapter.logits(p, prepared), -1) for p in result.trajectory]
        )
    recomputed = torch.linalg.vector_norm(outputs - outputs[0], dim=1)
    torch.testing.assert_close(torch.tensor(result.drift, dtype=torch.float64), recomputed,
                               rtol=0, atol=1e-12)  # fmt: skip
    assert max(result.drift) < 1e-6
    # the same walk with one model call per point: the same points up to round-off
    _one_at_a_time(monkeypatch)
    single = explore(adapter, vit_image, **common)
    torch.testing.assert_close(single.trajectory, result.trajectory, rtol=0, atol=1e-10)
    assert single.fidelity.forward_passes == single.fidelity.forward_points
    assert single.fidelity.forward_points == f.forward_points
    # the batched calls saved model calls: one per step that converged where expected
    assert f.forward_passes <= single.fidelity.forward_passes - 10


class Branching(Quadric):
    """The quadric, through a Python ``if`` that reads the input's value: not vmappable."""

    def forward(self, x):
        out = super().forward(x)
        return out if float(x.detach().sum()) < 1e6 else -out


def test_a_model_that_cannot_be_batched_is_evaluated_one_point_at_a_time():
    adapter, x0, a = _quadric_case()
    branching = TorchAdapter(Branching(a), dtype="float64")
    common = dict(steps=20, output_metric="euclidean-logits", jacobian_reuse="1000",
                  **{**COMMON, "max_step": 0.1})  # fmt: skip
    plain = explore(adapter, x0, **common)
    assert plain.fidelity.forward_points > plain.fidelity.forward_passes  # batched calls
    result = explore(branching, x0, **common)
    assert result.stop_reason == "completed"
    f = result.fidelity
    assert f.forward_passes == f.forward_points == plain.fidelity.forward_points
    torch.testing.assert_close(result.trajectory, plain.trajectory, rtol=0, atol=1e-12)
