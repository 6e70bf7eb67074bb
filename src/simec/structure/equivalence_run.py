"""``simec equivalence``: are two inputs the same to the model? Bounds, curve, files.

``compare_pair`` adds to ``equivalence_bounds`` the guided SiMEC walks A -> B and B -> A
(``simec.explore.guided``): their closest approach is reported, and their paths are extra
starting curves of the upper bound. ``reference_pairs`` draws random pairs of one predicted
class from an image data set (a null distribution: are A, B unusually close for this model?).
``save_equivalence`` writes summary.json, curve.safetensors, equivalence.png, and the curve as
a run folder that ``simec view`` shows (curve/, viewer.html).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save

from .._io import atomic_write_bytes, atomic_write_json, environment
from ..errors import InputError
from ..explore.guided import walk_toward
from ..models.base import ModelAdapter, PreparedInput
from .equivalence import EquivalenceConfig, EquivalenceResult, compare_inputs

__all__ = ["compare_pair", "reference_pairs", "save_equivalence"]


def compare_pair(
    adapter: ModelAdapter,
    a: Any,
    b: Any,
    config: EquivalenceConfig | None = None,
    *,
    guided_steps: int = 50,
    max_step: float | None = 0.02,
) -> EquivalenceResult:
    """Bounds on Pd(a, b) (raw inputs), with the guided walks a -> b and b -> a as extra
    starting curves (``guided_steps`` steps each; 0: straight line only)."""
    cfg = (config or EquivalenceConfig()).validate()
    t0 = time.perf_counter()
    curves: dict[str, torch.Tensor] = {}
    extras: dict[str, Any] = {}
    pa, pb = adapter.prepare(a), adapter.prepare(b)  # once: the walks and bounds reuse them
    xb = pb.embeddings
    if guided_steps > 0 and not torch.equal(pa.embeddings, xb):
        for name, start, goal, flip in (("guided A->B", a, b, False), ("guided B->A", b, a, True)):
            walk = walk_toward(
                adapter,
                start,
                goal,
                steps=guided_steps,
                max_step=max_step,
                output_metric=cfg.output_metric,
                seed=cfg.seed,
            )
            points = walk.trajectory.to(xb)
            curves[name] = points.flip(0) if flip else points
            extras[name] = {
                "closest_approach": min(walk.remaining_distance),
                "final_distance": walk.remaining_distance[-1],
                "steps": walk.steps_completed,
                "stop_reason": walk.stop_reason,
                "drift_max": max(walk.drift),
            }
    result = compare_inputs(adapter, pa, pb, cfg, curves=curves)
    extras["guided_seconds"] = time.perf_counter() - t0 - result.seconds
    return _with_extras(result, extras)


def _with_extras(result: EquivalenceResult, extras: dict[str, Any]) -> EquivalenceResult:
    from dataclasses import replace

    return replace(result, extras={**result.extras, **extras})


def reference_pairs(
    adapter: ModelAdapter, images: np.ndarray, count: int, *, seed: int = 0
) -> list[tuple[int, int]]:
    """``count`` random pairs (i, j), i != j, of images the model puts in one class."""
    if count < 1:
        raise InputError("--reference needs a positive number of pairs")
    probs = adapter.classify(list(images))
    predicted = probs.argmax(-1).cpu().numpy()
    rng = np.random.default_rng(seed)
    pairs: list[tuple[int, int]] = []
    classes = [c for c in np.unique(predicted) if (predicted == c).sum() >= 2]
    if not classes:
        raise InputError("the data set has no two images of one predicted class")
    while len(pairs) < count:
        c = rng.choice(classes)
        i, j = rng.choice(np.flatnonzero(predicted == c), 2, replace=False)
        pairs.append((int(i), int(j)))
    return pairs


def save_equivalence(
    result: EquivalenceResult,
    out: str | Path,
    adapter: ModelAdapter,
    prepared: PreparedInput,
    *,
    inputs: tuple[str, str],
    reference: list[dict[str, Any]] | None = None,
) -> Path:
    """summary.json, curve.safetensors, equivalence.png (outputs and decoded inputs along the
    curve), curve/ (the curve as a run) and viewer.html. ``prepared``: A's prepared input."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {
        **result.summary(),
        "inputs": list(inputs),
        "model": adapter.describe(),
        "labels": list(adapter.labels),
        "environment": environment(),
        "decoded_curve": _decoded_text(result, adapter, prepared),
    }
    if reference is not None:
        uppers = [r["upper_bound"] for r in reference]
        summary["reference"] = {
            "pairs": reference,
            "upper_bound_quantile_of_this_pair": float(
                np.mean([u <= result.upper_bound for u in uppers])
            ),
        }
    tensors = {"curve": result.curve.cpu().contiguous(), "outputs": result.curve_outputs.cpu()}
    atomic_write_bytes(folder / "curve.safetensors", save(tensors))
    frames = _decoded_images(result, adapter)
    if frames:
        summary["decoded_pictures"] = [
            {k: v for k, v in frame.items() if k != "image"} for frame in frames
        ]
    atomic_write_json(folder / "summary.json", summary)
    _plot(result, adapter, folder / "equivalence.png", frames)
    _curve_run(result, adapter, prepared, inputs).save(folder / "curve")
    try:
        from ..report.viewer import write_viewer

        write_viewer(folder / "curve", folder / "viewer.html", adapter=adapter)
    except Exception as exc:  # the viewer is a convenience: never lose the results for it
        atomic_write_json(folder / "viewer-error.json", {"error": f"{type(exc).__name__}: {exc}"})
    return folder


def _curve_run(
    result: EquivalenceResult,
    adapter: ModelAdapter,
    prepared: PreparedInput,
    inputs: tuple[str, str],
) -> Any:
    """The curve as an ``ExplorationResult`` (each point a step), for ``simec view``."""
    from ..explore import ExplorationResult, ExploreConfig, batched_logits

    logits = batched_logits(adapter, prepared, result.curve.to(prepared.embeddings))
    probs = torch.softmax(logits, -1).cpu()
    n = len(result.curve)
    return ExplorationResult(
        config=ExploreConfig(steps=n - 1, projection="none", extra={"equivalence_curve": True}),
        probabilities=probs,
        lambda_max=[],
        step_sizes=[],
        ranks=[],
        drift=[
            float(torch.linalg.vector_norm(y - result.curve_outputs[0]))
            for y in result.curve_outputs
        ],
        trajectory=result.curve.cpu(),
        trajectory_steps=list(range(n)),
        trajectory_probabilities=probs,
        stop_reason=f"equivalence curve ({result.best_curve}); verdict: {result.verdict}",
        elapsed_seconds=result.seconds,
        segment_names=prepared.segment_names,
        explored_segments=list(range(result.curve.shape[1])),
        labels=list(adapter.labels),
        input_description=f"{inputs[0]} -> {inputs[1]}",
        model=adapter.describe(),
    )


def _decoded_text(
    result: EquivalenceResult, adapter: ModelAdapter, prepared: PreparedInput
) -> list[str] | None:
    """Text models: the nearest real tokens at every point of the curve."""
    from ..models.hf_text import HFSequenceClassifierAdapter

    if not isinstance(adapter, HFSequenceClassifierAdapter):
        return None
    from ..interpret.decode_text import NearestTokenDecoder

    decoded = NearestTokenDecoder(adapter).decode(result.curve, prepared)
    return [
        adapter.tokenizer.decode(ids.tolist(), skip_special_tokens=True)
        for ids in decoded.ids[:, 0]
    ]


def _decoded_images(
    result: EquivalenceResult, adapter: ModelAdapter, count: int = 6
) -> list[dict[str, Any]]:
    """Vision models: ``count`` points of the curve decoded into pictures, each with the class
    of its point (``embedding``) and the class the model gives the picture (``picture``)."""
    from ..models.hf_vision import HFImageClassifierAdapter

    if not isinstance(adapter, HFImageClassifierAdapter):
        return []
    from ..interpret.decode_image import ViTDecoder, classify_pictures

    picks = np.unique(np.linspace(0, len(result.curve) - 1, count).round().astype(int))
    images = ViTDecoder(adapter).decode_trajectory(result.curve[picks])
    labels = list(adapter.labels)
    pictures = classify_pictures(adapter, images).argmax(-1).tolist()
    points = result.curve_outputs[picks].argmax(-1).tolist()
    return [
        {"point": int(i), "image": img, "embedding": labels[e], "picture": labels[p]}
        for i, img, e, p in zip(picks, images, points, pictures)
    ]


def _plot(
    result: EquivalenceResult, adapter: ModelAdapter, path: Path, frames: list[dict[str, Any]]
) -> None:
    from ..report import plots

    fig = plots.figure((9.0, 5.6 if frames else 3.4))
    grid = fig.add_gridspec(
        2 if frames else 1, max(len(frames), 1), height_ratios=([2.2, 1.2] if frames else [1])
    )
    ax = fig.add_subplot(grid[0, :])
    title = f"{result.verdict}: {result.lower_bound:.3g} <= Pd <= {result.upper_bound:.3g}"
    plots.plot_curve_outputs(result.curve_outputs, list(adapter.labels), ax=ax, title=title)
    for n, frame in enumerate(frames):
        # the class of the point on the curve and the one the model gives its decoded picture
        plots.plot_decoded_picture(
            frame["image"],
            frame["picture"],
            frame["embedding"],
            header=f"point {frame['point']}",
            ax=fig.add_subplot(grid[1, n]),
            fontsize=6,
        )
    fig.tight_layout()
    plots.save_figure(fig, path)
