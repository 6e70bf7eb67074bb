"""The explainers side by side on a ViT: one row of patch heatmaps per digit (issue: images).

For each image: the predicted class, then every requested explainer's per-patch scores for that
class (CLS dropped), shown as a heatmap over the image. Also written: the scores (JSON) and the
Spearman rank correlation of every explainer with ``simec`` per image, so one can see at a
glance which methods agree. Signed methods (gradient x input, integrated gradients) are shown as
absolute values, since the figure asks "where does the model look", not "in which direction".

One :class:`ImageRow` per image is written to ``out/rows/`` as soon as it is done (named after
the image: ``test-NNNNN`` or ``sample``), so an interrupted run resumes; ``explainers.json``
holds the rows and the mean correlations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_json, environment
from ..data import load_idx_dataset
from ..errors import InputError
from ..explainers import explain, explainer_names
from ..fields import option
from ..interpret.measures import spearman  # Spearman with average ranks for ties
from ..models import as_image_model, load_adapter
from . import start_or_resume
from .rows import load_row, make_rows

__all__ = [
    "DEFAULT_EXPLAINERS",
    "ImageRow",
    "VisionExplainersConfig",
    "run_vision_explainers",
    "spearman",
]

DEFAULT_EXPLAINERS = ("simec", "rollout", "relevancy", "grad_x_input", "integrated_gradients")


@dataclass
class VisionExplainersConfig:
    """Options of ``simec experiment vision-explainers``."""

    model: str = field(
        metadata={"help": "a patch-based image classifier (ViT family) directory", "metavar": "DIR"}
    )
    out: str = field(metadata={"metavar": "DIR"})
    data: str | None = option(
        None,
        "IDX folder; test images drawn with seed 0 (default: the shipped digit)",
        metavar="DIR",
    )
    images: int = option(6, "how many images (with --data)", metavar="N", min=1)
    explainers: tuple[str, ...] = option(
        DEFAULT_EXPLAINERS, "the explainers, side by side: a comma list of explainer names"
    )
    device: str = "cpu"


@dataclass(frozen=True)
class ImageRow:
    """Every explainer on one image: absolute per-patch scores for the predicted class."""

    image: str
    predicted: str
    scores: dict[str, list[float]]
    spearman_vs_simec: dict[str, float]  # empty without simec


def _inputs(cfg: VisionExplainersConfig) -> list[tuple[str, str, Any]]:
    """(row name, caption, raw image) of every image to explain."""
    if cfg.data:
        pool = load_idx_dataset(cfg.data, split="test")
        picks = np.random.default_rng(0).choice(
            len(pool), size=min(cfg.images, len(pool)), replace=False
        )
        return [
            (
                f"test-{int(i):05d}",
                f"test #{int(i)} (label {pool.classes[int(pool.labels[int(i)])]})",
                pool.images[int(i)],
            )
            for i in picks
        ]
    from importlib.resources import files

    sample = np.load(str(files("simec.assets") / "sample_digit.npy"))
    return [("sample", "shipped sample digit", sample)]


def _image_row(adapter: Any, raw: Any, caption: str, explainers: tuple[str, ...]) -> ImageRow:
    grid = adapter.patch_grid
    prepared = adapter.prepare(raw)
    with torch.no_grad():
        cls = int(adapter.logits(prepared.embeddings, prepared).argmax())
    scores = {}
    for method in explainers:
        values = explain(adapter, raw, method, target=cls).scores.double()
        scores[method] = values[-grid[0] * grid[1] :].abs().tolist()
    ref = np.array(scores.get("simec", []))
    corr = {m: spearman(np.array(v), ref) for m, v in scores.items()} if len(ref) else {}
    return ImageRow(caption, adapter.labels[cls], scores, corr)


def _figure(adapter: Any, inputs: list, rows: list[ImageRow], explainers: tuple[str, ...]):
    from ..report import plots

    grid = adapter.patch_grid
    fig, axes = plots.subplots(
        len(rows),
        len(explainers) + 1,
        figsize=(2.0 * (len(explainers) + 1), 2.1 * len(rows)),
        squeeze=False,
    )
    for r, ((_, _, raw), row) in enumerate(zip(inputs, rows)):
        image = adapter.image(raw)
        plots.plot_image(image, ax=axes[r, 0], title=f"{row.image}\npredicted {row.predicted}")
        gray = plots._gray(image)
        h, w = gray.shape[:2]
        for c, method in enumerate(explainers, start=1):
            ax = axes[r, c]
            ax.imshow(gray, cmap="gray", vmin=0, vmax=1, extent=(0, w, h, 0))
            heat = np.array(row.scores[method]).reshape(grid)
            ax.imshow(heat, cmap="inferno", alpha=0.65, extent=(0, w, h, 0))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(method.replace("_", " "), fontsize=9)
    fig.tight_layout()
    return fig


def run_vision_explainers(cfg: VisionExplainersConfig) -> dict[str, Any]:
    """Heatmaps of every explainer for ``cfg.images`` digits (the shipped sample digit if no
    data); writes rows/, explainers_heatmaps.png and explainers.json under ``cfg.out``."""
    from ..report import plots

    explainers = tuple(cfg.explainers)
    unknown = [e for e in explainers if e not in explainer_names()]
    if unknown or not explainers:
        raise InputError(f"unknown explainers {unknown}; choose from {explainer_names()}")
    adapter = as_image_model(load_adapter(cfg.model, space="pixels", device=cfg.device))
    if adapter is None or not adapter.patch_size:
        raise InputError("vision-explainers needs a patch-based image classifier (ViT family)")
    inputs = _inputs(cfg)
    out = Path(cfg.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    start_or_resume(out, cfg)
    paths = [out / "rows" / f"{name}.json" for name, _, _ in inputs]

    def make(raw: Any, caption: str) -> Callable[[], ImageRow]:
        return lambda: _image_row(adapter, raw, caption, explainers)

    make_rows([(path, make(raw, caption)) for path, (_, caption, raw) in zip(paths, inputs)])
    rows = [load_row(path, ImageRow) for path in paths]
    plots.save_figure(_figure(adapter, inputs, rows, explainers), out / "explainers_heatmaps.png")
    mean_corr = {
        m: float(np.nanmean([r.spearman_vs_simec[m] for r in rows]))
        for m in rows[0].spearman_vs_simec
    }
    result = {
        "model": cfg.model,
        "explainers": list(explainers),
        "mean_spearman_vs_simec": mean_corr,
        "rows": [asdict(r) for r in rows],
        "environment": environment(),
    }
    atomic_write_json(out / "explainers.json", result)
    return result
