"""``simec equivalence``: are two inputs the same to the model? Bounds, curve, files.

``compare_pair`` adds to ``equivalence_bounds`` the guided SiMEC walks A -> B and B -> A
(``simec.explore.guided``, run together as one batch: ``walk_toward_batch``): their closest
approach is reported, and their paths are extra starting curves of the upper bound. Each walk
runs until its projected distance vanishes or
it stops getting closer (``GUIDED_STEPS`` at most: enough to go a third of the way round a sphere at
the default step cap). A walk that cannot start (a critical point of the model: rank-zero
metric) is recorded with its reason and the other curves decide; a walk that makes no progress
at all (a symmetric start: the target's direction has no null-space part) is run again toward
targets moved off B by a seeded random 5% of ||B - A||. ``reference_pairs`` draws random pairs
of one predicted class from an image data set (a null distribution: are A, B unusually close
for this model?).
``save_equivalence`` writes summary.json, curve.safetensors, equivalence.png, and the curve as
a run folder that ``simec view`` shows (curve/, viewer.html).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save

from .._io import atomic_write_bytes, atomic_write_json, environment
from ..errors import InputError
from ..explore.guided import walk_toward_batch
from ..fields import option
from ..models.base import ModelAdapter, PreparedInput
from ..models.capabilities import as_image_model, as_text_model
from .equivalence import EquivalenceConfig, EquivalenceResult, compare_inputs

__all__ = [
    "GUIDED_PATIENCE",
    "GUIDED_STEPS",
    "PairOptions",
    "compare_pair",
    "reference_pairs",
    "save_equivalence",
]

#: most steps of each guided walk (it stops earlier when its projected distance vanishes or
#: it stops getting closer): a third of the way round a sphere takes ~105 steps at max_step 0.02
GUIDED_STEPS = 500
#: steps without a new least remaining distance after which a guided walk stops
GUIDED_PATIENCE = 10


@dataclass(frozen=True)
class PairOptions:
    """``simec equivalence``'s options beside :class:`EquivalenceConfig`: the guided walks'
    length (``compare_pair``'s default) and the reference pairs."""

    guided_steps: int = option(
        GUIDED_STEPS,
        "most steps of each guided SiMEC walk (A->B, B->A) used as a starting curve; it stops "
        "earlier when it cannot get closer or the time budget is spent; 0: no walks",
        metavar="K",
        min=0,
    )
    reference: int = option(
        0,
        "also bound K random pairs of one predicted class drawn from --data (a null "
        "distribution; image data sets) (default: none)",
        metavar="K",
        min=0,
    )
    data: str | None = option(
        None, "IDX image folder for --reference (MNIST layout)", metavar="DIR"
    )


def compare_pair(
    adapter: ModelAdapter,
    a: Any,
    b: Any,
    config: EquivalenceConfig | None = None,
    *,
    guided_steps: int = GUIDED_STEPS,
    max_step: float | None = 0.02,
    patience: int = GUIDED_PATIENCE,
    perturbed_walks: int = 1,
) -> EquivalenceResult:
    """Bounds on Pd(a, b) (raw inputs), with the guided walks a -> b and b -> a as extra
    starting curves (``guided_steps`` steps at most each; 0: no walks), and
    ``perturbed_walks`` walks toward perturbed targets for a walk that made no progress. All
    within ``config.budget_seconds`` (the guided walks a quarter of it each at most; walks run
    together as one batch share their clock: two of them half of it)."""
    cfg = (config or EquivalenceConfig()).validate()
    t0 = time.perf_counter()
    budget = cfg.budget_seconds or None
    deadline = t0 + budget if budget else None
    curves: dict[str, torch.Tensor] = {}
    extras: dict[str, Any] = {}
    pa, pb = adapter.prepare(a), adapter.prepare(b)  # once: the walks and bounds reuse them
    xa, xb = pa.embeddings, pb.embeddings
    options = {
        "steps": guided_steps,
        "max_step": max_step,
        "output_metric": cfg.output_metric,
        "seed": cfg.seed,
        "patience": patience,
    }
    if guided_steps > 0 and not torch.equal(xa, xb):
        walks: Walks = [("guided A->B", a, xb, False), ("guided B->A", b, xa, True)]
        generator = torch.Generator().manual_seed(cfg.seed)
        curves, extras = _guided_curves(adapter, walks, xb, budget, options)
        again = _perturbed(walks, curves, extras, xb - xa, perturbed_walks, generator)
        more_curves, more = _guided_curves(adapter, again, xb, budget, options)
        curves, extras = _in_order(walks, {**curves, **more_curves}, {**extras, **more})
    result = compare_inputs(adapter, pa, pb, cfg, curves=curves, deadline=deadline)
    extras["guided_seconds"] = time.perf_counter() - t0 - result.seconds
    return _with_extras(result, extras)


Walks = list[tuple[str, Any, torch.Tensor, bool]]  # (name, start, target, reversed)


def _guided_curves(
    adapter: ModelAdapter,
    walks: Walks,
    like: torch.Tensor,
    budget: float | None,
    options: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The guided walks run together (``walk_toward_batch``): their paths as curves from A to
    B and their summaries (a walk that cannot start, at a critical point, has no curve)."""
    if not walks:
        return {}, {}
    seconds = budget / 4 * len(walks) if budget else None
    pairs = [(start, target) for _, start, target, _ in walks]
    found = walk_toward_batch(adapter, pairs, max_seconds=seconds, skip_critical=True, **options)
    curves, extras = {}, {}
    for (name, _, _, flip), walk in zip(walks, found):
        extras[name] = _walk_summary(walk)
        if walk is not None:
            curves[name] = _oriented(walk, like, flip)
    return curves, extras


def _perturbed(
    walks: Walks,
    curves: dict[str, torch.Tensor],
    extras: dict[str, Any],
    span: torch.Tensor,
    count: int,
    generator: torch.Generator,
) -> Walks:
    """``count`` walks toward targets moved by a seeded 5% of ||span|| = ||B - A|| for each
    walk that made no progress at all (a symmetric start; not one that could not start)."""
    again = []
    for name, start, goal, flip in walks:
        if name not in curves or extras[name]["closest_approach"] < 1.0 - 1e-9:
            continue
        for k in range(count):
            noise = torch.randn(goal.shape, generator=generator, dtype=goal.dtype)
            noise = noise.to(goal) * (0.05 * float(span.norm()) / float(noise.norm()))
            again.append((f"{name} perturbed {k + 1}", start, goal + noise, flip))
    return again


def _in_order(
    walks: Walks, curves: dict[str, torch.Tensor], extras: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Each walk followed by its perturbed walks (the order the curves are tried in)."""
    names = [k for name, *_ in walks for k in extras if k == name or k.startswith(name + " ")]
    return {k: curves[k] for k in names if k in curves}, {k: extras[k] for k in names}


def _oriented(walk: Any, like: torch.Tensor, flip: bool) -> torch.Tensor:
    points = walk.trajectory.to(like)
    return points.flip(0) if flip else points


def _walk_summary(walk: Any) -> dict[str, Any]:
    if walk is None:
        return {
            "closest_approach": 1.0,
            "final_distance": 1.0,
            "steps": 0,
            "stop_reason": "rank-zero metric at the start (a critical point of the model): "
            "no guided walk",
            "drift_max": 0.0,
        }
    return {
        "closest_approach": min(walk.remaining_distance),
        "final_distance": walk.remaining_distance[-1],
        "steps": walk.steps_completed,
        "stop_reason": walk.stop_reason,
        "drift_max": max(walk.drift),
    }


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
    text_model = as_text_model(adapter)
    if text_model is None:
        return None
    from ..interpret.decode_text import NearestTokenDecoder

    decoded = NearestTokenDecoder(text_model).decode(result.curve, prepared)
    return [
        adapter.tokenizer.decode(ids.tolist(), skip_special_tokens=True)
        for ids in decoded.ids[:, 0]
    ]


def _decoded_images(
    result: EquivalenceResult, adapter: ModelAdapter, count: int = 6
) -> list[dict[str, Any]]:
    """Vision models: ``count`` points of the curve decoded into pictures, each with the class
    of its point (``embedding``) and the class the model gives the picture (``picture``)."""
    image_model = as_image_model(adapter)
    if image_model is None:
        return []
    from ..interpret.decode_image import ViTDecoder, classify_pictures

    picks = np.unique(np.linspace(0, len(result.curve) - 1, count).round().astype(int))
    images = ViTDecoder(image_model).decode_trajectory(result.curve[picks])
    labels = list(adapter.labels)
    pictures = classify_pictures(image_model, images).argmax(-1).tolist()
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
