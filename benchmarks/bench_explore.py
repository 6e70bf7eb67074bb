"""Per-iteration cost of SiMEC / SiMExp against the bare forward pass and Jacobian.

Prints one markdown table for (a) the SiMEC paper's MNIST ViT shape (28x28, patch 2, hidden 48,
4 layers: n = 197 x 48 = 9,456, q = 10) and (b) the BERT-base shape (12 layers, hidden 768, a
16-token input: n = 12,288, q = 3), both with random weights, driven through simec's adapters
(HFImageClassifierAdapter, HFSequenceClassifierAdapter with a WordPiece tokenizer built offline)
and ``simec.explore``.

    python benchmarks/bench_explore.py                  # a few minutes on a 2-core CPU
    python benchmarks/bench_explore.py --skip-exact     # under a minute
    python benchmarks/bench_explore.py --compile        # add rows for the compiled Jacobian

Every time is the best of ``--repeats`` runs (the machine's noise only ever adds time).
``exact`` (eigh of the n x n pullback metric) is timed for ONE step: explore(steps=1), which is
one Jacobian, one eigendecomposition and one extra forward pass.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import simec
from simec._io import cpu_name
from simec.geometry.jacobian import jacobian
from simec.geometry.metrics import get_output_metric

WORDS = "the quick brown fox jumps over a lazy dog while seven small birds sing".split()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_ms(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


# -- models ---------------------------------------------------------------------------------
def vit_case(device: torch.device) -> tuple[str, Any, Any]:
    from transformers import ViTForImageClassification

    from simec.train.vit import ViTTrainConfig, paper_vit_config

    torch.manual_seed(0)
    cfg = paper_vit_config(ViTTrainConfig(), [str(digit) for digit in range(10)])
    model = ViTForImageClassification(cfg).eval()
    adapter = simec.from_model(model, device=device)
    image = torch.rand(28, 28, generator=torch.Generator().manual_seed(0))
    return "ViT MNIST (paper)", adapter, image


def bert_case(device: torch.device, tmp: Path) -> tuple[str, Any, Any]:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(tmp / "vocab.txt"))
    torch.manual_seed(0)
    cfg = BertConfig(num_labels=3)  # BertConfig's defaults are BERT-base's shape
    model = BertForSequenceClassification(cfg).eval()
    adapter = simec.from_model(model, tokenizer, device=device)
    text = " ".join(WORDS)  # 14 words + [CLS] + [SEP] = 16 tokens
    return "BERT-base", adapter, text


# -- measurements -----------------------------------------------------------------------------
def per_iteration_ms(
    adapter: Any, raw: Any, steps: int, repeats: int, **options: Any
) -> tuple[float, float]:
    """(all-included ms/it = elapsed / steps, steady-state ms/it = (T(steps) - T(1)) / (steps - 1)).

    They differ only where the first step pays a one-off cost (the compiled Jacobian's trace and
    compile: explore makes a new model function per run, so every run compiles once).
    """
    simec.explore(adapter, raw, steps=2, seed=0, **options)  # warm-up
    best, one = float("inf"), float("inf")
    for r in range(repeats):
        result = simec.explore(adapter, raw, steps=steps, seed=r, **options)
        best = min(best, result.elapsed_seconds / max(len(result.step_sizes), 1))
        one = min(one, simec.explore(adapter, raw, steps=1, seed=r, **options).elapsed_seconds)
    steady = (best * steps - one) / (steps - 1) if steps > 1 else best
    return best * 1e3, steady * 1e3


def measure(name: str, adapter: Any, raw: Any, args: argparse.Namespace, steps: int) -> list[dict]:
    device = adapter.device
    prepared = adapter.prepare(raw)
    x = prepared.embeddings
    metric = get_output_metric("euclidean-probs")  # explore's default output metric

    def model_fn(xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = adapter.logits(xs, prepared)
        return metric.output(logits), logits

    with torch.no_grad():
        fwd = best_ms(lambda: adapter.logits(x, prepared), device, 3 * args.repeats)
        q = int(adapter.logits(x, prepared).shape[0])
    n = x.numel()

    variants = [("eager", False)] + ([("compiled", True)] if args.compile else [])
    rows = []
    exact_ms: float | None = None
    exact_note = "skipped (--skip-exact)"
    if not args.skip_exact:
        try:
            result = simec.explore(adapter, raw, steps=1, method="exact", seed=0)
            exact_ms = result.elapsed_seconds * 1e3 if result.step_sizes else None
            exact_note = "" if exact_ms is not None else f"no step: {result.stop_reason}"
        except simec.ExactTooLargeError as exc:
            exact_note = f"skipped: {exc}"
        except (MemoryError, RuntimeError) as exc:
            exact_note = f"skipped: {type(exc).__name__}: {str(exc)[:120]}"
        print(
            f"  {name}: exact, one step: "
            f"{f'{exact_ms / 1e3:.1f} s' if exact_ms is not None else exact_note}",
            flush=True,
        )

    for label, compiled in variants:
        compile_s = None
        if compiled:
            fn = model_fn  # a fresh function: its first call traces and compiles
            t = time.perf_counter()
            jacobian(fn, x, has_aux=True, compile=True)
            compile_s = time.perf_counter() - t
            jac = best_ms(
                lambda f=fn: jacobian(f, x, has_aux=True, compile=True), device, args.repeats
            )
            os.environ["SIMEC_COMPILE"] = "1"
        else:
            jac = best_ms(
                lambda: jacobian(model_fn, x, has_aux=True, compile=False), device, args.repeats
            )
            os.environ["SIMEC_COMPILE"] = "0"
        try:
            simec_all, simec_ms = per_iteration_ms(
                adapter, raw, steps, args.repeats, algorithm="simec"
            )
            _, simexp_ms = per_iteration_ms(adapter, raw, steps, args.repeats, algorithm="simexp")
        finally:
            os.environ.pop("SIMEC_COMPILE", None)
        print(
            f"  {name} [{label}]: forward {fwd:.1f} ms, Jacobian {jac:.1f} ms, "
            f"SiMEC {simec_ms:.1f} ms/it ({simec_all:.1f} with the first step), "
            f"SiMExp {simexp_ms:.1f} ms/it",
            flush=True,
        )
        rows.append(
            {
                "model": f"{name} [{label}]",
                "n": n,
                "q": q,
                "forward": fwd,
                "jacobian": jac,
                "compile_s": compile_s,
                "simec": simec_ms,
                "simec_all": simec_all,
                "simexp": simexp_ms,
                "exact": exact_ms,
                "exact_note": exact_note,
            }
        )
    return rows


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "n/a" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="explore steps per timed ViT run")
    parser.add_argument("--bert-steps", type=int, default=8, help="explore steps per BERT run")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best is kept)")
    parser.add_argument("--skip-exact", action="store_true", help="do not time the exact method")
    parser.add_argument("--compile", action="store_true", help="also time the compiled Jacobian")
    parser.add_argument("--models", default="vit,bert", help="comma list of: vit, bert")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    import transformers

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print("## simec explore benchmark\n")
    print(
        f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads "
        f"{torch.get_num_threads()}, load average at start {load[0]:.2f}"
    )
    if device.type == "cuda":
        print(f"- device: {torch.cuda.get_device_name(device)}")
    print(
        f"- torch {torch.__version__}, transformers {transformers.__version__}, "
        f"python {platform.python_version()}, simec {simec.__version__}"
    )
    print(
        f"- timings: best of {args.repeats}; explore steps: ViT {args.steps}, "
        f"BERT {args.bert_steps}; float32; output metric euclidean-probs\n",
        flush=True,
    )

    warnings.filterwarnings("ignore", message=r".*(batching rule|performance drop).*")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        for key in wanted:
            if key == "vit":
                rows += measure(*vit_case(device), args, args.steps)
            elif key == "bert":
                rows += measure(*bert_case(device, Path(tmp)), args, args.bert_steps)
            else:
                parser.error(f"unknown model {key!r}")

    print()
    print(
        "| model | n | q | forward ms | Jacobian ms | compile s | SiMEC lowrank ms/it "
        "| SiMExp lowrank ms/it | exact ms/it | exact / lowrank | lowrank it / Jacobian "
        "| 1000 SiMEC its s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = r["exact"] / r["simec"] if r["exact"] is not None else None
        total = r["simec"] + (r["compile_s"] or 0.0)  # ms/it x 1000 its = s
        print(
            f"| {r['model']} | {r['n']} | {r['q']} | {fmt(r['forward'])} | "
            f"{fmt(r['jacobian'])} | {fmt(r['compile_s'])} | {fmt(r['simec'])} | "
            f"{fmt(r['simexp'])} | {fmt(r['exact'], '.0f')} | {fmt(ratio, '.0f')}x | "
            f"{fmt(r['simec'] / r['jacobian'], '.2f')} | {fmt(total, '.1f')} |"
        )
    notes = {r["model"].split(" [")[0]: r["exact_note"] for r in rows if r["exact_note"]}
    for model, note in notes.items():
        print(f"\n- {model}: exact {note}")
    print(
        "\n- SiMEC/SiMExp ms/it: steady state, (T(steps) - T(1 step)) / (steps - 1), from "
        "explore's elapsed_seconds (all per-iteration work: Jacobian, spectrum, direction, "
        "bookkeeping).\n- 1000 SiMEC its s = 1000 x SiMEC ms/it + the compile time once.\n"
        "- exact ms/it: explore(steps=1, method='exact') elapsed, one step.\n"
        "- a load average well above 0 at the start means other processes share the CPU and "
        "every time above is inflated."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
