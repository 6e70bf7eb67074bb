"""The explainers side by side on a ViT: one row of patch heatmaps per digit (issue: images).

For each image: the predicted class, then every requested explainer's per-patch scores for that
class (CLS dropped), shown as a heatmap over the image. Also written: the scores (JSON) and the
Spearman rank correlation of every explainer with ``simec`` per image, so one can see at a
glance which methods agree. Signed methods (gradient x input, integrated gradients) are shown as
absolute values, since the figure asks "where does the model look", not "in which direction".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_json, environment
from ..data import load_idx_dataset
from ..errors import InputError
from ..explainers import explain, explainer_names
from ..interpret.measures import spearman  # Spearman with average ranks for ties
from ..models import HFImageClassifierAdapter, load_adapter

__all__ = ["DEFAULT_EXPLAINERS", "run_vision_explainers", "spearman"]

DEFAULT_EXPLAINERS = ("simec", "rollout", "relevancy", "grad_x_input", "integrated_gradients")


def run_vision_explainers(
    model: str,
    *,
    out: str,
    data: str | None = None,
    images: int = 6,
    explainers: tuple[str, ...] = DEFAULT_EXPLAINERS,
    device: str = "cpu",
) -> dict[str, Any]:
    """Heatmaps of every explainer for ``images`` digits (the shipped sample digit if no data)."""
    from ..report import plots

    unknown = [e for e in explainers if e not in explainer_names()]
    if unknown:
        raise InputError(f"unknown explainers {unknown}; choose from {explainer_names()}")
    adapter = load_adapter(model, space="pixels", device=device)
    if not isinstance(adapter, HFImageClassifierAdapter) or not adapter.patch_size:
        raise InputError("vision-explainers needs a patch-based image classifier (ViT family)")
    if data:
        pool = load_idx_dataset(data, split="test")
        picks = np.random.default_rng(0).choice(
            len(pool), size=min(images, len(pool)), replace=False
        )
        inputs = [pool.images[int(i)] for i in picks]
        names = [f"test #{int(i)} (label {pool.classes[int(pool.labels[int(i)])]})" for i in picks]
    else:
        from importlib.resources import files

        sample = np.load(str(files("simec.assets") / "sample_digit.npy"))
        inputs, names = [sample], ["shipped sample digit"]
    grid = tuple(s // adapter.patch_size for s in adapter.image_size)
    fig, axes = plots.subplots(
        len(inputs),
        len(explainers) + 1,
        figsize=(2.0 * (len(explainers) + 1), 2.1 * len(inputs)),
        squeeze=False,
    )
    rows = []
    for r, (raw, name) in enumerate(zip(inputs, names)):
        prepared = adapter.prepare(raw)
        with torch.no_grad():
            cls = int(adapter.logits(prepared.embeddings, prepared).argmax())
        image = adapter.image(raw)
        plots.plot_image(image, ax=axes[r, 0], title=f"{name}\npredicted {adapter.labels[cls]}")
        row: dict[str, Any] = {"image": name, "predicted": adapter.labels[cls], "scores": {}}
        for c, method in enumerate(explainers, start=1):
            scores = explain(adapter, raw, method, target=cls).scores.double()
            patches = scores[-grid[0] * grid[1] :].abs()
            row["scores"][method] = patches.tolist()
            ax = axes[r, c]
            gray = plots._gray(image)
            h, w = gray.shape[:2]
            ax.imshow(gray, cmap="gray", vmin=0, vmax=1, extent=(0, w, h, 0))
            heat = patches.reshape(grid).numpy()
            ax.imshow(heat, cmap="inferno", alpha=0.65, extent=(0, w, h, 0))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(method.replace("_", " "), fontsize=9)
        ref = np.array(row["scores"].get("simec", []))
        row["spearman_vs_simec"] = {
            m: spearman(np.array(v), ref) for m, v in row["scores"].items() if len(ref)
        }
        rows.append(row)
    fig.tight_layout()
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    plots.save_figure(fig, outdir / "explainers_heatmaps.png")
    mean_corr = {
        m: float(np.nanmean([r["spearman_vs_simec"][m] for r in rows]))
        for m in rows[0]["spearman_vs_simec"]
    }
    result = {
        "model": model,
        "explainers": list(explainers),
        "mean_spearman_vs_simec": mean_corr,
        "rows": rows,
        "environment": environment(),
    }
    atomic_write_json(outdir / "explainers.json", result)
    return result
