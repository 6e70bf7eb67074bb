"""A long restricted SiMEC walk on a real-size model, checked against the full model (issue 27).

ViT-base/16 at 224 x 224 with 1,000 labels, or BERT-base on 128 tokens with 1,000 labels,
random weights (no downloads), with the classifier scaled so that the top-k classes hold
``--mass`` of the probability at the start, as in a trained model (a random head gives nearly
uniform probabilities, where a top-10 restriction would drop 99% of the mass). SiMEC with the
Fisher-Rao metric, ``top_k`` restriction, the corrector, ``jacobian_reuse="auto"`` and
``leakage="fresh"``, every point stored (no projection). Then, independently of the walk,
every stored point is evaluated by the full, unrestricted model (``adapter.logits``): its
top-1 class against the start's, its full output drift, d_FR(p_k, p_0) = 2 arccos(sum_i
sqrt(p_k,i p_0,i)) and ||p_k - p_0||, and the drift of the restricted (coarse) output
(p_S, p_rest) that the corrector holds; the walk's own stored probabilities are compared
with the full model's.

    python benchmarks/walk_real_size.py --model vit --steps 200
    python benchmarks/walk_real_size.py --model bert --steps 200
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch


def build(kind: str, labels: int, tokens: int, tmp: str) -> tuple[Any, Any, Any]:
    """(model, adapter, raw input) with random weights: the cases of ``bench_real_size``."""
    from bench_real_size import bert_case, vit_case

    if kind == "vit":
        adapter, raw = vit_case("cpu", labels)
    else:
        adapter, raw = bert_case("cpu", tokens, Path(tmp), labels)
    return adapter.model, adapter, raw


def peak_head(model: Any, adapter: Any, raw: Any, top_k: int, mass: float) -> float:
    """Scale the classifier (zero bias at init: logits scale with it) by the s for which the
    top-k classes hold ``mass`` of the probability at the start (bisection), as a trained
    model's output would; returns s."""
    prepared = adapter.prepare(raw)
    with torch.no_grad():
        z = adapter.logits(prepared.embeddings, prepared).double()
    top = torch.topk(z, top_k).indices

    def held(s: float) -> float:
        return float(torch.softmax(s * z, -1)[top].sum())

    lo, hi = 1.0, 2.0
    while held(hi) < mass:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if held(mid) < mass else (lo, mid)
    with torch.no_grad():
        model.classifier.weight.mul_(hi)
        if model.classifier.bias is not None:
            model.classifier.bias.mul_(hi)
    return hi


def check(adapter: Any, raw: Any, res: Any) -> dict[str, Any]:
    """The full model on every stored point, independently of the walk's own outputs."""
    from simec.structure.equivalence import output_distance

    prepared = adapter.prepare(raw)
    x0 = prepared.embeddings
    points = res.trajectory.reshape(len(res.trajectory), *x0.shape)
    with torch.no_grad():
        probs = torch.stack(
            [torch.softmax(adapter.logits(p, prepared).double(), -1) for p in points]
        )
    p0 = probs[0]
    top1 = int(p0.argmax())
    classes = res.restriction["changes"][0]["classes"]

    def coarse(p: torch.Tensor) -> torch.Tensor:
        chosen = p[..., classes]
        return torch.cat([chosen, 1 - chosen.sum(-1, keepdim=True)], -1)

    full = output_distance("fisher-rao", probs, p0)
    euclid = output_distance("euclidean-probs", probs, p0)
    held = output_distance("fisher-rao", coarse(probs), coarse(p0))
    stored = (res.trajectory_probabilities.double() - probs).abs().max()
    masses = [s["dropped_mass"] for s in res.restriction["steps"]]
    leak = [s["leakage"] for s in res.restriction["steps"] if s["leakage"] is not None]
    return {
        "points_checked": len(points),
        "top1_kept_at_every_point": bool((probs.argmax(-1) == top1).all()),
        "top1_probability": [float(p0[top1]), float(probs[:, top1].min())],
        "start_top_k_mass": float(p0[classes].sum()),
        "max_full_drift_fr": float(full.max()),
        "max_full_drift_euclidean": float(euclid.max()),
        "max_coarse_drift_fr": float(held.max()),
        "max_stored_vs_full_probability": float(stored),
        "dropped_mass_range": [min(masses), max(masses)],
        "max_leakage": max(leak) if leak else None,
        "class_set_changes": len(res.restriction["changes"]) - 1,
    }


def main() -> None:
    import tempfile

    import simec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["vit", "bert"], default="vit")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=128, help="BERT: tokens (default 128)")
    parser.add_argument(
        "--mass", type=float, default=0.9, help="top-k probability mass at the start (0.9)"
    )
    parser.add_argument("--reuse", default="auto", help="jacobian_reuse (default auto)")
    parser.add_argument("--leakage", default="fresh", help="leakage (default fresh)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model, adapter, raw = build(args.model, args.labels, args.tokens, tmp)
        scale = peak_head(model, adapter, raw, args.top_k, args.mass)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        res = simec.explore(
            adapter,
            raw,
            steps=args.steps,
            output_metric="fisher-rao",
            top_k=args.top_k,
            corrector=True,
            jacobian_reuse=args.reuse,
            leakage=args.leakage,
            record_every=1,
            projection="none",  # the stored points are the walk's own points
            compile=False,
        )
        seconds = time.perf_counter() - start
        out = {
            "model": args.model,
            "head_scale": scale,
            "n": int(res.trajectory[0].numel()),
            "steps_completed": res.steps_completed,
            "stop_reason": res.stop_reason,
            "seconds": seconds,
            "seconds_per_step": seconds / max(res.steps_completed, 1),
            "jacobians": res.fidelity.jacobians if res.fidelity else None,
            "walk_max_drift": max(res.drift),  # ||p_k - p_0|| (fisher-rao's y is p)
            "peak_bytes": res.memory.get("peak_bytes"),
            "threads": torch.get_num_threads(),
            "load": [load, os.getloadavg()[0]],
            **check(adapter, raw, res),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
