"""Explanation scores from any tool: the SCORES.jsonl format, read with checks and written.

One line per (post, explainer)::

    {"id": "post id", "explainer": "name", "scores": [one float per unit]}

With ``--unit words`` the units are HateXplain's ``post_tokens``. With ``--unit pieces`` the
units are the classifier's word pieces, [CLS]/[SEP] included, and the line also carries
``"word_ids"``: the word index of every piece, ``null`` for specials (so the gold can be mapped
to the pieces without a model). A pieces line may also be scored with ``--unit words`` (a word
takes the max over its pieces). ``simec evaluate plausibility --save-scores FILE`` writes this
format. Posts without rationales are skipped; an unknown id, a wrong length, a non-number, NaN or
Inf, or a repeated (id, explainer) is a one-line error naming the line and the post.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes
from ..errors import InputError

__all__ = ["ScoreLine", "read_scores", "word_scores", "write_scores"]


def word_scores(scores: Any, word_ids: list[int | None], n_words: int) -> np.ndarray:
    """Word scores from piece scores: the max over each word's pieces (HateXplain word ids);
    words with no piece left (truncated) score 0."""
    values = scores.tolist() if hasattr(scores, "tolist") else list(scores)
    out = np.full(n_words, -np.inf)
    for score, w in zip(values, word_ids):
        if w is not None and w < n_words:
            out[w] = max(out[w], score)
    out[~np.isfinite(out)] = 0.0
    return out


@dataclass(frozen=True)
class ScoreLine:
    """One explainer's scores for one post; ``unit`` says what ``scores`` are per."""

    id: str
    explainer: str
    scores: list[float]
    unit: str
    word_ids: list[int | None] | None = None


def _number_list(values: Any, where: str) -> list[float]:
    if not isinstance(values, list) or not values:
        raise InputError(f'{where}: "scores" must be a non-empty list of numbers')
    out = []
    for j, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"{where}: score {j} is {v!r}, not a number")
        if not math.isfinite(v):
            raise InputError(f"{where}: score {j} is {v}; scores must be finite")
        out.append(float(v))
    return out


def _word_ids(values: Any, n_scores: int, n_words: int, where: str) -> list[int | None]:
    if not isinstance(values, list) or len(values) != n_scores:
        raise InputError(
            f'{where}: "word_ids" must list one word index (or null) for each of the '
            f"{n_scores} scores"
        )
    for v in values:
        index_ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n_words
        if v is not None and not index_ok:
            raise InputError(f"{where}: word id {v!r} is not null or a word index below {n_words}")
    return list(values)


def read_scores(
    path: str | Path,
    known_ids: set[str],
    posts: dict[str, dict[str, Any]],
    *,
    unit: str,
) -> list[ScoreLine]:
    """Checked score lines for the posts with rationales (``posts``, by id).

    ``known_ids`` are all the ids of the data file: a line for a known post without rationales
    (normal) is skipped, an id outside it is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"score file {str(path)!r} does not exist")
    lines: list[ScoreLine] = []
    seen: set[tuple[str, str]] = set()
    for n, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{n}: not JSON ({exc})") from None
        if not isinstance(item, dict) or not {"id", "explainer", "scores"} <= item.keys():
            raise InputError(f'{path}:{n}: a line needs "id", "explainer" and "scores"')
        post_id, explainer = str(item["id"]), str(item["explainer"])
        where = f"{path}:{n}: post {post_id!r} ({explainer})"
        if post_id not in known_ids:
            raise InputError(f"{where}: no post with this id in the data file")
        if post_id not in posts:
            continue  # no rationale (normal post): excluded, as in HateXplain
        if (post_id, explainer) in seen:
            raise InputError(f"{where}: repeated; one line per post and explainer")
        seen.add((post_id, explainer))
        scores = _number_list(item["scores"], where)
        n_words = len(posts[post_id]["words"])
        if "word_ids" in item:
            ids = _word_ids(item["word_ids"], len(scores), n_words, where)
            lines.append(ScoreLine(post_id, explainer, scores, "pieces", ids))
        elif unit == "pieces":
            raise InputError(
                f'{where}: --unit pieces needs "word_ids" (the word index of each piece, null '
                "for specials), as --save-scores writes; for word scores use --unit words"
            )
        elif len(scores) != n_words:
            raise InputError(f"{where}: {len(scores)} scores for {n_words} words")
        else:
            lines.append(ScoreLine(post_id, explainer, scores, "words"))
    return lines


def write_scores(
    path: str | Path, lines: Iterable[ScoreLine], *, unit: str, words: dict[str, int]
) -> None:
    """Write ``lines`` (piece scores with word ids) as SCORES.jsonl in ``unit``.

    ``words`` gives each post's number of words (for ``unit="words"``: max over pieces).
    """
    out = []
    for line in lines:
        record: dict[str, Any] = {"id": line.id, "explainer": line.explainer}
        if unit == "pieces" or line.word_ids is None:
            record["scores"] = line.scores
            if line.word_ids is not None:
                record["word_ids"] = line.word_ids
        else:
            record["scores"] = word_scores(line.scores, line.word_ids, words[line.id]).tolist()
        out.append(json.dumps(record))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, ("\n".join(out) + "\n").encode())
