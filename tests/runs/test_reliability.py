"""Nothing lost, nothing silent: resume checks, the run lock, SIGTERM, stale temporary files,
output locations checked before computing, write failures, and the thread policy."""

from __future__ import annotations

import errno
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from simec import OutputError, TorchAdapter
from simec.cli import main
from simec.cli.explore import PARSE, RUN_FIELDS, WALK_FIELDS
from simec.cpu import choose_threads
from simec.runs import Manifest, RunItem, run_dataset
from simec.runs.lock import RunLock

ROOT = Path(__file__).resolve().parents[2]


def _run_argv(model, data, out, *extra):
    return ["explore", "--model", str(model), "--data", str(data), "--limit", "2",
            "--steps", "1", "--out", str(out), "--quiet", *extra]  # fmt: skip


@pytest.fixture
def finished_run(vit_dir, idx_data, tmp_path):
    out = tmp_path / "run"
    assert main(_run_argv(vit_dir, idx_data, out)) == 0
    return vit_dir, idx_data, out


#: every option that changes results, a value other than its default, the key the refusal names
RESULT_CHANGING = [
    ("--algorithm", "simexp", "algorithm"),
    ("--steps", "2", "steps"),
    ("--method", "exact", "method"),
    ("--output-metric", "fisher-rao", "output_metric"),
    ("--step-multiplier", "2", "step_multiplier"),
    ("--step-rule", "paper-final", "step_rule"),
    ("--eta", "10", "eta"),
    ("--box", "embedding-bounds", "box"),
    ("--max-step", "0.5", "max_step"),
    ("--projection", "step", "projection"),
    ("--corrector", None, "corrector"),
    ("--corrector-iterations", "3", "corrector_iterations"),
    ("--corrector-tolerance", "0.001", "corrector_tolerance"),
    ("--rtol", "1e-6", "rtol"),
    ("--seed", "1", "seed"),
    ("--recover", "1", "recover"),
    ("--divergence-ratio", "50", "divergence_ratio"),
    ("--record-every", "2", "record_every"),
    ("--chunk-size", "2", "chunk_size"),
    ("--compile", "on", "compile"),
    ("--segments", "0-3", "segments"),
    ("--space", "pixels", "space"),
    ("--dtype", "float64", "dtype"),
    ("--jacobian-reuse", "5", "jacobian_reuse"),
    ("--metric-blocks", "token", "metric_blocks"),
    ("--direction-sign", "fixed", "direction_sign"),
    ("--top-k", "2", "top_k"),
    ("--top-mass", "0.9", "top_mass"),
    ("--leakage", "off", "leakage"),
    ("--max-memory", "1GB", "max_memory"),
]

#: options valid only beside another one: (the options both runs share, flag, value, key)
RESULT_CHANGING_WITH = [
    (("--metric-blocks", "token"), "--atol", "0.01", "atol"),
]


def _stamps(out):
    """Every file of a run but its lock (which holds the PID of the last process to lock)."""
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"}


def _assert_resume_refused(capsys, argv, out, key):
    """Resuming ``out`` with ``argv`` is refused in one line that names only ``key``, and no
    file of the run changes."""
    stamps = _stamps(out)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{key}: " in err and err.count(" then, ") == 1, err  # only the differing key
    assert _stamps(out) == stamps


def test_every_result_changing_option_is_in_the_resume_check():
    tested = {key for _, _, key in RESULT_CHANGING}
    tested |= {key for _, _, _, key in RESULT_CHANGING_WITH}
    assert {*WALK_FIELDS, *RUN_FIELDS, *PARSE} <= tested


@pytest.mark.parametrize("flag,value,key", RESULT_CHANGING, ids=[c[2] for c in RESULT_CHANGING])
def test_resume_with_another_result_changing_option_is_refused(
    finished_run, tmp_path, capsys, flag, value, key
):
    model, data, out = finished_run
    extra = [flag] if value is None else [flag, value]
    _assert_resume_refused(capsys, _run_argv(model, data, out, *extra, "--resume"), out, key)


@pytest.mark.parametrize(
    "shared,flag,value,key", RESULT_CHANGING_WITH, ids=[c[3] for c in RESULT_CHANGING_WITH]
)
def test_resume_with_another_dependent_option_is_refused(
    vit_dir, idx_data, tmp_path, capsys, shared, flag, value, key
):
    out = tmp_path / "run"
    assert main(_run_argv(vit_dir, idx_data, out, *shared)) == 0
    argv = _run_argv(vit_dir, idx_data, out, *shared, flag, value, "--resume")
    _assert_resume_refused(capsys, argv, out, key)


def test_resume_with_the_same_options_keeps_every_finished_input(finished_run, capsys):
    model, data, out = finished_run
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("inputs/*/summary.json")}
    assert main(_run_argv(model, data, out, "--resume")) == 0
    assert "(2 were already done)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_stale_temporary_files_are_removed_on_resume(finished_run):
    model, data, out = finished_run
    stale = [out / ".run.json.abc123.tmp", out / "inputs" / "000000" / ".summary.json.x.tmp"]
    for path in stale:
        path.write_text("{half a fi")
    assert main(_run_argv(model, data, out, "--resume")) == 0
    assert not any(path.exists() for path in stale)
    assert len(Manifest(out).read()) == 2


def _simec(*argv: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "SIMEC_COMPILE": "0",
        "PYTHONPATH": str(ROOT / "src"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "simec", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended first: {proc.communicate()}"


def test_a_second_process_on_a_locked_run_folder_is_refused(vit_dir, idx_data, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["explore", "--model", str(vit_dir), "--data", str(idx_data), "--limit", "12",
            "--steps", "100000", "--out", str(out), "--quiet"]  # fmt: skip
    first = _simec(*argv)
    try:
        _wait_for(lambda: (out / "run.json").is_file(), first)
        assert main([*argv, "--resume"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert f"in use by another simec run (PID {first.pid})" in err, err
        with pytest.raises(OutputError, match=str(first.pid)):  # the API too
            RunLock(out).acquire()
    finally:
        first.kill()
        first.wait(timeout=60)
    with RunLock(out):  # the kernel let go of the lock with the process
        pass


def test_sigterm_keeps_finished_work_and_resume_does_the_rest(vit_dir, idx_data, tmp_path):
    out = tmp_path / "run"
    argv = ["explore", "--model", str(vit_dir), "--data", str(idx_data), "--limit", "12",
            "--steps", "30", "--out", str(out), "--quiet"]  # fmt: skip
    proc = _simec(*argv)
    manifest = out / "manifest.jsonl"
    try:
        _wait_for(lambda: manifest.is_file() and len(manifest.read_text().splitlines()) >= 1, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "terminated (SIGTERM)" in err
    done = Manifest(out).read()
    assert 1 <= len(done) < 12
    assert all(e["status"] == "completed" for e in done.values())
    history = json.loads((out / "run.json").read_text())["history"]
    assert history[-1]["finished"] is False
    stamps = {i: (out / "inputs" / i / "summary.json").stat().st_mtime_ns for i in done}
    assert main([*argv, "--resume"]) == 0
    assert len(Manifest(out).read()) == 12
    for i, stamp in stamps.items():
        assert (out / "inputs" / i / "summary.json").stat().st_mtime_ns == stamp


# ---- output locations, before any computation -----------------------------------------------


@pytest.fixture
def no_model_loading(monkeypatch):
    """Loading a model is the first costly step: a bad --out must be refused before it."""
    import simec.models
    import simec.structure.commands

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    for module in (simec.models, simec.structure.commands):
        monkeypatch.setattr(module, "load_adapter", refuse)


def _bad_outs(tmp_path):
    (tmp_path / "file").write_text("keep")
    return {"existing file": tmp_path / "file", "under a file": tmp_path / "file" / "sub"}


@pytest.mark.parametrize("where", ["existing file", "under a file"])
@pytest.mark.parametrize("command", ["explore", "dataset", "importance", "structure"])
def test_a_bad_out_is_refused_before_anything_is_loaded(
    no_model_loading, vit_dir, idx_data, tmp_path, capsys, where, command
):
    out = _bad_outs(tmp_path)[where]
    model = ["--model", str(vit_dir)]
    argv = {
        "explore": ["explore", *model, "--input", "x.png"],
        "dataset": ["explore", *model, "--data", str(idx_data)],
        "importance": ["importance", *model, "--input", "x.png"],
        "structure": ["structure", "spectrum", *model, "--data", str(idx_data)],
    }[command]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a file" in err and len(err.splitlines()) == 1
    assert (tmp_path / "file").read_text() == "keep"


def _read_only_folder(tmp_path):
    """A read-only tmpfs mounted at tmp_path/ro (root ignores permission bits, not ro mounts)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a read-only tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.decode().strip()}")
    return ro


def test_a_read_only_out_is_refused_before_anything_is_loaded(
    no_model_loading, vit_dir, tmp_path, capsys
):
    if os.geteuid() != 0:  # permission bits are enough for others
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
    else:
        ro = _read_only_folder(tmp_path)
    try:
        argv = ["explore", "--model", str(vit_dir), "--input", "x.png"]
        assert main([*argv, "--out", str(ro / "out")]) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], capture_output=True, timeout=20)
        else:
            ro.chmod(0o700)


def test_a_single_result_is_only_replaced_with_overwrite(vit_dir, image, tmp_path, capsys):
    import numpy as np

    np.save(tmp_path / "digit.npy", image)
    out = tmp_path / "out"
    argv = ["explore", "--model", str(vit_dir), "--input", str(tmp_path / "digit.npy"),
            "--steps", "1", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    stamp = (out / "summary.json").stat().st_mtime_ns
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "summary.json").stat().st_mtime_ns == stamp
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "summary.json").stat().st_mtime_ns != stamp


def test_a_write_failure_mid_run_is_one_line_and_keeps_what_was_written(
    vit_dir, idx_data, tmp_path, capsys, monkeypatch
):
    result_module = importlib.import_module("simec.explore.result")

    real, calls = result_module.save_record, []

    def disk_full_at_the_second_input(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(result_module, "save_record", disk_full_at_the_second_input)
    out = tmp_path / "run"
    argv = ["explore", "--model", str(vit_dir), "--data", str(idx_data), "--limit", "3",
            "--steps", "1", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "No space left on device" in err and "kept" in err
    kept = Manifest(out).read()
    assert list(kept) == ["000000"] and kept["000000"]["status"] == "completed"
    monkeypatch.setattr(result_module, "save_record", real)
    assert main([*argv, "--resume"]) == 0  # and the run can go on
    assert len(Manifest(out).read()) == 3


# ---- the API: lock and resume ----------------------------------------------------------------


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(24, 3)

    def forward(self, x):
        return self.head(self.norm(x).reshape(-1))


def test_the_api_refuses_a_locked_folder_and_another_seed(tmp_path):
    gen = torch.Generator().manual_seed(1)
    items = [RunItem(id=f"t{i}", index=i, raw=torch.randn(4, 6, generator=gen),
                     description=f"t{i}") for i in range(2)]  # fmt: skip
    adapter, out = TorchAdapter(_Head()), tmp_path / "run"
    run_dataset(adapter, items, out, steps=2)
    with pytest.raises(Exception, match=r"seed: 0 then, 3 now"):
        run_dataset(adapter, items, out, steps=2, seed=3, resume=True)
    with RunLock(out), pytest.raises(OutputError, match=f"PID {os.getpid()}"):
        run_dataset(adapter, items, out, steps=2, resume=True)


# ---- quiet and threads -----------------------------------------------------------------------


def test_quiet_silences_the_loading_bars(vit_dir, image, tmp_path, capsys, monkeypatch):
    import numpy as np

    np.save(tmp_path / "digit.npy", image)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # bars show on a terminal
    argv = ["explore", "--model", str(vit_dir), "--input", str(tmp_path / "digit.npy"),
            "--steps", "1"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert "Loading weights" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_threads_follow_the_idle_cores():
    assert choose_threads(2, 0.0) == 2
    assert choose_threads(2, 0.6) == 1
    assert choose_threads(2, 9.9) == 1  # never fewer than one
    assert choose_threads(16, 4.2) == 12
    assert choose_threads(4, float("nan")) == 4


def test_the_cli_leaves_torch_threads_as_they_were(vit_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    main(["explore", "--model", str(vit_dir), "--input", "nope.png", "--out", str(tmp_path / "o")])
    assert torch.get_num_threads() == before


def test_ray_workers_watch_their_driver_and_end_with_it():
    """A Ray worker ends once its driver has ended (SIGKILL included), not two minutes later."""
    import socket
    import threading

    from simec.runs.ray_backend import watch_driver

    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    gone = threading.Event()
    try:
        thread = watch_driver(socket.gethostname(), driver.pid, interval=0.05, on_gone=gone.set)
        assert thread is not None and not gone.wait(0.5)  # the driver lives: the worker too
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        assert gone.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert watch_driver("another-host", driver.pid, on_gone=gone.set) is None
