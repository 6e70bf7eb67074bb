"""``simec demo``: the whole vision pipeline on the shipped MNIST ViT, no data or network needed.

Patch importance (Algorithm 3), SiMEC and SiMExp walks (Algorithms 1, 2, 4), decoding of the
explored embeddings back into images (Algorithm 5) and the original class' probability along
both walks, gathered in ``report.html`` with its PNG figures.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_json, environment
from .errors import InputError
from .explore import ExplorationResult, explore
from .fields import option
from .interpret import ViTDecoder, classify_pictures, segment_importance
from .models import as_image_model, load_adapter
from .models.cache import resolve_model_path
from .models.hf_vision import HFImageClassifierAdapter
from .report import plots
from .report.html import Report
from .report.viewer import write_viewer

__all__ = ["decoded_pictures", "run_demo", "shipped_model", "sample_digit"]


def shipped_model(name: str = "vit-mnist") -> Path:
    """Directory of a model shipped inside the package (``vit-mnist``, ``vit-fashion-mnist``)."""
    path = Path(str(resources.files("simec") / "assets" / name))
    if not (path / "config.json").is_file():
        raise InputError(f"no shipped model {name!r} in {path}")
    return path


def sample_digit() -> np.ndarray:
    """The shipped sample digit (28 x 28 uint8, from the MNIST validation indices)."""
    return np.load(Path(str(resources.files("simec") / "assets" / "sample_digit.npy")))


_DATASETS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "digits": "scikit-learn digits"}


def describe_model(adapter: HFImageClassifierAdapter, model_dir: Path) -> str:
    """``"a 4-layer ViT trained on MNIST"``, from the model itself: its class, its number of
    layers, and the data set recorded by ``simec train vit`` (if any)."""
    name = type(adapter.model).__name__.removesuffix("ForImageClassification")
    layers = getattr(adapter.model.config, "num_hidden_layers", None)
    text = f"a {layers}-layer {name}" if isinstance(layers, int) else f"a {name}"
    try:
        log = json.loads((model_dir / "training_log.json").read_text())
        dataset = log["config"]["dataset"]
        text += f" trained on {_DATASETS.get(dataset, dataset)}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return text


def decoded_pictures(
    result: ExplorationResult, images: Any, picture_probabilities: Any
) -> dict[str, list[Any]]:
    """What a figure of ``result``'s decoded points shows under each picture, as JSON: the
    stored ``steps``, the class of each stored point (``embedding_class``: the model run from the
    explored embedding) and the class the model gives its decoded picture (``picture_class``,
    ``picture_probability``: from ``picture_probabilities`` (m, q), one row per picture)."""
    probs = np.asarray(picture_probabilities, dtype=np.float64)
    if len(probs) != len(result.trajectory_steps) or len(images) != len(probs):
        raise InputError(
            f"{len(result.trajectory_steps)} stored points, {len(images)} pictures and "
            f"{len(probs)} picture classifications"
        )
    return {
        "steps": [int(k) for k in result.trajectory_steps],
        "embedding_class": [int(p.argmax()) for p in result.trajectory_probabilities],
        "picture_class": [int(c) for c in probs.argmax(1)],
        "picture_probability": [round(float(p), 6) for p in probs.max(1)],
    }


def _origin(model_dir: Path) -> str:
    shipped = Path(str(resources.files("simec") / "assets")).resolve()
    return "shipped with simec" if model_dir.resolve().parent == shipped else str(model_dir)


@dataclass
class DemoConfig:
    """Options of ``simec demo``."""

    out: str = option("simec-demo", "folder for the report", metavar="DIR")
    steps: int = option(300, "iterations of each walk", min=0)
    seed: int = 0
    device: str = "cpu"
    model: str | None = option(
        None, "another image classifier directory instead of the shipped one", metavar="DIR"
    )
    image: str | None = option(
        None, "another image (PNG/.npy) instead of the shipped digit", metavar="FILE"
    )


def run_demo(
    config: DemoConfig | str | Path,
    *,
    frames: int = 6,
    progress: bool = True,
    **options: Any,
) -> Path:
    """Run the demo and write ``report.html`` (and ``viewer.html``) into the folder ``config``
    (or ``config.out``); ``options`` are other :class:`DemoConfig` fields (``image`` may also
    be an array). Returns the report's path."""
    cfg = replace(
        config if isinstance(config, DemoConfig) else DemoConfig(out=str(config)), **options
    )
    out_dir, steps, seed, device = cfg.out, cfg.steps, cfg.seed, cfg.device
    model: Any = cfg.model
    image: Any = cfg.image
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = resolve_model_path(model) if model else shipped_model()
    adapter = as_image_model(load_adapter(model_dir, device=device))
    if adapter is None or not adapter.patch_size:
        raise InputError("the demo needs a patch-based image classifier (ViT family)")
    raw = sample_digit() if image is None else image  # paths are read by the adapter
    original = adapter.image(raw)
    tokens, width = adapter.prepare(raw).embeddings.shape
    # the patch projection maps p x p x channels pixels to `width` dimensions: its range
    surviving_dims = min(adapter.patch_size**2 * adapter.num_channels, width)
    what = "one MNIST digit" if image is None else "one image"
    grid = adapter.patch_grid

    importance = segment_importance(adapter, raw)
    labels = importance.labels
    top = importance.predicted
    fig, _ = plots.plot_image(original, title=f"input: predicted {labels[top]!r}")
    plots.save_figure(fig, out / "input.png")
    fig, _ = plots.plot_patch_importance(
        importance.scores, grid, title="patch importance (max eigenvalue)"
    )
    plots.save_figure(fig, out / "importance.png")
    fig, _ = plots.plot_patch_importance(
        importance.scores, grid, image=original, title="importance over the input"
    )
    plots.save_figure(fig, out / "importance_overlay.png")

    pixel_adapter = adapter.with_space("pixels")
    decoders = {"embeddings": ViTDecoder(adapter), "pixels": ViTDecoder(pixel_adapter)}
    record_every = max(1, steps // frames)
    runs = {}
    pictures: dict[str, dict[str, list[Any]]] = {}
    walks = (
        ("simec", "simec", adapter),
        ("simexp", "simexp", adapter),
        ("simec-pixels", "simec", pixel_adapter),
    )
    for name, algorithm, walker in walks:
        result = explore(
            walker,
            raw,
            algorithm=algorithm,
            steps=steps,
            seed=seed,
            record_every=record_every,
            progress=progress,
        )
        result.save(out / name)
        decoder = decoders["pixels" if walker is pixel_adapter else "embeddings"]
        images = decoder.decode_trajectory(
            result.trajectory, original=original, explored_segments=result.explored_segments
        )
        pictures[name] = decoded_pictures(result, images, classify_pictures(adapter, images))
        fig, _ = plots.plot_decoded_strip(
            list(images),
            [labels[c] for c in pictures[name]["picture_class"]],
            embedding_labels=[labels[c] for c in pictures[name]["embedding_class"]],
            headers=[f"k={k}" for k in result.trajectory_steps],
            title=f"{name}: decoded points p_k, the class of p_k and of its picture",
        )
        plots.save_figure(fig, out / f"{name}_decoded.png")
        runs[name] = (result, decoder.surviving_fraction(result.trajectory))

    write_viewer(  # simec view of the three walks, side by side with one slider
        [res for res, _ in runs.values()],  # the results in memory, not re-read from disk
        out / "viewer.html",
        adapter=adapter,
        inputs=[raw] * 3,
        names=list(runs),
        titles=["SiMEC, embeddings", "SiMExp, embeddings", "SiMEC, pixels"],
    )
    fig, _ = plots.plot_probability_traces(
        {alg: res.probabilities[:, top].tolist() for alg, (res, _) in runs.items()},
        ylabel=f"p({labels[top]})",
        title="probability of the original class along the walk",
    )
    plots.save_figure(fig, out / "probability.png")

    description = describe_model(adapter, model_dir)
    report = Report(f"simec demo: how {description} sees {what}")
    report.paragraph(
        f"{description[0].upper()}{description[1:]} ({_origin(model_dir)}) looks at {what}. "
        "simec pulls the metric of "
        f"the class probabilities back onto the {tokens} x {width} input embeddings and walks "
        "inside the input's equivalence class (SiMEC) and across classes (SiMExp)."
    )
    report.link("viewer.html", "Scrub through the three walks: the interactive viewer")
    report.heading("Input and patch importance (Algorithm 3)")
    report.image("input.png", "input digit")
    report.image("importance.png", "patch importance heatmap")
    report.image("importance_overlay.png", "importance over the input")
    ranking = [(name, f"{score:.3g}") for name, score in importance.ranking()[:5]]
    report.table(["most sensitive segment", "max eigenvalue"], [list(r) for r in ranking])
    report.paragraph(
        "Brighter patches are those whose embedding moves the prediction most: the largest "
        "eigenvalue of the pullback metric restricted to that patch.",
        note=True,
    )
    rows = []
    titles = {
        "simec": "SiMEC in the embedding space, decoded (Algorithms 1, 4, 5)",
        "simexp": "SiMExp in the embedding space, decoded (Algorithms 2, 4, 5)",
        "simec-pixels": "SiMEC in the pixel space: every point is an image, nothing lost",
    }
    for algorithm, (res, surviving) in runs.items():
        report.heading(titles[algorithm])
        report.image(f"{algorithm}_decoded.png", f"{algorithm} decoded trajectory")
        p0, pk = float(res.probabilities[0, top]), float(res.probabilities[-1, top])
        rows.append(
            [
                algorithm,
                res.steps_completed,
                f"{1000 * res.elapsed_seconds / max(1, res.steps_completed):.1f}",
                f"{p0:.4f}",
                f"{pk:.4f}",
                labels[res.predicted[-1]],
                f"{float(surviving.mean()) if len(surviving) else 1.0:.3f}",
                res.stop_reason,
            ]
        )
    report.paragraph(
        "Under each decoded picture: the class the model gives the explored point p_k "
        "(embedding) and the class it gives the decoded picture itself (picture); red where "
        "they differ. Both are in demo.json (decoded_pictures).",
        note=True,
    )
    report.heading("Summary")
    report.table(
        [
            "algorithm",
            "steps",
            "ms/step",
            f"p({labels[top]}) start",
            "end",
            "predicted at end",
            "step fraction surviving decoding",
            "stop",
        ],
        rows,
    )
    report.image("probability.png", "probability of the original class")
    report.paragraph(
        "SiMEC keeps the probability (it moves along null directions of the pullback metric); "
        "SiMExp changes it. Decoding removes position embeddings and CLS, inverts the patch "
        "projection by its pseudo-inverse and caps pixels to [0, 1]; only the part of each "
        "embedding-space step inside the range of the patch projection "
        f"({surviving_dims} of {width} dimensions per patch) survives (the fraction above). "
        "Exploring the pixels directly loses nothing: "
        "the patch embedding is linear, so every point of that walk is an image.",
        note=True,
    )
    elapsed = time.perf_counter() - t_start
    record = {
        "steps": steps,
        "seed": seed,
        "device": device,
        "model": str(model or "shipped vit-mnist"),
        "model_description": description,
        "elapsed_seconds": elapsed,
    }
    report.details(
        "configuration and environment", {"config": record, "environment": environment()}
    )
    atomic_write_json(
        out / "demo.json",
        {
            "config": record,
            "environment": environment(),
            "importance": importance.scores.tolist(),
            "summary": rows,
            "decoded_pictures": pictures,
        },
    )
    return report.write(out / "report.html")
