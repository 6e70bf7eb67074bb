"""Seconds per step and peak memory of simec on real-size models (issue 27).

Cases, all with random weights (no downloads), driven through ``simec.from_model`` and
``simec.explore``:

* ViT-base/16 at 224 x 224 with 1,000 labels (n = 197 x 768 = 151,296, q = 1,000), Fisher-Rao:
  top-10 restriction (``top_k=10``, an 11-row Jacobian), a fresh Jacobian every step and with
  ``jacobian_reuse="auto"``; the full 1,000-row Jacobian is extrapolated from the measured cost
  of one row (``--full`` runs it instead: tens of minutes on a 2-core CPU).
* BERT-base (q = 2) on 64, 128 and 256 tokens, fresh and with reuse.

Each case runs in its own process, so that its peak memory (``ExplorationResult.memory``:
``ru_maxrss`` on the CPU, ``torch.cuda.max_memory_allocated`` on CUDA) is its own. The load
average (``os.getloadavg``) is printed next to every figure: on a shared machine it is part of
the measurement.

    python benchmarks/bench_real_size.py --steps 2                # a few minutes (2-core CPU)
    python benchmarks/bench_real_size.py --steps 5 --device cuda  # on a GPU
    python benchmarks/bench_real_size.py --case vit-top10-fresh   # one case
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

WORDS = "the quick brown fox jumps over a lazy dog while seven small birds sing".split()
VIT = {"image_size": 224, "patch_size": 16, "num_labels": 1000}
CASES = {
    "vit-top10-fresh": ("vit", {"top_k": 10, "output_metric": "fisher-rao"}),
    "vit-top10-reuse": (
        "vit",
        {"top_k": 10, "output_metric": "fisher-rao", "jacobian_reuse": "auto"},
    ),
    "vit-top10-fresh-noleak": (
        "vit",
        {"top_k": 10, "output_metric": "fisher-rao", "leakage": "off"},
    ),
    "vit-top10-reuse-leakfresh": (
        "vit",
        {"top_k": 10, "output_metric": "fisher-rao", "jacobian_reuse": "auto", "leakage": "fresh"},
    ),
    "vit-top5-fresh-noleak": ("vit", {"top_k": 5, "output_metric": "fisher-rao", "leakage": "off"}),
    "vit-full-fresh": ("vit", {"output_metric": "fisher-rao"}),
    "vit-row-cost": ("vit-rows", {}),
    **{
        f"bert{n}-{mode}": (
            f"bert{n}",
            {"jacobian_reuse": "auto"} if mode == "reuse" else {},
        )
        for n in (64, 128, 256)
        for mode in ("fresh", "reuse")
    },
}


def vit_case(device: str, labels: int = VIT["num_labels"]) -> tuple[Any, Any]:
    from transformers import ViTConfig, ViTForImageClassification

    import simec

    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(**{**VIT, "num_labels": labels})).eval()
    image = torch.rand(224, 224, 3, generator=torch.Generator().manual_seed(0)).numpy()
    return simec.from_model(model, device=device), image


def bert_case(device: str, tokens: int, tmp: Path, labels: int = 2) -> tuple[Any, Any]:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    import simec

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(tmp / "vocab.txt"))
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=labels)).eval()  # BERT-base
    words = (WORDS * (tokens // len(WORDS) + 1))[: tokens - 2]  # + [CLS], [SEP]
    return simec.from_model(model, tokenizer, device=device), " ".join(words)


def row_cost(adapter: Any, image: Any) -> dict[str, Any]:
    """Seconds of a Jacobian of 1 and of 11 rows (the top-10 restriction's), per extra row,
    and the full 1,000-row Jacobian extrapolated from them."""
    from simec.explore.model_function import ModelFunction
    from simec.explore.restriction import Restriction
    from simec.explore.segments import Segments
    from simec.geometry.jacobian import jacobian
    from simec.geometry.metrics import get_output_metric

    prepared = adapter.prepare(image)
    x = prepared.embeddings
    segments = Segments.select(x, None)

    def sync() -> None:  # CUDA runs asynchronously: wait for the work before reading the clock
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    metric = get_output_metric("fisher-rao")
    times = {}
    with torch.no_grad():
        ModelFunction(adapter, prepared, segments, metric).logits(x)  # warm-up
        sync()
        start = time.perf_counter()
        ModelFunction(adapter, prepared, segments, metric).logits(x)
        sync()
        forward = time.perf_counter() - start
    for k in (1, 10):
        restriction = Restriction(k, None, with_rest=True)
        fn = ModelFunction(adapter, prepared, segments, metric, restriction)
        restriction.start(fn.logits(x))
        jacobian(fn, x, has_aux=True, compile=False)  # warm-up (first calls into torch.func)
        sync()
        start = time.perf_counter()
        jacobian(fn, x, has_aux=True, compile=False)
        sync()
        times[k + 1] = time.perf_counter() - start
    per_row = (times[11] - times[2]) / 9
    return {
        "forward_s": forward,
        "jacobian_2_rows_s": times[2],
        "jacobian_11_rows_s": times[11],
        "per_row_s": per_row,
        "full_1000_rows_estimate_s": times[2] + 998 * per_row,
    }


def run_case(name: str, steps: int, device: str, max_memory: str | None) -> dict[str, Any]:
    import simec

    kind, options = CASES[name]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        if kind.startswith("bert"):
            adapter, raw = bert_case(device, int(kind[4:]), Path(tmp))
        else:
            adapter, raw = vit_case(device)
        if kind == "vit-rows":
            out: dict[str, Any] = row_cost(adapter, raw)
            from simec.explore.summary import peak_memory

            out.update(peak_memory(torch.device(device)))
        else:
            # a one-step warm-up (first calls into torch.func), then the measured run; the
            # steady state is (T(steps) - T(1)) / (steps - 1), both runs' walks being the same
            # up to their last step
            for _ in range(2):  # the first run warms up (CUDA: kernels, allocator), then T(1)
                one = simec.explore(
                    adapter, raw, steps=1, max_memory=max_memory, compile=False, **options
                )
            res = simec.explore(
                adapter, raw, steps=steps, max_memory=max_memory, compile=False, **options
            )
            done = max(res.steps_completed, 1)
            steady = (res.elapsed_seconds - one.elapsed_seconds) / max(done - 1, 1)
            out = {
                "steps": res.steps_completed,
                "first_step_s": one.elapsed_seconds,
                "steady_per_step_s": steady,
                "seconds_per_step": res.elapsed_seconds / done,
                "jacobians": res.fidelity.jacobians if res.fidelity else None,
                "peak_bytes": res.memory.get("peak_bytes"),
                "measured_by": res.memory.get("measured_by"),
                "stop_reason": res.stop_reason,
            }
    out.update(
        case=name,
        n=int(adapter.prepare(raw).embeddings.numel()),
        threads=torch.get_num_threads(),
        device=device,
        load=[load_before, os.getloadavg()[0]],
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="steps per case (default 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-memory", default=None, help="as explore's --max-memory")
    parser.add_argument("--case", choices=list(CASES), action="append", help="only these")
    parser.add_argument("--full", action="store_true", help="also run vit-full-fresh")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # in-process
    args = parser.parse_args()
    if args.one:
        (name,) = args.case
        print(json.dumps(run_case(name, args.steps, args.device, args.max_memory)))
        return
    names = args.case or [c for c in CASES if c != "vit-full-fresh" or args.full]
    print(
        "| case | n | s/step (all) | first step (s) | s/step after the first | Jacobians "
        "| peak memory | load (before, after) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        command = [sys.executable, __file__, "--one", "--case", name, "--steps", str(args.steps)]
        command += ["--device", args.device]
        if args.max_memory:
            command += ["--max-memory", args.max_memory]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"| {name} | failed: {done.stderr.strip().splitlines()[-1:]} | | | | | | |")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        peak = f"{row['peak_bytes'] / 1e9:.2f} GB" if row.get("peak_bytes") else "?"
        load = f"{row['load'][0]:.1f}, {row['load'][1]:.1f}"
        if "per_row_s" in row:
            seconds = (
                f"forward {row['forward_s']:.3g} s, J(2 rows) {row['jacobian_2_rows_s']:.3g} s, "
                f"J(11 rows) "
                f"{row['jacobian_11_rows_s']:.3g} s, {row['per_row_s']:.3g} s/row -> "
                f"J(1000 rows) ~{row['full_1000_rows_estimate_s']:.0f} s (extrapolated)"
            )
            print(f"| {name} | {row['n']} | {seconds} | | | | {peak} | {load} |")
        else:
            print(
                f"| {name} | {row['n']} | {row['seconds_per_step']:.2f} | "
                f"{row['first_step_s']:.2f} | {row['steady_per_step_s']:.2f} | "
                f"{row['jacobians']} | {peak} | {load} |"
            )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
