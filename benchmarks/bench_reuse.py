"""SiMEC with a fresh Jacobian every step (the paper) against Jacobian reuse, side by side.

For each model (the paper's MNIST ViT shape with random weights, the shipped
``simec/assets/vit-mnist`` model, and the BERT-base shape with random weights and a 16-token
input) the modes run one after the other on the same input and seed, with one torch thread:

    fresh          jacobian_reuse="off" (Algorithm 1 of the paper, no corrector)
    fresh+corr     jacobian_reuse="off", corrector=True (a fresh Jacobian and a corrector)
    reuse          jacobian_reuse="auto" (``simec.explore.reuse``)

and prints, per mode: ms per step (all included: the first Jacobian too), the 1000-step total
extrapolated from it (plus the compile time once for compiled rows), Jacobians and forward passes
per step, the largest output drift relative to ||N(x0)|| over the walk, whether the class was kept
at every step, the explored distance ||x_K - x_0||, the mean step size, and the refreshes. The
load average (``os.getloadavg``) is printed next to every figure: on a shared machine every time
is inflated by the others' work.

    python benchmarks/bench_reuse.py --steps 150 --bert-steps 60 \
        --out benchmarks/results-reuse-cpu.md
    python benchmarks/bench_reuse.py --compile      # add compiled rows (the Jacobian compiled)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

import simec
from simec.demo import sample_digit, shipped_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_explore import bert_case, vit_case  # noqa: E402

MODES = {
    "fresh": {"jacobian_reuse": "off"},
    "fresh+corr": {"jacobian_reuse": "off", "corrector": True},
    "reuse": {"jacobian_reuse": "auto"},
}


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def run(adapter: Any, raw: Any, steps: int, compile_: bool, **options: Any) -> dict[str, Any]:
    load_before = load()
    t0 = time.perf_counter()
    result = simec.explore(adapter, raw, steps=steps, seed=0, compile=compile_, **options)
    elapsed = time.perf_counter() - t0
    f = result.fidelity
    assert f is not None
    y0 = result.probabilities[0]
    drift = max(result.drift) / float(torch.linalg.vector_norm(y0))
    kept = all(p == result.predicted[0] for p in result.predicted)
    first = result.trajectory[0]
    last = result.trajectory[-1]
    reasons = Counter(r["reason"] for r in f.refreshes)
    angles = f.angles
    iters = [i for i in f.corrector_iterations if i is not None]
    return {
        "ms": elapsed / steps * 1e3,
        "load": f"{load_before}/{load()}",
        "jac_per_step": f.jacobians / steps,
        "fwd_per_step": f.forward_passes / steps,
        "pts_per_step": (f.forward_points or f.forward_passes) / steps,
        "drift": drift,
        "kept": kept,
        "distance": float(torch.linalg.vector_norm(last - first)),
        "mean_step": sum(result.step_sizes) / max(len(result.step_sizes), 1),
        "iters": sum(iters) / len(iters) if iters else None,
        "reasons": dict(reasons),
        "angle_max": max(angles) if angles else None,
        "angle_median": sorted(angles)[len(angles) // 2] if angles else None,
        "retried": f.retried,
        "stop": result.stop_reason,
    }


def compile_seconds(adapter: Any, raw: Any) -> float:
    """The one-off cost of the compiled Jacobian: a 1-step compiled run minus a 1-step eager."""
    t = time.perf_counter()
    simec.explore(adapter, raw, steps=1, compile=True)
    compiled = time.perf_counter() - t
    t = time.perf_counter()
    simec.explore(adapter, raw, steps=1, compile=False)
    return max(compiled - (time.perf_counter() - t), 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="steps per ViT walk")
    parser.add_argument("--bert-steps", type=int, default=60, help="steps per BERT walk")
    parser.add_argument("--compile", action="store_true", help="add compiled rows")
    parser.add_argument("--skip-bert", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (2 on an idle 2-core machine)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    lines = [
        "## SiMEC: fresh Jacobian every step vs Jacobian reuse",
        "",
        f"- {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"torch threads {torch.get_num_threads()}, torch {torch.__version__}, "
        f"python {platform.python_version()}; float32, output metric euclidean-probs, max_step "
        "0.02, seed 0",
        f"- `uptime` at start: {os.popen('uptime').read().strip()}",
        f"- ViT walks: {args.steps} steps per mode, BERT walks: {args.bert_steps}; the 1000-step "
        "total is 1000 x (ms/step) (+ the compile time once for compiled rows)",
        "- load = 1-minute load average before/after the walk",
        "",
        "| model | mode | ms/step | 1000 steps s | load | J/step | fwd/step | points/step | max "
        "drift / ||y0|| | class kept | distance | mean step | corr. its | refreshes (reason: "
        "count) | angle max / median (deg) |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|",
    ]
    print("\n".join(lines), flush=True)
    cases: list[tuple[str, Any, Any, int, bool]] = []
    name, adapter, image = vit_case(device)
    cases.append((name + " random", adapter, image, args.steps, args.compile))
    cases.append(
        (
            "ViT MNIST shipped",
            simec.load_adapter(shipped_model()),
            sample_digit(),
            args.steps,
            args.compile,
        )
    )
    if not args.skip_bert:
        tmp = Path(tempfile.mkdtemp())
        name, adapter, text = bert_case(device, tmp)
        cases.append((name + " 16 tokens", adapter, text, args.bert_steps, args.compile))
    for name, adapter, raw, steps, with_compile in cases:
        simec.explore(adapter, raw, steps=2, compile=False)  # warm-up
        variants = [(False, 0.0)]
        if with_compile:
            variants.append((True, compile_seconds(adapter, raw)))
        for compiled, compile_s in variants:
            for mode, options in MODES.items():
                if mode == "fresh+corr" and name.startswith("BERT"):
                    continue
                r = run(adapter, raw, steps, compiled, **options)
                tag = f"{mode} [{'compiled' if compiled else 'eager'}]"
                total = r["ms"] + compile_s * 1e3 / 1000  # per step, compile spread over 1000
                refresh = ", ".join(f"{k}: {v}" for k, v in r["reasons"].items()) or "-"
                if r["retried"]:
                    refresh += f"; retried {r['retried']}"
                angle = (
                    f"{r['angle_max']:.2f} / {r['angle_median']:.2f}"
                    if r["angle_max"] is not None
                    else "-"
                )
                iters = f"{r['iters']:.2f}" if r["iters"] is not None else "-"
                row = (
                    f"| {name} | {tag} | {r['ms']:.1f} | {total:.1f} | {r['load']} | "
                    f"{r['jac_per_step']:.3f} | {r['fwd_per_step']:.2f} | "
                    f"{r['pts_per_step']:.2f} | {r['drift']:.2e} | "
                    f"{'yes' if r['kept'] else 'NO'} | {r['distance']:.3f} | "
                    f"{r['mean_step']:.4f} | {iters} | {refresh} | {angle} |"
                )
                lines.append(row)
                print(row, flush=True)
    lines += [
        "",
        f"- `uptime` at the end: {os.popen('uptime').read().strip()}",
        "- J/step: Jacobians taken per step (1.0 = the paper); fwd/step: model calls outside "
        "the Jacobians (corrector iterations, reused steps); points/step: the points they "
        "evaluated (a reused step checks its corrected point and evaluates the next step's "
        "prediction in one batched call); corr. its: corrector updates per step",
        "- angle: largest principal angle between the reused and the fresh null space, measured "
        "at every refresh (the stalest moments)",
    ]
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
