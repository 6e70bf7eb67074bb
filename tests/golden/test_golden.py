"""The explorer reproduces the golden trajectories recorded before the redesign (issue 12).

Comparison (``tests.golden.compare.mismatches``):

* float64 runs, by default: every number within ``|got - want| <= 1e-12 * max(1, |want|)``.
  The float64 kernels of another CPU (AVX-512 vs AVX2 vs the portable ``default`` kernels of
  ``ATEN_CPU_CAPABILITY``) round differently by one or two units in the last place already in
  the first forward pass; over a golden walk that grows to at most ~1e-14 (measured, see
  ``tests/golden/README.md``), so 1e-12 passes every machine and still catches a change of the
  step size by 1e-9 relative (``test_the_tolerance_catches_a_perturbed_step``).
* float64 runs with ``SIMEC_GOLDEN_EXACT=1``: bit for bit, every tensor and every number. Use it
  on one machine for refactors that must not change a single bit.
* float32 runs: to 1e-6 absolute (the tensors) and 1e-5 relative (the list fields).
* Discrete fields (ranks, recorded steps, recoveries, stop reason, segments, labels) are equal.

On a failure the message names the first mismatching fields with their largest difference and
prints the environment the goldens were recorded in beside this one's
(``tests/golden/data/environment.json``).

One torch thread, so that kernels reduce in one fixed order.
"""

from __future__ import annotations

import dataclasses

import pytest

from tests.golden.cases import CASES, dataset_run
from tests.golden.compare import exact_mode, failure_message, mismatches

pytestmark = pytest.mark.usefixtures("one_thread")


def check(name: str, results: list, dtype: str) -> None:
    found = mismatches(name, results, dtype, exact=exact_mode())
    assert not found, failure_message(name, found)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_trajectory(case):
    check(case.name, case.run(), case.dtype)


def test_golden_dataset_run(tmp_path):
    check("dataset_run", dataset_run(tmp_path / "run"), "float64")


def test_the_tolerance_catches_a_perturbed_step():
    """A step size 1e-9 larger (relative) than the golden run's is a behaviour change the
    default tolerance must see: in the step sizes and in the trajectory itself, not only in the
    field that was perturbed."""
    (case,) = [c for c in CASES if c.name == "vit_simec_uncapped"]
    assert not mismatches(case.name, case.run(), case.dtype, exact=False)  # the control
    perturbed = dataclasses.replace(case, options={**case.options, "step_multiplier": 1 + 1e-9})
    found = mismatches(case.name, perturbed.run(), case.dtype, exact=False)
    fields = {m.field for m in found}
    assert {"step_sizes", "0.trajectory"} <= fields, found
    # the perturbation is ~1e-9 relative: well above the tolerance, and seen as such
    step = next(m for m in found if m.field == "step_sizes")
    assert 1e-10 < step.worst_relative < 1e-8, step


def test_the_tolerance_catches_another_direction_draw():
    """One other direction draw (another seed) fails the comparison by far."""
    (case,) = [c for c in CASES if c.name == "vit_simec_lowrank"]
    other = dataclasses.replace(case, options={**case.options, "seed": 2})
    found = mismatches(case.name, other.run(), case.dtype, exact=False)
    assert "0.trajectory" in {m.field for m in found}, found


def test_a_local_baseline_is_compared_bit_for_bit(tmp_path, monkeypatch):
    """``record --out DIR`` then ``SIMEC_GOLDEN_BASELINE=DIR``: a rerun on this machine equals
    the baseline bit for bit, and a change far below the default tolerance is caught."""
    from tests.golden import compare, record

    (case,) = [c for c in CASES if c.name == "vit_simec_uncapped"]
    record.write(tmp_path, case.name, case.run())
    monkeypatch.setenv(compare.BASELINE_VARIABLE, str(tmp_path))
    assert compare.exact_mode() and compare.golden_dir() == tmp_path
    assert not mismatches(case.name, case.run(), case.dtype, exact=True)
    tiny = dataclasses.replace(case, options={**case.options, "step_multiplier": 1 + 1e-15})
    found = mismatches(case.name, tiny.run(), case.dtype, exact=True)
    assert found and not mismatches(case.name, tiny.run(), case.dtype, exact=False, data=tmp_path)
    message = failure_message(case.name, found)
    assert "bit for bit" in message and "this environment" in message
