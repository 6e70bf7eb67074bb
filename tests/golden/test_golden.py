"""The explorer reproduces the golden trajectories recorded before the redesign (issue 12).

float64 runs: bit for bit (every tensor and every number identical); float32: to 1e-6.
One torch thread, so that kernels reduce in one fixed order.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.golden.cases import CASES, DATA, LIST_FIELDS, dataset_run, freeze

pytestmark = pytest.mark.usefixtures("one_thread")


def compare(name: str, results: list, dtype: str) -> None:
    tensors, lists = freeze(results)
    want_tensors = load_file(str(DATA / f"{name}.safetensors"))
    want_lists = json.loads((DATA / f"{name}.json").read_text())
    assert len(lists) == len(want_lists), f"{name}: number of results changed"
    assert set(tensors) == set(want_tensors)
    exact = dtype == "float64"
    for key, want in want_tensors.items():
        got = tensors[key]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        if exact:
            assert torch.equal(got, want), f"{name} {key}: not bit-identical"
        else:
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=f"{name} {key}")
    # JSON round-trips Python floats exactly (repr), so == is bit-identity for the lists too
    for got, want in zip(lists, want_lists):
        got = json.loads(json.dumps(got))
        for field in LIST_FIELDS:
            if exact or field not in ("lambda_max", "step_sizes", "drift", "uncorrected_drift"):
                assert got[field] == want[field], f"{name} {field}"
            else:
                assert got[field] == pytest.approx(want[field], rel=1e-5, abs=1e-6), field


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_trajectory(case):
    compare(case.name, case.run(), case.dtype)


def test_golden_dataset_run(tmp_path):
    compare("dataset_run", dataset_run(tmp_path / "run"), "float64")
