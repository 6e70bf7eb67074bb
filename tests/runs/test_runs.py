"""Dataset runs: one folder per input, a manifest, resume after a kill, Ctrl-C, failures."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from simec import InputError, TorchAdapter
from simec.cli import main
from simec.data import load_idx_dataset
from simec.explore import ExplorationResult, explore
from simec.models import load_adapter
from simec.runs import (
    LocalBackend,
    Manifest,
    ModelSpec,
    RunItem,
    idx_items,
    register_backend,
    run_dataset,
)

ROOT = Path(__file__).resolve().parents[2]


def manifest_lines(out):
    return [json.loads(line) for line in (Path(out) / "manifest.jsonl").read_text().splitlines()]


def assert_complete(out, entries, steps):
    for entry in entries:
        assert entry["status"] == "completed", entry
        result = ExplorationResult.load(Path(out) / entry["result"])
        assert result.steps_completed == steps
        assert result.config.seed == entry["seed"]


def test_dataset_run_writes_a_folder_per_input_and_matches_explore(vit_dir, idx_data, tmp_path):
    items, source = idx_items(idx_data, limit=5)
    out = tmp_path / "run"
    counts = run_dataset(
        ModelSpec(str(vit_dir)), items, out, source=source, batch_size=2, steps=8, seed=3
    )
    assert counts == {
        "total": 5,
        "completed": 5,
        "stopped": 0,
        "failed": 0,
        "resumed": 0,
        "manifest": str(out / "manifest.jsonl"),
    }
    entries = manifest_lines(out)
    assert [e["id"] for e in entries] == [f"{i:06d}" for i in range(5)]
    assert [e["seed"] for e in entries] == [3, 4, 5, 6, 7]
    assert [e["batch_size"] for e in entries] == [2, 2, 2, 2, 1]
    assert_complete(out, entries, 8)
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["steps"] == 8 and run["environment"]["packages"]["torch"]
    assert run["history"][0]["finished"] is True
    adapter = load_adapter(vit_dir)
    images = load_idx_dataset(idx_data).images
    for i in (0, 3, 4):
        alone = explore(adapter, images[i], steps=8, seed=3 + i)
        saved = ExplorationResult.load(out / "inputs" / f"{i:06d}")
        torch.testing.assert_close(saved.trajectory, alone.trajectory, rtol=0, atol=1e-5)
        torch.testing.assert_close(saved.probabilities, alone.probabilities, rtol=0, atol=1e-5)


def test_cli_refuses_to_overwrite_and_resume_never_redoes_finished_inputs(
    vit_dir, idx_data, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = ["explore", "--model", str(vit_dir), "--data", str(idx_data), "--steps", "5"]
    argv += ["--out", str(out), "--quiet", "--recover", "2"]
    assert main([*argv, "--limit", "3"]) == 0
    assert json.loads((out / "run.json").read_text())["config"]["recover"] == 2
    first = {p: p.stat().st_mtime_ns for p in out.glob("inputs/*/summary.json")}
    assert len(first) == 3
    assert main([*argv, "--limit", "3"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*argv, "--limit", "3", "--resume", "--steps", "6"]) == 2
    assert "steps: 5 then, 6 now" in capsys.readouterr().err
    # resuming with a larger --limit explores only the new inputs
    assert main([*argv, "--limit", "5", "--resume", "--batch-size", "2"]) == 0
    assert "(3 were already done)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in first} == first
    entries = manifest_lines(out)
    assert [e["id"] for e in entries] == [f"{i:06d}" for i in range(5)]
    assert_complete(out, entries, 5)
    assert main(["explore", "--model", str(vit_dir), "--input", "x.png", "--out", "o", "--resume"])
    assert "dataset runs" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_and_lists_every_input_once(vit_dir, idx_data, tmp_path):
    out = tmp_path / "run"
    count, steps = 12, 40
    argv = ["explore", "--model", str(vit_dir), "--data", str(idx_data), "--limit", str(count)]
    argv += ["--steps", str(steps), "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SIMEC_COMPILE": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "simec", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.is_file() and len(manifest.read_text().splitlines()) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = {e["id"] for e in Manifest(out).read().values()}
    assert 2 <= len(done_before) < count
    stamps = {i: (out / "inputs" / i / "summary.json").stat().st_mtime_ns for i in done_before}

    assert main([*argv, "--resume"]) == 0
    entries = manifest_lines(out)
    assert [e["id"] for e in entries] == [f"{i:06d}" for i in range(count)]  # each exactly once
    assert_complete(out, entries, steps)
    for i, stamp in stamps.items():  # finished inputs were kept, not redone
        assert (out / "inputs" / i / "summary.json").stat().st_mtime_ns == stamp
    images = load_idx_dataset(idx_data).images
    adapter = load_adapter(vit_dir)
    last = count - 1
    alone = explore(adapter, images[last], steps=steps, seed=last)
    saved = ExplorationResult.load(out / "inputs" / f"{last:06d}")
    torch.testing.assert_close(saved.trajectory, alone.trajectory, rtol=0, atol=1e-5)


class _Interrupting(nn.Module):
    """A LayerNorm head that raises KeyboardInterrupt at its n-th forward pass (like Ctrl-C)."""

    def __init__(self, at=None):
        super().__init__()
        torch.manual_seed(0)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(24, 3)
        self.calls, self.at = 0, at

    def forward(self, x):
        self.calls += 1
        if self.at is not None and self.calls == self.at:
            raise KeyboardInterrupt
        return self.head(self.norm(x).reshape(-1))


def _tensor_items(count):
    gen = torch.Generator().manual_seed(1)
    return [
        RunItem(id=f"t{i}", index=i, raw=torch.randn(4, 6, generator=gen), description=f"t{i}")
        for i in range(count)
    ]


def test_ctrl_c_keeps_the_finished_inputs_and_resume_does_the_rest(tmp_path):
    model = _Interrupting(at=60)  # each input costs ~13 forward passes at 10 steps
    adapter = TorchAdapter(model)
    items, out = _tensor_items(6), tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_dataset(adapter, items, out, steps=10)
    entries = manifest_lines(out)
    assert 1 <= len(entries) < 6
    assert_complete(out, entries, 10)
    assert not (out / "inputs" / items[len(entries)].id / "summary.json").exists()
    assert json.loads((out / "run.json").read_text())["history"][0]["finished"] is False

    model.at = None
    counts = run_dataset(adapter, items, out, steps=10, resume=True)
    assert counts["completed"] == 6 and counts["resumed"] == len(entries)
    entries = manifest_lines(out)
    assert [e["id"] for e in entries] == [item.id for item in items]
    assert_complete(out, entries, 10)


def test_a_finished_folder_whose_manifest_line_was_lost_is_kept(tmp_path):
    adapter = TorchAdapter(_Interrupting())
    items, out = _tensor_items(3), tmp_path / "run"
    run_dataset(adapter, items, out, steps=4)
    stamp = (out / "inputs" / "t1" / "summary.json").stat().st_mtime_ns
    lines = (out / "manifest.jsonl").read_text().splitlines()
    # killed between writing t1's folder and its manifest line, mid-way through the next line
    (out / "manifest.jsonl").write_text(lines[0] + "\n" + lines[2][:20])
    counts = run_dataset(adapter, items, out, steps=4, resume=True)
    assert counts["resumed"] == 3 and counts["completed"] == 3  # t1 and t2 found by folder
    assert (out / "inputs" / "t1" / "summary.json").stat().st_mtime_ns == stamp
    assert [e["id"] for e in manifest_lines(out)] == ["t0", "t1", "t2"]


def test_an_input_that_fails_is_recorded_and_the_others_go_on(vit_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", rng.uniform(0, 1, size=(8, 8)).astype(np.float32))
    np.save(tmp_path / "wrong.npy", np.zeros((5, 5), dtype=np.float32))
    (tmp_path / "inputs.txt").write_text("a.npy\nmissing.png\n\nwrong.npy\nb.npy\n")
    out = tmp_path / "run"
    argv = ["explore", "--model", str(vit_dir), "--inputs", str(tmp_path / "inputs.txt")]
    code = main([*argv, "--steps", "3", "--batch-size", "4", "--out", str(out), "--quiet"])
    assert code == 3
    printed = capsys.readouterr()
    assert "2 completed, 0 stopped early, 2 failed" in printed.out
    # each reason on stderr, with its input, without opening the manifest
    reasons = printed.err.strip().splitlines()
    assert len(reasons) == 2
    assert "missing.png" in reasons[0] and "does not exist" in reasons[0]
    assert "wrong.npy" in reasons[1] and "shape" in reasons[1]
    entries = manifest_lines(out)
    assert [e["input"] for e in entries] == ["a.npy", "missing.png", "wrong.npy", "b.npy"]
    assert [e["status"] for e in entries] == ["completed", "failed", "failed", "completed"]
    assert "does not exist" in entries[1]["error"] and "shape" in entries[2]["error"]
    assert entries[1]["result"] is None and not (out / "inputs" / entries[1]["id"]).exists()
    # failed inputs are tried again on resume (the file may have been fixed meanwhile)
    items, source = _lines(tmp_path / "inputs.txt")
    extra = json.loads((out / "run.json").read_text())["config"]["extra"]
    model = ModelSpec(str(vit_dir))
    counts = run_dataset(model, items, out, source=source, steps=3, extra=extra, resume=True)
    assert counts["resumed"] == 2 and counts["failed"] == 2
    assert [e["status"] for e in manifest_lines(out)] == [e["status"] for e in entries]


def _lines(path):
    from simec.runs import line_items

    items, source = line_items(path)
    return items, source


def test_text_inputs_file_batches_texts(bert_dir, tmp_path):
    (tmp_path / "texts.txt").write_text("the cat sat on the mat.\ni love you\nthe dog sat.\n")
    out = tmp_path / "run"
    items, source = _lines(tmp_path / "texts.txt")
    counts = run_dataset(ModelSpec(str(bert_dir)), items, out, source=source, batch_size=3, steps=4)
    assert counts["completed"] == 3
    entries = manifest_lines(out)
    assert [ExplorationResult.load(out / e["result"]).input_description for e in entries] == [
        "the cat sat on the mat.",
        "i love you",
        "the dog sat.",
    ]


def test_backends_are_registered_by_name(tmp_path):
    seen = []

    class Recording(LocalBackend):
        name = "recording"

        def run(self, task, items, on_done, *, workers=None):
            seen.extend(item.id for item in items)
            super().run(task, items, on_done, workers=workers)

    register_backend("recording", Recording, overwrite=True)
    counts = run_dataset(
        TorchAdapter(_Interrupting()), _tensor_items(2), tmp_path / "r", backend="recording"
    )
    assert seen == ["t0", "t1"] and counts["completed"] == 2
    with pytest.raises(InputError, match="unknown backend"):
        run_dataset(TorchAdapter(_Interrupting()), _tensor_items(1), tmp_path / "x", backend="dask")
    with pytest.raises(InputError, match="one worker"):
        run_dataset(TorchAdapter(_Interrupting()), _tensor_items(1), tmp_path / "y", workers=2)


def test_failure_lines_group_inputs_by_error_commonest_first():
    from simec.cli.explore import failure_lines

    entries = {
        "000000": {"id": "000000", "input": "x[0]", "status": "completed"},
        "000001": {"id": "000001", "input": "x[1]", "status": "failed", "error": "E: a"},
        "000002": {"id": "000002", "input": "x[2]", "status": "failed", "error": "E: b"},
        "000003": {"id": "000003", "input": "x[3]", "status": "failed", "error": "E: b"},
    }
    assert failure_lines(entries) == [
        "failed (2 inputs, first 000002 x[2]): E: b",
        "failed (1 input, first 000001 x[1]): E: a",
    ]
    assert failure_lines(entries, most=1) == [
        "failed (2 inputs, first 000002 x[2]): E: b",
        "... and 1 other error: see the manifest",
    ]
    assert failure_lines({"000000": entries["000000"]}) == []
