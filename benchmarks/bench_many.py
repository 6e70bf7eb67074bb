"""Throughput of many-input SiMEC runs: sequential vs batched vs Ray workers.

Inputs per hour for SiMEC runs of 1000 steps on (a) the paper's ViT shape, the shipped
``vit-mnist`` model on MNIST test digits (random digits if ../shared/data/mnist is missing), and
(b) the BERT-base shape (random-weight BertForSequenceClassification, 16-token texts). Every mode
goes through ``simec.runs.run_dataset`` (results written to disk, as a real run would):

    sequential   local backend, one input at a time
    batched      local backend, --batch-size inputs per batched Jacobian
    ray          Ray backend, --workers actors of one CPU each, one input at a time each
    ray-batched  Ray backend, --workers actors, --batch-size / workers inputs per batch each

Runs of 1000 steps take too long to repeat here, so each mode is timed on N inputs at two step
counts K1 < K2 and extrapolated linearly to 1000 steps (everything in a run is per step, per
stored point, or once per input):

    E(1000) = E(K1) + (E(K2) - E(K1)) / (K2 - K1) * (1000 - K1),   inputs/hour = 3600 N / E(1000)

E is the backend's "explore_s": from the first input handed out to the last result written
(exploring, re-evaluating the stored points, writing the result folders and the manifest). The
one-off start-up (building the model; for Ray also starting the actors and loading the model in
each, Ray itself is started once beforehand) is reported separately as "start-up s": it is paid
once per run, whatever the number of inputs.

Torch threads: ``--threads`` for the local modes (default 1), one per Ray worker. On a machine
shared with other processes, two OpenMP threads per process spin-wait for each other and run
many times slower, so 1 thread per process is the fair comparison there.

    python benchmarks/bench_many.py                          # both models, all modes
    python benchmarks/bench_many.py --models vit --modes sequential,batched
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import simec
from simec.runs import ModelSpec, RunItem, get_backend, run_dataset

ROOT = Path(__file__).resolve().parents[1]
VIT = ROOT / "src" / "simec" / "assets" / "vit-mnist"
MNIST = ROOT.parent / "shared" / "data" / "mnist"
WORDS = "the quick brown fox jumps over a lazy dog while seven small birds sing".split()
MODES = ("sequential", "batched", "ray", "ray-batched")


@dataclass
class Case:
    name: str
    model: Any  # what the Ray workers get (a ModelSpec or a picklable factory)
    adapter: Any  # built once here for the local modes
    items: list[RunItem]
    steps: tuple[int, int]
    shape: str


def vit_case(count: int, steps: tuple[int, int]) -> Case:
    if MNIST.is_dir():
        from simec.data import load_idx_dataset

        data = load_idx_dataset(MNIST)
        images, source = data.images[:count], "MNIST test digits"
    else:
        rng = np.random.default_rng(0)
        images, source = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8), "random"
    items = [RunItem(f"{i:06d}", i, images[i], f"{source} {i}") for i in range(count)]
    spec = ModelSpec(str(VIT))
    adapter = spec.load()
    n = adapter.prepare(images[0]).embeddings.numel()
    return Case("ViT MNIST (shipped vit-mnist)", spec, adapter, items, steps, f"n={n}, q=10")


def bert_adapter() -> Any:
    """BERT-base with random weights (seed 0) and a WordPiece tokenizer over WORDS."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    tmp = Path(tempfile.mkdtemp(prefix="simec-bench-vocab-"))
    (tmp / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS]) + "\n")
    tokenizer = BertTokenizer(str(tmp / "vocab.txt"))
    torch.manual_seed(0)
    # BertConfig's defaults are BERT-base's shape
    cfg = BertConfig(num_labels=3, attn_implementation="sdpa")
    return simec.from_model(BertForSequenceClassification(cfg).eval(), tokenizer)


def bert_case(count: int, steps: tuple[int, int]) -> Case:
    texts = []
    for i in range(count):  # 14 words + [CLS] + [SEP] = 16 tokens each
        words = list(WORDS)
        random.Random(i).shuffle(words)
        texts.append(" ".join(words))
    items = [RunItem(f"{i:06d}", i, t, t) for i, t in enumerate(texts)]
    adapter = bert_adapter()
    n = adapter.prepare(texts[0]).embeddings.numel()
    return Case("BERT-base (random weights, 16 tokens)", bert_adapter, adapter, items, steps,
                f"n={n}, q=3")  # fmt: skip


def timed_run(case: Case, mode: str, steps: int, args: argparse.Namespace) -> tuple[float, float]:
    """(start-up s, explore s) of one run_dataset call."""
    ray_mode = mode.startswith("ray")
    batch = {
        "sequential": 1,
        "batched": args.batch_size,
        "ray": 1,
        "ray-batched": max(1, args.batch_size // args.workers),
    }[mode]
    out = Path(tempfile.mkdtemp(prefix="simec-bench-"))
    backend = get_backend("ray" if ray_mode else "local")
    try:
        run_dataset(
            case.model if ray_mode else case.adapter,
            case.items,
            out / "run",
            backend=backend,
            workers=args.workers if ray_mode else None,
            batch_size=batch,
            algorithm="simec",
            steps=steps,
            seed=0,
            compile=False,
        )
        timings = backend.timings  # type: ignore[attr-defined]
        return timings["startup_s"], timings["explore_s"]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def measure(case: Case, modes: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    k1, k2 = case.steps
    rows = []
    for mode in modes:
        s1, e1 = timed_run(case, mode, k1, args)
        s2, e2 = timed_run(case, mode, k2, args)
        slope = (e2 - e1) / (k2 - k1)
        e1000 = e1 + slope * (1000 - k1)
        n = len(case.items)
        row = {
            "model": case.name,
            "shape": case.shape,
            "mode": mode,
            "inputs": n,
            "ms_per_step_input": 1e3 * slope / n,
            "startup": min(s1, s2),
            "e1000": e1000,
            "per_hour": 3600 * n / e1000,
        }
        rows.append(row)
        print(
            f"  {case.name} [{mode}]: E({k1})={e1:.2f} s, E({k2})={e2:.2f} s -> "
            f"{row['ms_per_step_input']:.1f} ms per step and input, start-up "
            f"{row['startup']:.1f} s, {row['per_hour']:.0f} inputs/hour at 1000 steps",
            flush=True,
        )
    return rows


def steps_pair(text: str) -> tuple[int, int]:
    a, b = (int(v) for v in text.split(","))
    if not 0 < a < b:
        raise argparse.ArgumentTypeError("expected K1,K2 with 0 < K1 < K2")
    return a, b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="vit,bert", help="comma list of: vit, bert")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma list of: {MODES}")
    parser.add_argument("--inputs", type=int, default=8, help="ViT inputs per timed run")
    parser.add_argument("--bert-inputs", type=int, default=4, help="BERT inputs per timed run")
    parser.add_argument("--vit-steps", type=steps_pair, default=(10, 40), help="K1,K2 for ViT")
    parser.add_argument("--bert-steps", type=steps_pair, default=(2, 6), help="K1,K2 for BERT")
    parser.add_argument("--batch-size", type=int, default=8, help="inputs per batch (batched)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (local modes)")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore", message=r".*(batching rule|performance drop).*")
    if any(m.startswith("ray") for m in modes):
        import ray

        ray.init(
            num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
            logging_level="ERROR",
        )  # fmt: skip
    import transformers

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print("## simec many-input benchmark\n")
    print(
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical "
        f"CPUs, torch threads {torch.get_num_threads()} (local modes), 1 per Ray worker; load "
        f"average at start {load[0]:.2f}"
    )
    print(
        f"- torch {torch.__version__}, transformers {transformers.__version__}, python "
        f"{platform.python_version()}, simec {simec.__version__}"
    )
    print(
        f"- SiMEC, lowrank, euclidean-probs, float32, eager Jacobian; batch size "
        f"{args.batch_size}, {args.workers} Ray workers\n",
        flush=True,
    )
    builders: dict[str, Callable[[], Case]] = {
        "vit": lambda: vit_case(args.inputs, args.vit_steps),
        "bert": lambda: bert_case(args.bert_inputs, args.bert_steps),
    }
    rows: list[dict[str, Any]] = []
    for key in [m.strip() for m in args.models.split(",") if m.strip()]:
        if key not in builders:
            parser.error(f"unknown model {key!r}")
        rows += measure(builders[key](), modes, args)

    print()
    print(
        "| model | shape | mode | N | ms / step / input | start-up s | est. s for N x 1000 steps "
        "| inputs / hour | vs sequential |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    base = {r["model"]: r["per_hour"] for r in rows if r["mode"] == "sequential"}
    for r in rows:
        ratio = r["per_hour"] / base[r["model"]] if r["model"] in base else float("nan")
        print(
            f"| {r['model']} | {r['shape']} | {r['mode']} | {r['inputs']} | "
            f"{r['ms_per_step_input']:.1f} | {r['startup']:.1f} | {r['e1000']:.0f} | "
            f"{r['per_hour']:.0f} | {ratio:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
