"""Text data: the Davidson et al. (2017) tweets (CSV) and HateXplain posts (JSONL).

Both are mapped onto one 3-class label set, in this order: hate speech, offensive, normal.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = [
    "HATE_LABELS",
    "TextDataset",
    "load_davidson",
    "load_hatexplain_posts",
]

#: the label set of the project's hate-speech classifiers, index = class id
HATE_LABELS = ["hate speech", "offensive", "normal"]
#: Davidson "class" column: 0 hate speech, 1 offensive language, 2 neither
_DAVIDSON_TO_HATE = {0: 0, 1: 1, 2: 2}
#: HateXplain annotator label: 0 hatespeech, 1 normal, 2 offensive
_HATEXPLAIN_TO_HATE = {0: 0, 1: 2, 2: 1}


@dataclass
class TextDataset:
    texts: list[str]
    labels: np.ndarray  # int64 class ids into ``classes``
    classes: list[str] = field(default_factory=lambda: list(HATE_LABELS))
    ids: list[str] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: np.ndarray) -> TextDataset:
        idx = [int(i) for i in indices]
        return TextDataset(
            [self.texts[i] for i in idx],
            self.labels[idx],
            list(self.classes),
            [self.ids[i] for i in idx] if self.ids else [],
            self.source,
        )


def _resolve(path: str | Path, default_name: str, hint: str) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / default_name
    if not p.is_file():
        raise InputError(f"{str(path)!r} does not exist; {hint}")
    return p


def load_davidson(path: str | Path) -> TextDataset:
    """The Davidson tweets: a directory holding ``labeled_data.csv`` or the CSV itself."""
    p = _resolve(
        path,
        "labeled_data.csv",
        "expected the Davidson et al. CSV (e.g. ../shared/data/davidson/labeled_data.csv)",
    )
    texts: list[str] = []
    labels: list[int] = []
    ids: list[str] = []
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"class", "tweet"} <= set(reader.fieldnames):
            raise InputError(f"{p} is not the Davidson CSV: it needs 'class' and 'tweet' columns")
        for n, row in enumerate(reader):
            try:
                label = _DAVIDSON_TO_HATE[int(row["class"])]
            except (KeyError, ValueError):
                raise InputError(
                    f"{p}: row {n + 1} has an unknown class {row['class']!r}"
                ) from None
            text = " ".join((row["tweet"] or "").split())
            if text:
                texts.append(text)
                labels.append(label)
                ids.append(row.get("") or str(n))
    if not texts:
        raise InputError(f"{p} holds no tweets")
    return TextDataset(texts, np.array(labels, dtype=np.int64), ids=ids, source=str(p))


def load_hatexplain_posts(
    path: str | Path, *, labels: tuple[str, ...] | None = None
) -> TextDataset:
    """HateXplain posts with their majority label (posts without a majority are dropped).

    ``labels`` keeps only posts whose majority label is one of these names (e.g.
    ``("hate speech", "offensive")``). Texts are the post's tokens joined by spaces.
    """
    p = _resolve(
        path,
        "validation.jsonl",
        "expected a HateXplain JSONL file (e.g. ../shared/data/hatexplain/validation.jsonl)",
    )
    texts: list[str] = []
    ids: list[str] = []
    out_labels: list[int] = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            words = [str(w) for w in item["post_tokens"]]
            votes = Counter(int(v) for v in item["annotators"]["label"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{p}:{n}: not a HateXplain record ({exc})") from None
        ranked = votes.most_common()
        if not words or not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
            continue  # no majority: HateXplain calls these "undecided"
        label = _HATEXPLAIN_TO_HATE.get(ranked[0][0])
        if label is None or (labels is not None and HATE_LABELS[label] not in labels):
            continue
        texts.append(" ".join(words))
        out_labels.append(label)
        ids.append(str(item.get("id", n)))
    if not texts:
        raise InputError(f"{p} holds no posts with a majority label")
    return TextDataset(texts, np.array(out_labels, dtype=np.int64), ids=ids, source=str(p))
