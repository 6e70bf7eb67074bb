"""``simec structure match|spectrum|lipschitz`` on an image classifier and an IDX data set."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_json, environment
from ..data import load_idx_dataset
from ..models import HFImageClassifierAdapter, load_adapter
from ..report import plots
from .core import directional_lipschitz, jacobian_spectrum, match_embedding, vision_embedding_fn

__all__ = ["run_structure"]


def _pairs(labels: np.ndarray, count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` (source, target) index pairs with different labels, reproducibly."""
    rng = np.random.default_rng(seed)
    pairs: list[tuple[int, int]] = []
    while len(pairs) < count:
        a, b = (int(v) for v in rng.integers(0, len(labels), size=2))
        if labels[a] != labels[b]:
            pairs.append((a, b))
    return pairs


def _stats(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return {"mean": statistics.fmean(finite), "std": sd, "n": len(finite)}


def run_structure(
    command: str,
    *,
    model: str,
    data: str,
    out: str,
    dataset: str = "mnist",
    count: int = 20,
    kind: str = "cls",
    seed: int = 0,
    tolerance: float = 1e-2,
    max_steps: int = 2000,
    device: str = "cpu",
) -> dict[str, Any]:
    adapter = load_adapter(model, space="pixels", device=device)
    assert isinstance(adapter, HFImageClassifierAdapter)
    fn = vision_embedding_fn(adapter, kind)
    images = load_idx_dataset(data, split="test", kind=dataset)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    config = {
        "command": command,
        "model": model,
        "data": data,
        "dataset": dataset,
        "count": count,
        "kind": kind,
        "seed": seed,
        "tolerance": tolerance,
        "max_steps": max_steps,
        "device": device,
    }
    if command == "match":
        rows = []
        for i, (a, b) in enumerate(_pairs(images.labels, count, seed)):
            src, tgt = adapter.image(images.images[a]), adapter.image(images.images[b])
            res = match_embedding(
                fn, src, tgt, tolerance=tolerance, max_steps=max_steps, to_model=adapter.normalize
            )
            with torch.no_grad():
                pred = int(adapter._run(adapter.normalize(res.result).unsqueeze(0))[0].argmax())
            rows.append(
                {
                    "source": a,
                    "target": b,
                    "source_label": int(images.labels[a]),
                    "target_label": int(images.labels[b]),
                    "predicted_after": pred,
                    "relative_error": res.relative_error,
                    "cosine": res.cosine,
                    "l2": res.l2,
                    "linf": res.linf,
                    "iterations": res.iterations,
                    "seconds": res.seconds,
                    "converged": res.converged,
                }
            )
            if i < 3:
                fig, _ = plots.plot_image_strip(
                    [src, tgt, res.result, (res.result - src).abs()],
                    ["source", "target", f"result (err {res.relative_error:.1e})", "|difference|"],
                )
                plots.save_figure(fig, outdir / f"match_{i}.png")
        summary = {
            "success_rate": sum(r["converged"] for r in rows) / len(rows),
            "target_class_reached": sum(r["predicted_after"] == r["target_label"] for r in rows)
            / len(rows),
            **{
                k: _stats([r[k] for r in rows])
                for k in ("relative_error", "cosine", "l2", "linf", "iterations", "seconds")
            },
        }
    elif command == "spectrum":
        rows = []
        spectra = []
        for idx in range(count):
            pixels = adapter.normalize(adapter.image(images.images[idx]))
            spec = jacobian_spectrum(fn, pixels)
            spectra.append(spec.singular_values)
            rows.append(
                {
                    "index": idx,
                    "null_dims": {str(k): v for k, v in spec.null_dims.items()},
                    "sigma_max": float(spec.singular_values[0]),
                    "input_dim": spec.input_dim,
                    "output_dim": spec.output_dim,
                }
            )
        fig, ax = plots.plt.subplots(figsize=(6, 3.2))
        for s in spectra:
            ax.semilogy((s / s[0]).numpy(), alpha=0.4)
        ax.set_xlabel("index")
        ax.set_ylabel("sigma_i / sigma_max")
        ax.set_title(f"Jacobian spectra of the {kind} embedding ({count} images)")
        plots.save_figure(fig, outdir / "spectrum.png")
        summary = {
            "input_dim": rows[0]["input_dim"],
            "output_dim": rows[0]["output_dim"],
            "null_dims": {
                k: _stats([r["null_dims"][k] for r in rows]) for k in rows[0]["null_dims"]
            },
        }
    elif command == "lipschitz":
        rows = []
        ratios: list[list[float]] = []
        for idx in range(count):
            pixels = adapter.normalize(adapter.image(images.images[idx]))
            res = directional_lipschitz(fn, pixels, seed=seed + idx)
            ratios.append(res.ratio().tolist())
            rows.append(
                {
                    "index": idx,
                    "epsilons": res.epsilons,
                    "sigma_max": res.sigma_max,
                    "random_mean": res.random.mean(1).tolist(),
                    "optimized": res.optimized.tolist(),
                }
            )
        eps = rows[0]["epsilons"]
        fig, ax = plots.plt.subplots(figsize=(5, 3.2))
        ax.loglog(eps, np.mean([r["random_mean"] for r in rows], 0), "o-", label="random")
        ax.loglog(eps, np.mean([r["optimized"] for r in rows], 0), "s-", label="optimised")
        ax.set_xlabel("epsilon")
        ax.set_ylabel("||f(x+eps v) - f(x)|| / eps")
        ax.legend()
        plots.save_figure(fig, outdir / "lipschitz.png")
        summary = {
            "epsilons": eps,
            "optimized_over_random": [_stats([r[i] for r in ratios]) for i in range(len(eps))],
        }
    else:
        raise ValueError(f"unknown structure command {command!r}")
    result = {"config": config, "summary": summary, "rows": rows, "environment": environment()}
    atomic_write_json(outdir / f"{command}.json", result)
    return summary
