"""The Ray backend gives the local backend's results, in the same folder layout."""

import json
from pathlib import Path

import pytest
import torch

from simec.explore import ExplorationResult
from simec.runs import ModelSpec, idx_items, run_dataset

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (starting one takes a few seconds)."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    if started:
        ray.shutdown()


def _layout(out):
    return sorted(str(p.relative_to(out)) for p in Path(out).rglob("*") if p.name != "run.json")


@pytest.mark.slow
def test_ray_backend_gives_the_local_results(local_ray, vit_dir, idx_data, tmp_path):
    items, source = idx_items(idx_data, limit=5)
    kw = dict(source=source, batch_size=2, steps=6, algorithm="simexp", seed=1)
    model = ModelSpec(str(vit_dir))
    local = run_dataset(model, items, tmp_path / "local", **kw)
    remote = run_dataset(model, items, tmp_path / "ray", backend="ray", workers=2, **kw)
    assert local["completed"] == remote["completed"] == 5
    assert _layout(tmp_path / "local") == _layout(tmp_path / "ray")
    lines = {}
    for name in ("local", "ray"):
        text = (tmp_path / name / "manifest.jsonl").read_text()
        lines[name] = [json.loads(line) for line in text.splitlines()]
    keys = ("id", "index", "status", "seed", "result", "stop_reason", "steps_completed")
    for a, b in zip(lines["local"], lines["ray"], strict=True):
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
        ra = ExplorationResult.load(tmp_path / "local" / a["result"])
        rb = ExplorationResult.load(tmp_path / "ray" / b["result"])
        torch.testing.assert_close(rb.trajectory, ra.trajectory, rtol=0, atol=1e-5)
        torch.testing.assert_close(rb.probabilities, ra.probabilities, rtol=0, atol=1e-5)
        assert rb.config == ra.config
    history = json.loads((tmp_path / "ray" / "run.json").read_text())["history"]
    assert history[-1]["backend"] == "ray" and history[-1]["finished"]
    assert ray.is_initialized()  # the backend left the caller's Ray instance running


def test_ray_backend_resumes_a_local_run(local_ray, vit_dir, idx_data, tmp_path):
    model, out = ModelSpec(str(vit_dir)), tmp_path / "run"
    items, source = idx_items(idx_data, limit=4)
    run_dataset(model, items[:2], out, source=source, steps=3)
    counts = run_dataset(
        model, items, out, source=source, steps=3, backend="ray", workers=2, resume=True
    )
    assert counts["resumed"] == 2 and counts["completed"] == 4
    text = (out / "manifest.jsonl").read_text()
    assert [json.loads(line)["id"] for line in text.splitlines()] == [i.id for i in items]
