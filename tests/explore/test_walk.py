"""The walk as records, the geometry functions it calls, and ExplorationResult.config."""

import dataclasses
import json
import math

import pytest
import torch

import simec.geometry.steps as steps
from simec import TorchAdapter, explore, pullback_spectrum
from simec.explore import ExplorationResult, ExploreConfig
from simec.explore.walk import Step
from tests.conftest import LayerNormHead


def _start(seed=3):
    return torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _adapter():
    return TorchAdapter(LayerNormHead().double(), dtype="float64")


def _counting(monkeypatch, name):
    calls = []
    original = getattr(steps, name)

    def wrapped(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(steps, name, wrapped)
    return calls


@pytest.mark.parametrize(
    ("algorithm", "direction"), [("simec", "null_direction"), ("simexp", "nonnull_direction")]
)
def test_the_explorer_and_the_spectrum_call_the_geometry_step_functions(
    monkeypatch, algorithm, direction
):
    directions = _counting(monkeypatch, direction)
    sizes = _counting(monkeypatch, "step_size")
    res = explore(_adapter(), _start(), algorithm=algorithm, steps=5, projection="none")
    assert res.steps_completed == 5
    assert len(directions) == 5 and len(sizes) == 5
    # the step sizes the explorer records are the ones geometry computed (lambda_max, c, cap)
    c = 1.0 if algorithm == "simec" else 2.0
    cap = 0.02 * float(torch.linalg.vector_norm(_start()))
    for (lam, scale, cap_used), size, lam_rec in zip(sizes, res.step_sizes, res.lambda_max):
        assert (lam, scale, cap_used) == (lam_rec, c, cap)
        assert size == min(c / math.sqrt(lam), cap)
    # and PullbackSpectrum's methods are the same functions
    gen = torch.Generator().manual_seed(1)
    spec = pullback_spectrum(torch.randn(3, 24, dtype=torch.float64, generator=gen))
    spec.step_size(1.0)
    getattr(spec, direction)(torch.Generator().manual_seed(0))
    assert len(directions) == 6 and len(sizes) == 6


def test_a_replaced_geometry_step_size_changes_the_explorer(monkeypatch):
    monkeypatch.setattr(steps, "step_size", lambda lam, scale, cap=math.inf: 1e-3)
    res = explore(_adapter(), _start(), steps=4, projection="none")
    assert res.step_sizes == [1e-3] * 4
    moved = torch.linalg.vector_norm(res.trajectory[1] - res.trajectory[0])
    assert float(moved) == pytest.approx(1e-3, rel=1e-12)


def test_records_are_frozen():
    record = Step(0, None, torch.ones(3), torch.ones(3) / 3, torch.tensor(0.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.step_size = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("interrupt_at", range(2, 18))  # call 1: prepare() probes the model
def test_ctrl_c_anywhere_leaves_lists_of_matching_lengths(interrupt_at):
    model = LayerNormHead().double()
    calls = {"n": 0}

    def forward(x):
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            raise KeyboardInterrupt
        return model(x)

    res = explore(
        TorchAdapter(forward, dtype="float64"),
        _start(),
        steps=20,
        corrector=True,  # the corrector calls the model inside a step, too
        record_every=3,
    )
    assert res.stop_reason.startswith("interrupted")
    k = res.steps_completed
    assert k < 20
    assert len(res.drift) == k + 1 == res.probabilities.shape[0]
    assert len(res.lambda_max) == len(res.step_sizes) == len(res.ranks) == k
    assert len(res.uncorrected_drift) == k
    want = sorted({*range(0, k + 1, 3), k})
    assert res.trajectory_steps == want and res.trajectory.shape[0] == len(want)


def test_the_config_is_an_explore_config_and_round_trips(tmp_path):
    res = explore(_adapter(), _start(), steps=2, segments=(0, 2), seed=4)
    assert isinstance(res.config, ExploreConfig)
    assert res.config.seed == 4 and res.config.segments == (0, 2)
    back = ExplorationResult.load(res.save(tmp_path / "run"))
    assert back.config == res.config
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["segments"] == [0, 2]  # saved as a dict, as before


def test_a_summary_from_another_version_still_loads(tmp_path):
    res = explore(_adapter(), _start(), steps=2)
    res.config.extra["model_dir"] = "m"
    res.save(tmp_path)
    path = tmp_path / "summary.json"
    summary = json.loads(path.read_text())
    del summary["config"]["recover"]  # written before the option existed
    summary["config"]["retired_option"] = 7  # an option this version does not know
    summary["config"]["extra"]["note"] = "kept"
    path.write_text(json.dumps(summary))
    config = ExplorationResult.load(tmp_path).config
    assert config.recover == ExploreConfig().recover
    assert config.extra == {"model_dir": "m", "note": "kept", "retired_option": 7}
    assert config.steps == 2


def test_a_walk_keeps_one_record_per_accepted_point_and_only_the_stored_points():
    from simec.explore.driver import drive, single_jacobian
    from simec.explore.summary import walk_result
    from simec.explore.walker import Walker
    from simec.geometry import get_output_metric

    adapter = _adapter()
    cfg = ExploreConfig(steps=7, record_every=3, projection="none").validate()
    walker = Walker(
        adapter, adapter.prepare(_start()), cfg, get_output_metric(cfg.output_metric), None
    )
    drive([walker], single_jacobian(walker, False))
    walker.settle()
    steps = walker.walk.steps
    assert walker.candidate is None and [s.index for s in steps] == list(range(8))
    assert steps[0].step_size is None and all(s.step_size for s in steps[1:])
    assert [s.index for s in steps if s.point is not None] == [0, 3, 6, 7]
    res = walk_result(walker, 0.0)
    assert res.trajectory_steps == [0, 3, 6, 7] and res.step_sizes == [
        s.step_size for s in steps[1:]
    ]


def test_policy_decisions():
    from simec.errors import InputError, RankZeroMetricError
    from simec.explore import policy
    from simec.explore.simec import SIMEC
    from simec.explore.simexp import SIMEXP

    assert policy.point_failure(True, 1.0, 2.0, 10.0, 5) is None
    bad = policy.point_failure(False, 1.0, 2.0, 10.0, 5)
    assert bad is not None and bad.rollback and bad.stop_reason.endswith("stopped at step 4")
    far = policy.point_failure(True, 3.0, 2.0, 10.0, 5)
    assert far is not None and not far.rollback and far.reason == "diverged"
    assert policy.retry(0, 1) and not policy.retry(1, 1) and not policy.retry(0, 0)
    with pytest.raises(InputError):
        policy.output_failure(0)
    assert policy.spectrum_stop(SIMEC, 3, 24, 2) is None
    assert policy.spectrum_stop(SIMEC, 24, 24, 2) == "no null direction at step 2"
    assert policy.spectrum_stop(SIMEXP, 24, 24, 2) is None  # SiMExp needs no null direction
    assert policy.spectrum_stop(SIMEXP, 0, 24, 2) == "rank-zero metric at step 2"
    with pytest.raises(RankZeroMetricError):
        policy.spectrum_stop(SIMEXP, 0, 24, 0)
    with pytest.raises(InputError, match="SiMEC"):
        policy.spectrum_stop(SIMEC, 24, 24, 0)
