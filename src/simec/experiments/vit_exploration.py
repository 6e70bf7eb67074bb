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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_bytes, atomic_write_json, environment
from ..data import load_idx_dataset
from ..errors import InputError, ModelError
from ..explore import ExplorationResult, ExploreConfig, explore
from ..explore.perturbation import INFORMATIVE_VARIANCE, perturbation_explore
from ..interpret import ViTDecoder, classify_pictures, segment_importance
from ..models import HFImageClassifierAdapter, as_image_model, load_adapter
from ..stats import mean_std
from . import start_or_resume
from .rows import load_rows, save_row

__all__ = [
    "BaselineRun",
    "DecodedImages",
    "ImageRow",
    "SimecWalk",
    "SimexpWalk",
    "VitExplorationConfig",
    "decoded_figure",
    "draw_figures",
    "run_vit_exploration",
    "trajectory_volume",
]

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
    model: str = field(metadata={"metavar": "DIR"})
    data: str = field(metadata={"help": "IDX folder of the images", "metavar": "DIR"})
    out: str = field(metadata={"metavar": "DIR"})
    images: int = field(default=100, metadata={"metavar": "N", "min": 1})
    steps: int = field(default=1000, metadata={"metavar": "K", "min": 1})
    seed: int = 0
    dataset: str = field(default="mnist", metadata={"choices": ("mnist", "fashion-mnist")})
    split: str = "validation"  # mnist: the model's recorded validation indices
    pca_dims: int = 10
    eta: float = 0.05
    max_step: float | None = field(  # None = the paper's uncapped step
        default=ExploreConfig.max_step,
        metadata={
            "help": "step cap as a fraction of ||x0|| for both walks; 'none' for the paper's "
            "uncapped step",
            "metavar": "X",
            "gt": 0,
        },
    )
    device: str = "cpu"


@dataclass(frozen=True)
class _Walk:
    """What both walks record: time, why they stopped, volume explored (``trajectory_volume``)."""

    seconds: float
    stop_reason: str
    rms_distance: float
    log_volume: float
    volume_dims: int


@dataclass(frozen=True)
class SimecWalk(_Walk):
    """SiMEC on one image: its K steps decoded to images."""

    images: int  # decoded images (one per step)
    informative: int  # of them with pixel variance >= INFORMATIVE_VARIANCE
    same_class_walk: int  # steps whose embedding keeps the original prediction
    # stored points (the embeddings p_k, k >= 1) the model still gives the original class; the
    # name is older than the distinction, the pictures are ``same_class_picture``
    same_class_decoded: int
    surviving_fraction: float  # mean fraction of a step that survives decoding
    # decoded pictures (k >= 1) the model still gives the original class (None: older rows)
    same_class_picture: int | None = None


@dataclass(frozen=True)
class BaselineRun:
    """The perturbation baseline in SiMEC's wall time."""

    seconds: float
    images: int
    informative: int
    same_class: int


@dataclass(frozen=True)
class SimexpWalk(_Walk):
    """SiMExp on one image."""

    same_class_walk: int
    final_class: int
    p_original_end: float  # probability of the original prediction at step K


@dataclass(frozen=True)
class ImageRow:
    """One image's row (``out/rows/NNNNN.json``)."""

    simec: SimecWalk
    baseline: BaselineRun
    simexp: SimexpWalk
    predicted: int
    p_original_simec_end: float
    index: int  # in the data set's test split
    label: int
    seconds_total: float


@dataclass(frozen=True)
class DecodedImages:
    """What Figure 3 shows for one image (the pictures are not saved in the row): the input,
    the decoded last points p_K of SiMEC and SiMExp, the class of each p_K (``label_*``: the
    model run from the explored embedding) and the class the model gives each decoded picture
    (``picture_*``, with its probability ``p_picture_*``)."""

    original: torch.Tensor
    simec: torch.Tensor  # the decoded SiMEC point p_K
    simexp: torch.Tensor  # the decoded SiMExp point p_K
    label: str  # the prediction on the original
    label_simec: str
    label_simexp: str
    picture_simec: str
    picture_simexp: str
    p_picture_simec: float
    p_picture_simexp: float
    index: int = -1  # in the data set's test split

    def record(self) -> dict[str, Any]:
        """The figure's classes as JSON (``figure3_decoded.json``)."""
        return {
            "index": self.index,
            "original": self.label,
            "simec": {
                "embedding": self.label_simec,
                "picture": self.picture_simec,
                "p_picture": self.p_picture_simec,
            },
            "simexp": {
                "embedding": self.label_simexp,
                "picture": self.picture_simexp,
                "p_picture": self.p_picture_simexp,
            },
        }


def decoded_figure(
    adapter: HFImageClassifierAdapter,
    decoder: ViTDecoder,
    original: torch.Tensor,
    simec: ExplorationResult,
    simexp: ExplorationResult,
    *,
    index: int = -1,
) -> DecodedImages:
    """Figure 3's pictures of one image: the decoded p_K of both walks, classified together."""
    pictures = torch.cat(
        [
            decoder.decode_trajectory(
                run.trajectory[-1:], original=original, explored_segments=run.explored_segments
            )
            for run in (simec, simexp)
        ]
    )
    probs = classify_pictures(adapter, pictures)
    labels = adapter.labels
    return DecodedImages(
        original=original,
        simec=pictures[0],
        simexp=pictures[1],
        label=labels[int(simec.predicted[0])],
        label_simec=labels[int(simec.trajectory_probabilities[-1].argmax())],
        label_simexp=labels[int(simexp.trajectory_probabilities[-1].argmax())],
        picture_simec=labels[int(probs[0].argmax())],
        picture_simexp=labels[int(probs[1].argmax())],
        p_picture_simec=round(float(probs[0].max()), 6),
        p_picture_simexp=round(float(probs[1].max()), 6),
        index=index,
    )


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
    *,
    index: int,
    label: int,
) -> tuple[ImageRow, DecodedImages, list[ExplorationResult]]:
    """One image's row, its Figure 3 images, and the SiMEC and SiMExp runs (for the viewer)."""
    t0 = time.perf_counter()
    seed = cfg.seed + index
    original = adapter.image(image)
    sim = _walk(adapter, image, cfg, "simec", seed)
    decoded = decoder.decode_trajectory(
        sim.trajectory[1:], original=original, explored_segments=sim.explored_segments
    )
    variances = decoded.flatten(1).var(dim=1, unbiased=False)
    p0 = int(sim.predicted[0])
    picture_classes = classify_pictures(adapter, decoded).argmax(1)
    simec = SimecWalk(
        seconds=sim.elapsed_seconds,
        images=len(decoded),
        informative=int((variances >= INFORMATIVE_VARIANCE).sum()),
        same_class_walk=sum(1 for c in sim.predicted[1:] if c == p0),
        same_class_decoded=sum(
            1 for p in sim.trajectory_probabilities[1:] if int(p.argmax()) == p0
        ),
        surviving_fraction=float(decoder.surviving_fraction(sim.trajectory).mean()),
        same_class_picture=int((picture_classes == p0).sum()),
        stop_reason=sim.stop_reason,
        **trajectory_volume(sim.trajectory, cfg.pca_dims),  # type: ignore[arg-type]
    )
    base = perturbation_explore(
        adapter,
        image,
        steps=None,
        time_budget=sim.elapsed_seconds,
        eta=cfg.eta,
        seed=seed,
        keep_every=10**9,
    )
    baseline = BaselineRun(
        seconds=base.elapsed_seconds,
        images=base.iterations,
        informative=base.informative,
        same_class=base.same_label,
    )
    exp = _walk(adapter, image, cfg, "simexp", seed)
    simexp = SimexpWalk(
        seconds=exp.elapsed_seconds,
        same_class_walk=sum(1 for c in exp.predicted[1:] if c == p0),
        final_class=int(exp.predicted[-1]),
        p_original_end=float(exp.probabilities[-1, p0]),
        stop_reason=exp.stop_reason,
        **trajectory_volume(exp.trajectory, cfg.pca_dims),  # type: ignore[arg-type]
    )
    figure = decoded_figure(adapter, decoder, original, sim, exp, index=index)
    row = ImageRow(
        simec=simec,
        baseline=baseline,
        simexp=simexp,
        predicted=p0,
        p_original_simec_end=float(sim.probabilities[-1, p0]),
        index=index,
        label=label,
        seconds_total=time.perf_counter() - t0,
    )
    return row, figure, [sim, exp]


def _time_stats(values: list[float]) -> str:
    """'mean ± std (median m)': wall times on a shared machine have rare, huge outliers."""
    return (
        f"{mean_std(values).text()} (median {statistics.median(values):.4g})" if values else "n/a"
    )


def summarize(rows: list[ImageRow], cfg: VitExplorationConfig) -> tuple[str, dict[str, Any]]:
    """Markdown table and JSON aggregate of the per-image rows."""

    def col(alg: str, key: str) -> list[float]:
        return [float(getattr(getattr(r, alg), key)) for r in rows]

    def stat(alg: str, key: str) -> str:
        return mean_std(col(alg, key)).text()

    pictures = [r.simec.same_class_picture for r in rows]
    picture = (
        mean_std([float(v) for v in pictures]).text()  # type: ignore[arg-type]
        if pictures and all(v is not None for v in pictures)
        else "n/a (rows written before pictures were classified)"
    )
    agg = {
        "images": len(rows),
        "steps": cfg.steps,
        "simec_seconds_per_image": _time_stats(col("simec", "seconds")),
        "simec_informative": stat("simec", "informative"),
        "simec_same_class_decoded": stat("simec", "same_class_decoded"),
        "simec_same_class_picture": picture,
        "baseline_images": stat("baseline", "images"),
        "baseline_informative": stat("baseline", "informative"),
        "simexp_seconds_per_image": _time_stats(col("simexp", "seconds")),
        "simec_rms_distance": stat("simec", "rms_distance"),
        "simexp_rms_distance": stat("simexp", "rms_distance"),
        "simec_log_volume": stat("simec", "log_volume"),
        "simexp_log_volume": stat("simexp", "log_volume"),
        "simexp_changed_class": sum(1 for r in rows if r.simexp.final_class != r.predicted),
        "simec_surviving_fraction": stat("simec", "surviving_fraction"),
    }
    lines = [
        f"| measure (N={len(rows)} images, K={cfg.steps}) | simec here | paper |",
        "| --- | --- | --- |",
        f"| SiMEC seconds per image | {agg['simec_seconds_per_image']} | 339 (A100) |",
        f"| SiMEC informative decoded images (of {cfg.steps}) | {agg['simec_informative']} | 1000 |",
        f"| SiMEC points (embeddings) still in the original class | {agg['simec_same_class_decoded']} | – |",
        f"| SiMEC decoded pictures the model gives the original class | {agg['simec_same_class_picture']} | – |",
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
    from ..report.viewer import write_viewer

    out = Path(cfg.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    start_or_resume(out, cfg)
    adapter = as_image_model(load_adapter(cfg.model, device=cfg.device))
    if adapter is None:
        raise TypeError("vit-exploration needs an image classifier")
    decoder = ViTDecoder(adapter)
    images, labels, indices = _images(cfg)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(indices), desc="vit-exploration", unit="image")
    figures: list[tuple[np.ndarray, DecodedImages]] = []
    for image, label, index in zip(images, labels, indices):
        path = out / "rows" / f"{int(index):05d}.json"
        if not path.is_file():
            row, figure, walks = _row(
                adapter, decoder, image, cfg, index=int(index), label=int(label)
            )
            if not (out / "viewer.html").is_file():  # the first image explored: both walks
                write_viewer(walks, out / "viewer.html", adapter=adapter, inputs=[image] * 2)
            if len(figures) < 2:
                figures.append((image, figure))
            save_row(path, row, indent=1)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    wanted = {int(i) for i in indices}
    rows = [r for r in load_rows(out / "rows", ImageRow) if r.index in wanted]
    table, agg = summarize(rows, cfg)
    atomic_write_bytes(out / "table.md", table.encode())
    atomic_write_json(
        out / "results.json",
        {
            "aggregate": agg,
            "paper": PAPER,
            "rows": [asdict(r) for r in rows],
            "config": asdict(cfg),
            "environment": environment(),
        },
    )
    if figures:
        _draw_figures(out, adapter, figures)
    return agg


def _draw_figures(
    out: Path, adapter: HFImageClassifierAdapter, figures: list[tuple[np.ndarray, DecodedImages]]
) -> list[dict[str, Any]]:
    """figure1_importance_<n>.png, figure3_decoded_<n>.png (each decoded picture captioned
    with its embedding's class and its own) and figure3_decoded.json (those classes)."""
    from ..report import plots

    records = []
    for n, (image, fig3) in enumerate(figures):
        imp = segment_importance(adapter, image)
        fig, _ = plots.plot_patch_importance(
            imp.scores, adapter.patch_grid, title=f"predicted {fig3.label}"
        )
        plots.save_figure(fig, out / f"figure1_importance_{n}.png")
        fig, _ = plots.plot_decoded_strip(
            [fig3.original, fig3.simec, fig3.simexp],
            [fig3.label, fig3.picture_simec, fig3.picture_simexp],
            embedding_labels=[None, fig3.label_simec, fig3.label_simexp],
            headers=["original", "SiMEC p_K", "SiMExp p_K"],
        )
        plots.save_figure(fig, out / f"figure3_decoded_{n}.png")
        records.append({"figure": f"figure3_decoded_{n}.png", **fig3.record()})
    atomic_write_json(out / "figure3_decoded.json", records)
    return records


def _walk(
    adapter: HFImageClassifierAdapter,
    image: Any,
    cfg: VitExplorationConfig,
    algorithm: str,
    seed: int,
    *,
    progress: bool = False,
) -> ExplorationResult:
    """One walk of a row (SiMEC or SiMExp), with the experiment's settings: the rows and
    ``draw_figures`` run the same walks."""
    return explore(
        adapter,
        image,
        algorithm=algorithm,
        steps=cfg.steps,
        seed=seed,
        max_step=cfg.max_step,
        progress=progress,
    )


def draw_figures(
    cfg: VitExplorationConfig, *, count: int = 2, progress: bool = False
) -> list[dict[str, Any]]:
    """Redraw Figures 1 and 3 of an experiment for its first ``count`` images: their SiMEC and
    SiMExp walks are run again (same seeds and settings as their rows; no baseline), decoded
    and classified. Returns the figure records (also in ``cfg.out/figure3_decoded.json``)."""
    if count < 1:
        raise InputError(f"count must be at least 1, got {count}")
    adapter = as_image_model(load_adapter(cfg.model, device=cfg.device))
    if adapter is None:
        raise ModelError("vit-exploration needs an image classifier")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    decoder = ViTDecoder(adapter)
    images, _, indices = _images(cfg)
    figures = []
    for image, index in list(zip(images, indices))[:count]:
        walks = [
            _walk(adapter, image, cfg, algorithm, cfg.seed + int(index), progress=progress)
            for algorithm in ("simec", "simexp")
        ]
        original = adapter.image(image)
        figures.append(
            (image, decoded_figure(adapter, decoder, original, *walks, index=int(index)))
        )
    return _draw_figures(out, adapter, figures)
