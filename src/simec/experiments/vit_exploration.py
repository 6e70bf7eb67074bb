"""The SiMEC paper's "Input space exploration" experiment on a ViT (Section 4).

For each of N images: SiMEC for K steps (time recorded), the perturbation baseline for the same
wall time, and SiMExp for K steps. Counted: informative images (pixel variance >= 0.01, the
paper's threshold) among the decoded SiMEC points and among the baseline's images. Volume
explored (our definition, the paper gives none): over the K+1 explored embedding matrices,
(a) the RMS distance from the start and (b) the log-volume of the trajectory's top-d principal
ellipsoid, sum_{i<=d} log sigma_i of the centred point cloud (d = min(10, K)).

Each image's row is written atomically to ``out/rows/NNNNN.json`` as soon as it is done, so an
interrupted run resumes where it stopped (finished images are never recomputed).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_bytes, atomic_write_json, environment
from ..data import load_idx_dataset
from ..explore import ExploreConfig, explore
from ..explore.perturbation import INFORMATIVE_VARIANCE, perturbation_explore
from ..interpret import ViTDecoder, segment_importance
from ..models import HFImageClassifierAdapter, load_adapter
from . import start_or_resume

__all__ = ["VitExplorationConfig", "run_vit_exploration", "trajectory_volume"]

PAPER = {
    "simec_seconds_per_image": 339.0,
    "hardware": "one NVIDIA A100 (paper)",
    "baseline_informative_mean": 19.0,
    "baseline_informative_std": 13.9,
    "baseline_images_up_to": 36000,
    "simec_informative": 1000,
}


@dataclass
class VitExplorationConfig:
    model: str
    data: str
    out: str
    images: int = 100
    steps: int = 1000
    seed: int = 0
    dataset: str = "mnist"
    split: str = "validation"  # mnist: the model's recorded validation indices
    pca_dims: int = 10
    eta: float = 0.05
    max_step: float | None = ExploreConfig.max_step  # None = the paper's uncapped step
    device: str = "cpu"


def trajectory_volume(trajectory: torch.Tensor, dims: int = 10) -> dict[str, float]:
    """RMS distance from the start and top-``dims`` PCA log-volume of (m, ...) points."""
    pts = trajectory.reshape(trajectory.shape[0], -1).double()
    rms = float(torch.linalg.vector_norm(pts - pts[0], dim=1).pow(2).mean().sqrt())
    centred = pts - pts.mean(0)
    dims = min(dims, pts.shape[0] - 1)  # m points span at most m - 1 dimensions
    s = torch.linalg.svdvals(centred)[:dims]
    log_volume = float(torch.log(s).sum()) if dims > 0 and bool((s > 0).all()) else -math.inf
    return {"rms_distance": rms, "log_volume": log_volume, "volume_dims": dims}


def _images(cfg: VitExplorationConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if cfg.dataset == "mnist":
        data = load_idx_dataset(cfg.data, split="test", kind="mnist")
        split_file = Path(cfg.model) / "split.json"
        if cfg.split == "validation" and split_file.is_file():
            indices = np.array(json.loads(split_file.read_text())["validation_indices"])
        else:
            indices = np.arange(len(data))
    else:
        data = load_idx_dataset(cfg.data, split="test", kind=cfg.dataset)
        indices = np.arange(len(data))
    indices = indices[: cfg.images]
    return data.images[indices], data.labels[indices], indices


def _row(
    adapter: HFImageClassifierAdapter,
    decoder: ViTDecoder,
    image: np.ndarray,
    cfg: VitExplorationConfig,
    seed: int,
) -> dict[str, Any]:
    original = adapter.image(image)
    row: dict[str, Any] = {}
    sim = explore(
        adapter, image, algorithm="simec", steps=cfg.steps, seed=seed, max_step=cfg.max_step
    )
    decoded = decoder.decode_trajectory(
        sim.trajectory[1:], original=original, explored_segments=sim.explored_segments
    )
    variances = decoded.flatten(1).var(dim=1, unbiased=False)
    p0 = int(sim.predicted[0])
    row["simec"] = {
        "seconds": sim.elapsed_seconds,
        "images": len(decoded),
        "informative": int((variances >= INFORMATIVE_VARIANCE).sum()),
        "same_class_walk": sum(1 for c in sim.predicted[1:] if c == p0),
        "same_class_decoded": sum(
            1 for p in sim.trajectory_probabilities[1:] if int(p.argmax()) == p0
        ),
        "surviving_fraction": float(decoder.surviving_fraction(sim.trajectory).mean()),
        "stop_reason": sim.stop_reason,
        **trajectory_volume(sim.trajectory, cfg.pca_dims),
    }
    base = perturbation_explore(
        adapter,
        image,
        steps=None,
        time_budget=sim.elapsed_seconds,
        eta=cfg.eta,
        seed=seed,
        keep_every=10**9,
    )
    row["baseline"] = {
        "seconds": base.elapsed_seconds,
        "images": base.iterations,
        "informative": base.informative,
        "same_class": base.same_label,
    }
    exp = explore(
        adapter, image, algorithm="simexp", steps=cfg.steps, seed=seed, max_step=cfg.max_step
    )
    row["simexp"] = {
        "seconds": exp.elapsed_seconds,
        "same_class_walk": sum(1 for c in exp.predicted[1:] if c == p0),
        "final_class": int(exp.predicted[-1]),
        "p_original_end": float(exp.probabilities[-1, p0]),
        "stop_reason": exp.stop_reason,
        **trajectory_volume(exp.trajectory, cfg.pca_dims),
    }
    row["_walks"] = [sim, exp]
    row["predicted"] = p0
    row["p_original_simec_end"] = float(sim.probabilities[-1, p0])
    row["_figure"] = (
        original,
        decoded[-1],
        decoder.decode_trajectory(
            exp.trajectory[-1:], original=original, explored_segments=exp.explored_segments
        )[0],
        adapter.labels[p0],
        adapter.labels[int(sim.trajectory_probabilities[-1].argmax())],
        adapter.labels[int(exp.trajectory_probabilities[-1].argmax())],
    )
    return row


def _mean_std(values: list[float]) -> str:
    """'mean ± sample std' of the finite values (n/a when there are none)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "n/a"
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return f"{statistics.fmean(finite):.4g} ± {sd:.3g}"


def _time_stats(values: list[float]) -> str:
    """'mean ± std (median m)': wall times on a shared machine have rare, huge outliers."""
    return f"{_mean_std(values)} (median {statistics.median(values):.4g})" if values else "n/a"


def summarize(rows: list[dict[str, Any]], cfg: VitExplorationConfig) -> tuple[str, dict[str, Any]]:
    """Markdown table and JSON aggregate of the per-image rows."""

    def col(alg: str, key: str) -> list[float]:
        return [float(r[alg][key]) for r in rows]

    agg = {
        "images": len(rows),
        "steps": cfg.steps,
        "simec_seconds_per_image": _time_stats(col("simec", "seconds")),
        "simec_informative": _mean_std(col("simec", "informative")),
        "simec_same_class_decoded": _mean_std(col("simec", "same_class_decoded")),
        "baseline_images": _mean_std(col("baseline", "images")),
        "baseline_informative": _mean_std(col("baseline", "informative")),
        "simexp_seconds_per_image": _time_stats(col("simexp", "seconds")),
        "simec_rms_distance": _mean_std(col("simec", "rms_distance")),
        "simexp_rms_distance": _mean_std(col("simexp", "rms_distance")),
        "simec_log_volume": _mean_std(col("simec", "log_volume")),
        "simexp_log_volume": _mean_std(col("simexp", "log_volume")),
        "simexp_changed_class": sum(
            1 for r in rows if r["simexp"]["final_class"] != r["predicted"]
        ),
        "simec_surviving_fraction": _mean_std(col("simec", "surviving_fraction")),
    }
    lines = [
        f"| measure (N={len(rows)} images, K={cfg.steps}) | simec here | paper |",
        "| --- | --- | --- |",
        f"| SiMEC seconds per image | {agg['simec_seconds_per_image']} | 339 (A100) |",
        f"| SiMEC informative decoded images (of {cfg.steps}) | {agg['simec_informative']} | 1000 |",
        f"| SiMEC decoded images still in the original class | {agg['simec_same_class_decoded']} | – |",
        f"| baseline images in the same wall time | {agg['baseline_images']} | up to 36000 |",
        f"| baseline informative images (variance ≥ 0.01) | {agg['baseline_informative']} | 19 ± 13.9 |",
        f"| SiMExp seconds per image | {agg['simexp_seconds_per_image']} | – |",
        f"| RMS distance from start, SiMEC / SiMExp | {agg['simec_rms_distance']} / {agg['simexp_rms_distance']} | – |",
        f"| 10-D PCA log-volume, SiMEC / SiMExp | {agg['simec_log_volume']} / {agg['simexp_log_volume']} | SiMExp ≫ SiMEC |",
        f"| SiMExp runs ending in another class | {agg['simexp_changed_class']} / {len(rows)} | – |",
        f"| fraction of a SiMEC step surviving decoding | {agg['simec_surviving_fraction']} | – |",
    ]
    return "\n".join(lines) + "\n", agg


def run_vit_exploration(cfg: VitExplorationConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the experiment; writes rows/, table.md, results.json, figures and
    viewer.html (the SiMEC and SiMExp walks of the first image explored, side by side)."""
    from ..report import plots
    from ..report.viewer import write_viewer

    out = Path(cfg.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    start_or_resume(out, cfg)
    adapter = load_adapter(cfg.model, device=cfg.device)
    if not isinstance(adapter, HFImageClassifierAdapter):
        raise TypeError("vit-exploration needs an image classifier")
    decoder = ViTDecoder(adapter)
    images, labels, indices = _images(cfg)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(indices), desc="vit-exploration", unit="image")
    figure_rows: list[tuple[np.ndarray, tuple[Any, ...]]] = []
    for image, label, index in zip(images, labels, indices):
        path = out / "rows" / f"{int(index):05d}.json"
        if path.is_file():
            if bar is not None:
                bar.update(1)
            continue
        t0 = time.perf_counter()
        row = _row(adapter, decoder, image, cfg, seed=cfg.seed + int(index))
        figure = row.pop("_figure")
        walks = row.pop("_walks")
        if not figure_rows:  # the viewer: both walks of the first image explored now
            write_viewer(walks, out / "viewer.html", adapter=adapter, inputs=[image] * 2)
        if len(figure_rows) < 2:
            figure_rows.append((image, figure))
        row.update(index=int(index), label=int(label), seconds_total=time.perf_counter() - t0)
        atomic_write_bytes(path, (json.dumps(row, indent=1) + "\n").encode())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    rows = [json.loads(p.read_text()) for p in sorted((out / "rows").glob("*.json"))]
    wanted = {f"{int(i):05d}" for i in indices}
    rows = [r for r in rows if f"{r['index']:05d}" in wanted]
    table, agg = summarize(rows, cfg)
    atomic_write_bytes(out / "table.md", table.encode())
    atomic_write_json(
        out / "results.json",
        {
            "aggregate": agg,
            "paper": PAPER,
            "rows": rows,
            "config": asdict(cfg),
            "environment": environment(),
        },
    )
    for n, (image, (orig, sim_img, exp_img, lab0, lab_sim, lab_exp)) in enumerate(figure_rows):
        imp = segment_importance(adapter, image)
        grid = tuple(s // adapter.patch_size for s in adapter.image_size)
        fig, _ = plots.plot_patch_importance(imp.scores, grid, title=f"predicted {lab0}")  # type: ignore[arg-type]
        plots.save_figure(fig, out / f"figure1_importance_{n}.png")
        fig, _ = plots.plot_image_strip(
            [orig, sim_img, exp_img],
            [f"original ({lab0})", f"SiMEC p_K ({lab_sim})", f"SiMExp p_K ({lab_exp})"],
        )
        plots.save_figure(fig, out / f"figure3_decoded_{n}.png")
    return agg
