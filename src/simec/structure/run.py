"""``simec structure match|spectrum|lipschitz`` on a vision model and an IDX data set.

Any Hugging Face vision model that ``load_adapter`` loads works: ViT, DeiT, BEiT, Swin,
ViT-MSN (image classifiers) and ViT-MAE or CLIP's vision tower (no head: ``cls``/``pooled`` only);
see ``vision_embedding_fn`` for what each embedding is. The IDX images (28x28 gray) are fitted
to the model (``HFImageClassifierAdapter.fit_image``: bilinear resize, channel replication), and
every analysis works in the model's pixel space, [0, 1] per pixel before normalisation.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_json, environment
from ..data import load_idx_dataset
from ..errors import InputError, ModelError
from ..models import HFImageClassifierAdapter, load_adapter
from ..report import plots
from .core import (
    LIPSCHITZ_ASCENT_STEPS,
    LIPSCHITZ_DIRECTIONS,
    LIPSCHITZ_EPSILONS,
    directional_lipschitz,
    jacobian_spectrum,
    match_embedding,
    vision_embedding_fn,
)

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
    epsilons: Sequence[float] = LIPSCHITZ_EPSILONS,
    directions: int = LIPSCHITZ_DIRECTIONS,
    ascent_steps: int = LIPSCHITZ_ASCENT_STEPS,
    device: str = "cpu",
) -> dict[str, Any]:
    if command not in ("match", "spectrum", "lipschitz"):
        raise InputError(
            f"unknown structure command {command!r}: use 'match', 'spectrum' or 'lipschitz'"
        )
    adapter = load_adapter(model, space="pixels", device=device)
    if not isinstance(adapter, HFImageClassifierAdapter):
        raise ModelError(f"{model} is not a vision model; simec structure needs one")
    fn = vision_embedding_fn(adapter, kind)
    images = load_idx_dataset(data, split="test", kind=dataset)
    if command != "match" and count > len(images):
        raise InputError(f"--count {count} is more than the {len(images)} images in {data}")
    if command == "match" and len(np.unique(images.labels)) < 2:
        raise InputError(f"match needs images of at least two classes; {data} has one")
    c, (h, w) = adapter.num_channels, adapter.image_size
    stored = tuple(images.images.shape[1:])
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
        "epsilons": list(epsilons),
        "directions": directions,
        "ascent_steps": ascent_steps,
        "device": device,
        "model_info": adapter.describe(),
        # the data's images (gray) and what fit_image made of them for the model
        "image_fit": {
            "data_hwc": [*stored, 1],
            "model_hwc": [h, w, c],
            "rule": "bilinear resize (antialiased when shrinking), gray repeated per channel",
        },
    }
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any]
    if command == "match":
        for i, (a, b) in enumerate(_pairs(images.labels, count, seed)):
            src, tgt = adapter.fit_image(images.images[a]), adapter.fit_image(images.images[b])
            res = match_embedding(
                fn, src, tgt, tolerance=tolerance, max_steps=max_steps, to_model=adapter.normalize
            )
            pred = None
            if adapter.has_head:
                with torch.no_grad():
                    logits = adapter.image_logits(res.result)
                pred = int(logits.argmax())
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
            # None for a model without a classification head
            "target_class_reached": (
                sum(r["predicted_after"] == r["target_label"] for r in rows) / len(rows)
                if adapter.has_head
                else None
            ),
            **{
                k: _stats([r[k] for r in rows])
                for k in ("relative_error", "cosine", "l2", "linf", "iterations", "seconds")
            },
        }
    elif command == "spectrum":
        spectra = []
        for idx in range(count):
            pixels = adapter.normalize(adapter.fit_image(images.images[idx]))
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
        ratios: list[list[float]] = []
        for idx in range(count):
            pixels = adapter.normalize(adapter.fit_image(images.images[idx]))
            lip = directional_lipschitz(
                fn,
                pixels,
                epsilons=epsilons,
                directions=directions,
                ascent_steps=ascent_steps,
                seed=seed + idx,
            )
            ratios.append(lip.ratio().tolist())
            rows.append(
                {
                    "index": idx,
                    "epsilons": lip.epsilons,
                    "sigma_max": lip.sigma_max,
                    "random_mean": lip.random.mean(1).tolist(),
                    "optimized": lip.optimized.tolist(),
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
    else:  # pragma: no cover - checked on entry
        raise AssertionError(command)
    result = {"config": config, "summary": summary, "rows": rows, "environment": environment()}
    atomic_write_json(outdir / f"{command}.json", result)
    return summary
