"""The final version's measures of one exploration run (reference 003, section 4).

``measure_run(result, interpreter)`` decodes every stored point of an ``ExplorationResult``
(every ``record_every``-th point and the last: k̂ = 10 in the paper; ``every`` keeps a coarser
subset), re-classifies the decoded inputs, and returns an ``InterpretationRecord`` with the
measures of ``simec.interpret.measures``: predictions from embeddings (the model run from the
stored point, ``trajectory_probabilities``) and from interpretations, their top-1 and ranking
changes (M2/M3, both the text's inversions and the code's positions), the mean Spearman of
consecutive rankings (M3), W1 and L1 between the two distributions (M7), the diversity of
consecutive decoded inputs (M6), change iterations (M8), catch-up and the Pearson correlation
of top-class probabilities (M9).

An ``Interpreter`` says how to decode and classify: ``vision_interpreter`` (``ViTDecoder``,
pasting the explored patches into the original image, classified by ``image_logits``) and
``text_interpreter`` (``NearestTokenDecoder`` or ``MLMDecoder`` top-1 at the explored tokens,
classified by ``classify_ids``). M4 (volume) compares two runs: ``run_volume_ratios``
(and ``run_log_volumes``, both runs' volumes).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._io import atomic_write_json
from ..errors import InputError
from ..explore.result import ExplorationResult
from ..models.base import PreparedInput
from ..models.hf_text import HFSequenceClassifierAdapter
from ..models.hf_vision import HFImageClassifierAdapter
from . import measures as m
from .decode_image import ViTDecoder
from .decode_text import MLMDecoder, NearestTokenDecoder

__all__ = [
    "InterpretationRecord",
    "Interpreter",
    "measure_run",
    "run_log_volumes",
    "run_volume_ratios",
    "text_interpreter",
    "vision_interpreter",
]


@dataclass(frozen=True)
class Interpreter:
    """Decode stored points (m, segments, width) into inputs, classify them ((m, q)
    probabilities), and measure their diversity ((m - 1,), M6)."""

    kind: str
    decode: Callable[[Tensor], Any]
    classify: Callable[[Any], Tensor]
    diversity: Callable[[Any], np.ndarray]


def vision_interpreter(
    adapter: HFImageClassifierAdapter,
    image: Any,
    explored_segments: Sequence[int],
    *,
    decoder: ViTDecoder | None = None,
) -> Interpreter:
    """Images: ``ViTDecoder`` pastes the decoded explored patches into ``image`` (the run's raw
    input); the model classifies the decoded images; M6 = mean |pixel difference| of
    consecutive decoded images."""
    decoder = decoder or ViTDecoder(adapter)
    original = adapter.image(image)
    segments = list(explored_segments)

    def decode(points: Tensor) -> Tensor:
        return decoder.decode_trajectory(points, original=original, explored_segments=segments)

    @torch.no_grad()
    def classify(images: Tensor) -> Tensor:
        return torch.softmax(adapter.image_logits(images), -1).cpu()

    return Interpreter("vision", decode, classify, lambda images: m.pixel_diversity(images))


def text_interpreter(
    classifier: HFSequenceClassifierAdapter,
    prepared: PreparedInput,
    decoder: NearestTokenDecoder | MLMDecoder,
    explored_segments: Sequence[int],
) -> Interpreter:
    """Text: the decoder's top-1 token at every explored non-special position (the others keep
    the post's tokens); the classifier classifies the token ids; M6 = explored tokens changed
    between consecutive decodings (the paper's code)."""
    special = set(classifier.tokenizer.all_special_tokens)
    positions = [s for s in explored_segments if prepared.segment_names[s] not in special]
    if not positions:
        raise InputError("no explored token to decode: the explored segments are all special")

    def decode(points: Tensor) -> Tensor:
        if isinstance(decoder, MLMDecoder):
            decoded = decoder.decode(points, prepared, segments=positions, k=1)
        else:
            decoded = decoder.decode(points, prepared, segments=positions)
        return decoded.ids[:, 0]

    def classify(ids: Tensor) -> Tensor:
        return classifier.classify_ids(ids).cpu()

    return Interpreter("text", decode, classify, lambda ids: m.token_diversity(ids, positions))


def _floats(values: Any) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


@dataclass(frozen=True)
class InterpretationRecord:
    """The measures of one run at its evaluated points ``steps`` (reference 003 names).

    ``embedding_probabilities`` / ``interpretation_probabilities``: (m, q) as nested lists;
    ``*_predicted``: top-1 per point. ``top1_changes_*`` (M3), ``ranking_inversions_*`` (M2,
    the text) and ``ranking_positions_*`` (M2, the code) are counts over the run, with
    ``iterations`` to turn them into rates (``per_1000``). ``spearman_*``: mean Spearman of
    consecutive rankings (M3). ``w1`` / ``l1``: M7 per point (W1 on the class index line; L1).
    ``diversity``: M6 per consecutive pair. ``change_iterations_*`` and ``first_change_*``: M8.
    ``catch_up``: M9 events (iteration, source, target, delay or None); ``catch_up_fraction`` and
    ``catch_up_mean_delay`` summarise them; ``top_class_pearson`` (r) and
    ``top_class_pearson_p``: M9.
    """

    kind: str
    steps: list[int]
    iterations: int
    embedding_probabilities: list[list[float]]
    interpretation_probabilities: list[list[float]]
    embedding_predicted: list[int]
    interpretation_predicted: list[int]
    top1_changes_embedding: int
    top1_changes_interpretation: int
    ranking_inversions_embedding: int
    ranking_inversions_interpretation: int
    ranking_positions_embedding: int
    ranking_positions_interpretation: int
    spearman_embedding: float
    spearman_interpretation: float
    w1: list[float]
    l1: list[float]
    diversity: list[float]
    change_iterations_embedding: list[int]
    change_iterations_interpretation: list[int]
    first_change_embedding: int | None
    first_change_interpretation: int | None
    catch_up: list[dict[str, Any]]
    catch_up_fraction: float
    catch_up_mean_delay: float
    top_class_pearson: float
    top_class_pearson_p: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (nan written as None)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, list):
                return [clean(x) for x in v]
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v

        return {k: clean(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InterpretationRecord:
        names = {f.name for f in fields(cls)}
        missing = names - set(values)
        if missing:
            raise InputError(f"an interpretation record lacks {sorted(missing)}")
        floats = (
            "spearman_embedding",
            "spearman_interpretation",
            "catch_up_fraction",
            "catch_up_mean_delay",
            "top_class_pearson",
            "top_class_pearson_p",
        )
        out = {k: values[k] for k in names}
        for k in floats:
            out[k] = math.nan if out[k] is None else float(out[k])
        for k in ("w1", "l1", "diversity"):
            out[k] = [math.nan if v is None else float(v) for v in out[k]]
        return cls(**out)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the record as JSON (atomically)."""
        out = Path(path)
        atomic_write_json(out, self.to_dict())
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> InterpretationRecord:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def measure_run(
    result: ExplorationResult, interpreter: Interpreter, *, every: int | None = None
) -> InterpretationRecord:
    """Decode and re-classify the stored points of ``result`` and measure them (see module
    docstring). ``every``: keep only the stored points at multiples of ``every`` (and the
    last); it must be a multiple of the run's ``record_every``."""
    stored = list(result.trajectory_steps)
    if len(stored) < 2:
        raise InputError("the run stored fewer than 2 points: nothing to compare along the walk")
    if every is not None:
        k = result.config.record_every
        if not isinstance(every, int) or every < 1 or every % k:
            raise InputError(f"every must be a positive multiple of record_every={k}, got {every}")
        keep = [i for i, s in enumerate(stored) if s % every == 0 or i == len(stored) - 1]
    else:
        keep = list(range(len(stored)))
    steps = [stored[i] for i in keep]
    emb = result.trajectory_probabilities[keep].to(torch.float64).numpy()
    decoded = interpreter.decode(result.trajectory[keep])
    interp = interpreter.classify(decoded).to(torch.float64).numpy()
    if interp.shape != emb.shape:
        raise InputError(
            f"the decoded inputs' probabilities have shape {interp.shape}, the run's {emb.shape}"
        )
    pred_e, pred_i = m.predictions(emb), m.predictions(interp)
    events = m.catch_up(pred_e, pred_i, steps)
    summary = m.catch_up_summary(events)
    corr = m.top_class_correlation(emb, interp)
    first_e, first_i = m.first_change(pred_e, steps), m.first_change(pred_i, steps)
    return InterpretationRecord(
        kind=interpreter.kind,
        steps=steps,
        iterations=result.steps_completed,
        embedding_probabilities=emb.tolist(),
        interpretation_probabilities=interp.tolist(),
        embedding_predicted=[int(v) for v in pred_e],
        interpretation_predicted=[int(v) for v in pred_i],
        top1_changes_embedding=m.top1_changes(emb),
        top1_changes_interpretation=m.top1_changes(interp),
        ranking_inversions_embedding=m.ranking_changes(emb, method="inversions"),
        ranking_inversions_interpretation=m.ranking_changes(interp, method="inversions"),
        ranking_positions_embedding=m.ranking_changes(emb, method="positions"),
        ranking_positions_interpretation=m.ranking_changes(interp, method="positions"),
        spearman_embedding=_mean(m.spearman_consecutive(emb)),
        spearman_interpretation=_mean(m.spearman_consecutive(interp)),
        w1=_floats(m.wasserstein1(emb, interp)),
        l1=_floats(m.l1_distance(emb, interp)),
        diversity=_floats(interpreter.diversity(decoded)),
        change_iterations_embedding=m.change_iterations(pred_e, steps),
        change_iterations_interpretation=m.change_iterations(pred_i, steps),
        first_change_embedding=first_e,
        first_change_interpretation=first_i,
        catch_up=[asdict(e) for e in events],
        catch_up_fraction=summary["fraction"],
        catch_up_mean_delay=summary["mean_delay"],
        top_class_pearson=corr["r"],
        top_class_pearson_p=corr["p"],
    )


def _explored_points(
    explore_run: ExplorationResult, reference_run: ExplorationResult
) -> tuple[Tensor, Tensor]:
    """Both runs' stored points at their explored segments, which must be the same."""
    if explore_run.explored_segments != reference_run.explored_segments:
        raise InputError("the two runs explored different segments")
    rows = list(explore_run.explored_segments)
    return explore_run.trajectory[:, rows], reference_run.trajectory[:, rows]


def run_volume_ratios(
    explore_run: ExplorationResult,
    reference_run: ExplorationResult,
    *,
    variance: float = 0.9,
) -> np.ndarray:
    """M4 for two runs from the same input over the same segments (SiMExp ``explore_run``,
    SiMEC ``reference_run``): rho_V per explored segment (``measures.patch_volume_ratios``;
    the PCA is fitted on both runs' stored points at that segment)."""
    return m.patch_volume_ratios(*_explored_points(explore_run, reference_run), variance=variance)


def run_log_volumes(
    explore_run: ExplorationResult,
    reference_run: ExplorationResult,
    *,
    variance: float = 0.9,
) -> np.ndarray:
    """Both runs' log10 cuboid volumes per explored segment, (2, segments), SiMExp first
    (``measures.patch_log_volumes``; their difference is ``run_volume_ratios`` in log10)."""
    return m.patch_log_volumes(*_explored_points(explore_run, reference_run), variance=variance)
