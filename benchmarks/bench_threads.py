"""Torch threads x OpenMP wait policy for ``simec explore`` on the paper's ViT shape (issue 26).

Every run is a fresh ``simec explore`` process (the whole command line path: ``configure_cpu``,
loading, the walk) on the shipped ``vit-mnist`` (the SiMEC paper's MNIST ViT shape) and the
shipped sample digit, ``--steps N``. Settings:

    T/ACTIVE, T/PASSIVE   OMP_NUM_THREADS=T and OMP_WAIT_POLICY=ACTIVE or PASSIVE
    T/unset               OMP_NUM_THREADS=T, OpenMP's own wait policy (spin a while, then sleep)
    default               neither set: what a user gets (the CLI's thread choice, OpenMP's policy)

The time is the walk's, per step: ``elapsed_seconds / steps`` from the run's ``summary.json``
(start-up, which is mostly importing torch, is not in it). Rounds go through every setting once,
the order rotated each round, so that a change in the machine's load falls on all settings
alike; the table gives the median, min and max over rounds, each median against the best one,
the threads the runs used (``environment.torch_threads`` of the summary), and the 1-minute load
average and the cores other processes kept busy (``simec.cpu.busy_cores``) just before the runs.

``--busy K`` starts K processes that spin for the whole benchmark (the loaded case: one busy
process on a 2-core machine is ``--busy 1``); they are stopped at the end.

    python benchmarks/bench_threads.py                         # 6 rounds of 100 steps, 5 settings
    python benchmarks/bench_threads.py --busy 1                # with one other busy process
    python benchmarks/bench_threads.py --steps 10 --rounds 2   # a quick check
    python benchmarks/bench_threads.py --settings default,2/unset,2/ACTIVE
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from simec.cpu import available_cpus, busy_cores

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "src" / "simec" / "assets"
SETTINGS = ("1/ACTIVE", "1/PASSIVE", "2/ACTIVE", "2/PASSIVE", "default")
SPIN = "while True: pass"


@dataclass
class Timings:
    """The runs of one setting."""

    ms_per_step: list[float] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)
    loads: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)


def environment(setting: str) -> dict[str, str]:
    """This process's environment for ``setting`` (``default``, ``T/POLICY`` or ``T/unset``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    if setting == "default":
        return env
    threads, _, policy = setting.partition("/")
    if not threads.isdigit() or int(threads) < 1 or policy not in ("ACTIVE", "PASSIVE", "unset"):
        raise SystemExit(f"bad setting {setting!r}: default, or T/ACTIVE, T/PASSIVE, T/unset")
    env["OMP_NUM_THREADS"] = threads
    if policy != "unset":
        env["OMP_WAIT_POLICY"] = policy
    return env


def run_once(setting: str, steps: int, out: Path) -> tuple[float, int]:
    """(ms per step, torch threads) of one ``simec explore`` process."""
    argv = [sys.executable, "-m", "simec", "explore", "--model", str(ASSETS / "vit-mnist")]
    argv += ["--input", str(ASSETS / "sample_digit.npy"), "--steps", str(steps)]
    argv += ["--out", str(out), "--overwrite", "--quiet"]
    proc = subprocess.run(argv, env=environment(setting), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{setting}: simec explore failed:\n{proc.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    if summary["steps_completed"] != steps:
        raise SystemExit(f"{setting}: {summary['steps_completed']} of {steps} steps")
    threads = int(summary["environment"]["torch_threads"])
    return 1000.0 * summary["elapsed_seconds"] / steps, threads


def table(results: dict[str, Timings]) -> str:
    medians = {name: statistics.median(t.ms_per_step) for name, t in results.items()}
    best = min(medians.values())
    lines = [
        "| setting | ms/step median | min | max | vs best | threads used | load 1-min | "
        "busy cores (others) |",
        "|---|---:|---:|---:|---:|---|---|---|",
    ]
    for name, t in results.items():
        threads = ",".join(str(n) for n in sorted(t.threads))
        lines.append(
            f"| {name} | {medians[name]:.1f} | {min(t.ms_per_step):.1f} | "
            f"{max(t.ms_per_step):.1f} | {medians[name] / best:.2f}x | {threads} | "
            f"{min(t.loads):.2f}-{max(t.loads):.2f} | {min(t.busy):.2f}-{max(t.busy):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="steps per walk (default 100)")
    parser.add_argument("--rounds", type=int, default=6, help="runs per setting (default 6)")
    parser.add_argument(
        "--settings",
        default=",".join(SETTINGS),
        help=f"comma-separated settings (default {','.join(SETTINGS)})",
    )
    parser.add_argument("--busy", type=int, default=0, help="busy processes to start (default 0)")
    args = parser.parse_args(argv)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    for setting in settings:
        environment(setting)  # refuse a bad setting before anything runs
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)]
    results = {name: Timings() for name in settings}
    started = time.time()
    try:
        if spinners:
            time.sleep(2.0)  # the spinners are running before the first sample
        with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
            for round_ in range(args.rounds):
                shift = round_ % len(settings)
                for name in settings[shift:] + settings[:shift]:
                    t = results[name]
                    t.loads.append(os.getloadavg()[0])
                    t.busy.append(busy_cores(0.5) or 0.0)
                    ms, threads = run_once(name, args.steps, Path(tmp) / "run")
                    t.ms_per_step.append(ms)
                    t.threads.add(threads)
                    print(
                        f"round {round_ + 1}/{args.rounds} {name}: {ms:.1f} ms/step, "
                        f"{threads} thread(s), load {t.loads[-1]:.2f}, busy {t.busy[-1]:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    cpu = platform.processor() or platform.machine()
    print(
        f"simec explore, shipped vit-mnist (paper ViT shape), {args.steps} steps, float32, "
        f"lowrank; {args.rounds} rounds; {available_cpus()} cores ({cpu}); "
        f"{args.busy} busy process(es) started; {time.time() - started:.0f} s in all\n"
    )
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
