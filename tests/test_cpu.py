"""simec.cpu: the thread choice (idle cores now), made only when asked (CLI or a user's call)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from simec import InputError, configure_cpu, cpu
from simec.cli import main

STAT = """\
cpu  700 0 300 2000 100 0 0 0 0 0
cpu0 100 0 100 1000 50 0 0 0 0 0
cpu1 600 0 200 1000 50 0 0 0 0 0
intr 1 2 3
ctxt 99
"""


@pytest.fixture
def threads_back():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cpu_ticks_sum_the_cores_of_the_mask(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(STAT)
    # busy = user + nice + system + irq + softirq + steal; idle + iowait are not busy
    assert cpu.cpu_ticks({0}, str(stat)) == (200, 1250)
    assert cpu.cpu_ticks({1}, str(stat)) == (800, 1850)
    assert cpu.cpu_ticks({0, 1}, str(stat)) == (1000, 3100)
    assert cpu.cpu_ticks(None, str(stat)) == (1000, 3100)  # per-core lines, not the "cpu" total
    assert cpu.cpu_ticks({5}, str(stat)) is None
    assert cpu.cpu_ticks(None, str(tmp_path / "missing")) is None


def _clock(monkeypatch, ticks, own_seconds, wall_seconds, cores=2):
    """busy_cores with /proc/stat giving ``ticks`` (start, end), this process using
    ``own_seconds`` of CPU over ``wall_seconds``, on ``cores`` cores."""
    reads = iter(ticks)
    clock = {"own": 0.0, "wall": 0.0}

    def sleep(seconds):
        clock["own"] += own_seconds
        clock["wall"] += wall_seconds

    fake_time = SimpleNamespace(
        sleep=sleep, process_time=lambda: clock["own"], monotonic=lambda: clock["wall"]
    )
    monkeypatch.setattr(cpu, "cpu_ticks", lambda mask: next(reads))
    monkeypatch.setattr(cpu, "time", fake_time)
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: set(range(cores)))


def test_busy_cores_counts_the_busy_share_of_the_ticks_less_this_process(monkeypatch):
    # 2 cores, 40 of 40 ticks busy over 0.2 s: both cores busy, all by others
    _clock(monkeypatch, [(0, 0), (40, 40)], own_seconds=0.0, wall_seconds=0.2)
    assert cpu.busy_cores() == pytest.approx(2.0)
    # 30 of 40 busy, 0.1 s of them this process's over 0.2 s: 1.5 - 0.5 = 1.0 core by others
    _clock(monkeypatch, [(100, 1000), (130, 1040)], own_seconds=0.1, wall_seconds=0.2)
    assert cpu.busy_cores() == pytest.approx(1.0)
    # only this process busy: nobody else
    _clock(monkeypatch, [(0, 0), (20, 40)], own_seconds=0.2, wall_seconds=0.2)
    assert cpu.busy_cores() == pytest.approx(0.0)
    # unreadable, or no ticks elapsed: unknown
    _clock(monkeypatch, [None], own_seconds=0.0, wall_seconds=0.2)
    assert cpu.busy_cores() is None
    _clock(monkeypatch, [(5, 10), (5, 10)], own_seconds=0.0, wall_seconds=0.2)
    assert cpu.busy_cores() is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux /proc/stat")
def test_busy_cores_measures_this_machine():
    busy = cpu.busy_cores(0.05)
    assert busy is not None and 0.0 <= busy <= cpu.available_cpus() + 0.5


def test_threads_are_the_cores_others_leave_idle():
    assert cpu.choose_threads(2, 0.0) == 2
    assert cpu.choose_threads(2, 0.49) == 2  # a shell's burst or the tail of one's own command
    assert cpu.choose_threads(2, 0.5) == 1  # half a core busy counts as busy
    assert cpu.choose_threads(2, 1.0) == 1  # one other busy process
    assert cpu.choose_threads(2, 7.0) == 1  # never fewer than one
    assert cpu.choose_threads(16, 4.2) == 12
    assert cpu.choose_threads(4, float("nan")) == 4
    assert cpu.choose_threads(4, -1.0) == 4


def test_configure_cpu_sets_the_count_asked(threads_back):
    assert configure_cpu(3) == 3 and torch.get_num_threads() == 3
    assert configure_cpu(1) == 1 and torch.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_configure_cpu_refuses_a_bad_count(bad, threads_back):
    before = torch.get_num_threads()
    with pytest.raises(InputError, match="threads must be a whole number >= 1"):
        configure_cpu(bad)
    assert torch.get_num_threads() == before


def test_configure_cpu_takes_the_idle_cores(monkeypatch, threads_back):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu, "available_cpus", lambda: 2)
    monkeypatch.setattr(cpu, "busy_cores", lambda: 1.1)
    assert configure_cpu() == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(cpu, "busy_cores", lambda: 0.2)
    assert configure_cpu() == 2 and torch.get_num_threads() == 2
    # no /proc/stat: the 1-minute load average instead
    monkeypatch.setattr(cpu, "busy_cores", lambda: None)
    monkeypatch.setattr(cpu.os, "getloadavg", lambda: (1.4, 0.0, 0.0))
    assert configure_cpu() == 1


def test_configure_cpu_leaves_omp_num_threads_alone(monkeypatch, threads_back):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(cpu, "busy_cores", lambda: pytest.fail("no sampling when set"))
    torch.set_num_threads(3)
    assert configure_cpu() == 3 and torch.get_num_threads() == 3


@pytest.mark.parametrize(("busy", "expected"), [(1.0, 1), (0.0, 2)])
def test_the_cli_runs_with_the_idle_cores(busy, expected, vit_dir, image, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu, "available_cpus", lambda: 2)
    monkeypatch.setattr(cpu, "busy_cores", lambda: busy)
    np.save(tmp_path / "digit.npy", image)
    before = torch.get_num_threads()
    argv = ["explore", "--model", str(vit_dir), "--input", str(tmp_path / "digit.npy"),
            "--steps", "1", "--out", str(tmp_path / "o"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["environment"]["torch_threads"] == expected
    assert torch.get_num_threads() == before  # main() in-process leaves torch as it was
