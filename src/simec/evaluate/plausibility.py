"""Plausibility primitives: one post's explanation scores against its human rationale.

Each function is one published definition, written once; ``protocols`` assembles them into the
HateXplain and ferret protocols. Sources:

- [ERASER] DeYoung et al., "ERASER: A Benchmark to Evaluate Rationalized NLP Models", ACL 2020;
  reference code ``rationale_benchmark/metrics.py`` of github.com/jayded/eraserbenchmark
  (``partial_match_score``, ``score_hard_rationale_predictions``, ``_auprc``).
- [HateXplain] Mathew et al., "HateXplain: A Benchmark Dataset for Explainable Hate Speech
  Detection", AAAI 2021; github.com/hate-alert/HateXplain, ``Explainability_Calculation_NB.ipynb``
  (union of the annotators' marks, contiguous runs as gold spans) and
  ``testing_with_rational.py`` (top-5 tokens, each its own one-token span).
- [ferret] Attanasio et al., "ferret: a Framework for Benchmarking Explainers on Transformers",
  EACL 2023 demo; github.com/g8a9/ferret, ``evaluators/plausibility_measures.py`` and
  ``evaluators/utils_from_soft_to_discrete.py``.
- [SiMEC] the SiMEC/SiMExp paper's cosine similarity (see /work/shared/reference).

Inputs: ``scores`` is one float per unit (word or word piece); ``marks`` is the annotators' 0/1
marks, shape (annotators, units); ``gold`` is a boolean mask over the units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = [
    "MetricInfo",
    "cosine",
    "gold_spans",
    "mean_marks",
    "partial_match",
    "pr_auc",
    "token_prf",
    "top_k",
    "union_marks",
]


@dataclass(frozen=True)
class MetricInfo:
    """What a table needs to know about a metric: its range and which way is better."""

    name: str
    lower: float
    upper: float
    higher_is_better: bool = True
    description: str = ""


def _vector(values: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise InputError(f"{what} must not be empty")
    if not np.isfinite(v).all():
        raise InputError(f"{what} must be finite (no NaN or Inf)")
    return v


def _marks(marks: np.ndarray) -> np.ndarray:
    m = np.asarray(marks, dtype=np.float64)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.size == 0:
        raise InputError(f"marks must be (annotators, units), got shape {m.shape}")
    if not np.isin(m, (0.0, 1.0)).all():
        raise InputError("marks must be 0 or 1")
    return m


def union_marks(marks: np.ndarray) -> np.ndarray:
    """Gold rationale: a unit is marked if any annotator marked it ([HateXplain] ``method ==
    'union'``; [ferret] ``rationale_union=True``)."""
    return _marks(marks).max(axis=0) > 0


def mean_marks(marks: np.ndarray) -> np.ndarray:
    """The mean of the annotators' 0/1 marks per unit, in [0, 1] ([SiMEC]'s soft rationale)."""
    return _marks(marks).mean(axis=0)


def gold_spans(gold: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs of marked units as (start, end) spans, end exclusive ([HateXplain]
    ``get_evidence``: one ERASER evidence per run)."""
    g = np.asarray(gold, dtype=bool).ravel()
    spans, start = [], None
    for i, marked in enumerate([*g.tolist(), False]):
        if marked and start is None:
            start = i
        elif not marked and start is not None:
            spans.append((start, i))
            start = None
    return spans


def top_k(scores: np.ndarray, k: int, *, positive_only: bool = False) -> np.ndarray:
    """Mask of the k highest scores.

    Tie rule: the scores are sorted ascending with a stable sort and the last k are taken, so
    among equal scores the later position wins. This is [HateXplain]'s
    ``sorted(range(n), key=lambda i: s[i])[-k:]``; [ferret] uses ``np.argsort(s)[-k:]`` (numpy's
    default, not stable, so its ties are implementation-defined; the stable rule is used for
    both). ``positive_only`` keeps only scores > 0 among the k ([ferret] ``only_pos``).
    """
    s = _vector(scores, "scores")
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    chosen = np.zeros(s.size, dtype=bool)
    chosen[np.argsort(s, kind="stable")[-k:]] = True
    if positive_only:
        chosen &= s > 0
    return chosen


def token_prf(predicted: np.ndarray, gold: np.ndarray) -> tuple[float, float, float]:
    """One instance's token precision, recall and F1 ([ERASER] ``score_hard_rationale_predictions``
    on token-level rationales): precision is 0 with no predicted token, recall 0 with no gold
    token, F1 0 when either is 0."""
    p_mask, g_mask = np.asarray(predicted, bool).ravel(), np.asarray(gold, bool).ravel()
    if p_mask.shape != g_mask.shape:
        raise InputError(f"predicted {p_mask.shape} and gold {g_mask.shape} must be equal")
    tp = int((p_mask & g_mask).sum())
    precision = tp / int(p_mask.sum()) if p_mask.any() else 0.0
    recall = tp / int(g_mask.sum()) if g_mask.any() else 0.0
    return precision, recall, f1(precision, recall)


def f1(precision: float, recall: float) -> float:
    """Harmonic mean, 0 when either is 0 ([ERASER] ``_f1``)."""
    if precision == 0 or recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def partial_match(
    predicted: list[tuple[int, int]], gold: list[tuple[int, int]], threshold: float = 0.5
) -> tuple[int, int, int]:
    """([ERASER] ``partial_match_score``, one instance) -> (hits, predicted spans, gold spans).

    Each predicted span takes its best token IOU against any gold span and is a hit when that IOU
    is >= ``threshold``. ERASER's instance recall is hits / gold spans, so several predicted spans
    inside one gold span each count and recall can exceed 1 (kept as in the reference code).
    """
    hits = 0
    for ps, pe in predicted:
        p = set(range(ps, pe))
        best = 0.0
        for gs, ge in gold:
            g = set(range(gs, ge))
            union = len(p | g)
            best = max(best, len(p & g) / union if union else 0.0)
        hits += int(best >= threshold)
    return hits, len(predicted), len(gold)


def pr_auc(scores: np.ndarray, gold: np.ndarray) -> float:
    """Area under the precision-recall curve ([ERASER] ``_auprc``).

    Computed as scikit-learn's ``auc(recall, precision)`` of ``precision_recall_curve(gold,
    scores)``: one point per distinct score (ties grouped, so order among equal scores does not
    matter), the point (recall 0, precision 1) added, trapezoidal area. NaN without a gold unit.
    """
    s = _vector(scores, "scores")
    g = np.asarray(gold, dtype=bool).ravel()
    if g.shape != s.shape:
        raise InputError(f"scores {s.shape} and gold {g.shape} must be equal")
    if not g.any():
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, g = s[order], g[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(g)[last_of_each_score].astype(np.float64)
    precision = tps / (last_of_each_score + 1)
    recall = tps / tps[-1]
    # highest threshold first reversed to lowest first, then (recall 0, precision 1)
    precision = np.r_[precision[::-1], 1.0]
    recall = np.r_[recall[::-1], 0.0]
    return float(-np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2))


def minmax(v: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; constant vectors become all zeros."""
    span = v.max() - v.min()
    return (v - v.min()) / span if span > 0 else np.zeros_like(v)


def cosine(scores: np.ndarray, rationale: np.ndarray) -> float:
    """[SiMEC]'s measure: cosine of the [0, 1]-scaled scores and the soft rationale (mean of
    marks, already in [0, 1]). 0 when exactly one vector is all zeros, 1 when both are."""
    a = minmax(_vector(scores, "scores"))
    b = _vector(rationale, "rationale")
    if a.shape != b.shape:
        raise InputError(f"scores {a.shape} and rationale {b.shape} must be equal")
    if b.min() < 0 or b.max() > 1:
        raise InputError("rationale values must lie in [0, 1]")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(a @ b / (na * nb))
