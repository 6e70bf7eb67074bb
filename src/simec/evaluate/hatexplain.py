"""The HateXplain data set: posts with their annotators' rationales, and published numbers.

Posts: those with rationales, i.e. whose majority label is hate speech or offensive (normal
posts have none and are excluded, as in HateXplain). Each annotator's 0/1 marks are kept; the
protocol (``protocols``) decides the gold (HateXplain and ferret: the union).

Units (``--unit``):
- ``pieces``: the classifier's word pieces with [CLS]/[SEP], as HateXplain scores BERT; a piece
  carries the marks of its word, specials are unmarked (0). The scores are the explainer's own
  per-piece scores.
- ``words``: HateXplain's ``post_tokens``; a word's score is the max over its pieces (a word cut
  off by truncation scores 0).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .scores import word_scores

__all__ = [
    "HATEXPLAIN_PUBLISHED",
    "PAPER_COSINE",
    "UNITS",
    "load_hatexplain",
    "post_ids",
    "unit_marks",
    "unit_scores",
    "word_scores",
]

LABELS = {0: "hatespeech", 1: "normal", 2: "offensive"}
RATIONALE_LABELS = ("hatespeech", "offensive")
UNITS = ("pieces", "words")
#: the SiMEC paper's cosine similarities on HateXplain (mean, std)
PAPER_COSINE = {"simec": (0.707, 0.302), "relevancy": (0.70, 0.315), "rollout": (0.583, 0.318)}
#: HateXplain's published explainability results for its BERT models (Mathew et al., AAAI 2021,
#: arXiv:2012.10289, main results table; test split, BERT-base fine-tuned on HateXplain's train
#: split, word pieces, top-5 hard rationale; comprehensiveness/sufficiency of that top 5)
HATEXPLAIN_PUBLISHED = {
    "BERT [Attn]": {
        "iou_f1": 0.130,
        "token_f1": 0.497,
        "auprc": 0.778,
        "comprehensiveness": 0.447,
        "sufficiency": 0.057,
    },
    "BERT [LIME]": {
        "iou_f1": 0.118,
        "token_f1": 0.468,
        "auprc": 0.747,
        "comprehensiveness": 0.436,
        "sufficiency": 0.008,
    },
}


def post_ids(path: str | Path) -> set[str]:
    """Every post id of a HateXplain JSONL file (with or without rationales)."""
    ids = set()
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                ids.add(str(json.loads(line).get("id", n)))
            except (json.JSONDecodeError, AttributeError) as exc:
                raise InputError(f"{path}:{n}: not a HateXplain record ({exc})") from None
    return ids


def load_hatexplain(path: str | Path) -> list[dict[str, Any]]:
    """Posts with rationales: id, words, marks (one 0/1 list per annotator), rationale (mean of
    the marks), majority label (hatespeech or offensive)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"HateXplain file {str(path)!r} does not exist (e.g. ../shared/data/hatexplain/"
            "validation.jsonl)"
        )
    posts = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            words = item["post_tokens"]
            marks = item.get("rationales") or []
            votes = Counter(item.get("annotators", {}).get("label", []))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}:{n}: not a HateXplain record ({exc})") from None
        marks = [[int(bool(v)) for v in m] for m in marks if len(m) == len(words)]
        label = None  # the majority label (more than half of the votes), if any
        if votes:
            value, count = votes.most_common(1)[0]
            if count * 2 > sum(votes.values()):
                label = LABELS.get(value, str(value))
        if not marks or not words or label not in RATIONALE_LABELS:
            continue
        posts.append(
            {
                "id": str(item.get("id", n)),
                "words": words,
                "marks": marks,
                "rationale": np.mean(np.array(marks, dtype=np.float64), axis=0).tolist(),
                "label": label,
            }
        )
    return posts


def unit_marks(marks: list[list[int]], word_ids: list[int | None] | None, unit: str) -> np.ndarray:
    """Marks (annotators, units): per word, or per piece (its word's marks; specials 0)."""
    m = np.asarray(marks, dtype=np.float64)
    if unit == "words":
        return m
    if word_ids is None:
        raise InputError("--unit pieces needs the word id of every piece")
    out = np.zeros((m.shape[0], len(word_ids)))
    for j, w in enumerate(word_ids):
        if w is not None:
            if not 0 <= w < m.shape[1]:
                raise InputError(f"word id {w} out of range for {m.shape[1]} words")
            out[:, j] = m[:, w]
    return out


def unit_scores(
    piece_scores: list[float], word_ids: list[int | None] | None, n_words: int, unit: str
) -> np.ndarray:
    """Scores per unit from per-piece scores (words: max over the word's pieces)."""
    if unit == "pieces":
        return np.asarray(piece_scores, dtype=np.float64)
    if word_ids is None:
        raise InputError("word scores from piece scores need the word id of every piece")
    return word_scores(piece_scores, word_ids, n_words)
