"""``simec evaluate plausibility``: explainers vs HateXplain's human rationales, resumable.

For every post with rationales (normal posts have none and are excluded, as in HateXplain):
the human rationale of word w is the mean of the annotators' 0/1 marks; each explainer's word
score is the max over the word's pieces (segments whose word id is w); the target class is the
model's prediction on the whole post. Plausibility: the metrics in ``plausibility``.
Faithfulness (optional): removed words are replaced by the tokenizer's mask token (or [UNK]), so
the length is kept and no post becomes empty. One JSON row per post is written atomically as
soon as it is done; a rerun skips finished posts.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_bytes, atomic_write_json, environment
from ..errors import InputError
from ..explainers import explain, explainer_names
from ..models.base import ModelAdapter
from ..stats import mean_std
from .faithfulness import FAITHFULNESS, aopc_comprehensiveness, aopc_sufficiency
from .plausibility import METRICS

__all__ = [
    "PAPER_COSINE",
    "PlausibilityConfig",
    "load_hatexplain",
    "run_plausibility",
    "word_scores",
]

LABELS = {0: "hatespeech", 1: "normal", 2: "offensive"}
#: the SiMEC paper's cosine similarities on HateXplain (mean, std)
PAPER_COSINE = {"simec": (0.707, 0.302), "relevancy": (0.70, 0.315), "rollout": (0.583, 0.318)}


@dataclass(frozen=True)
class PlausibilityConfig:
    """``simec evaluate plausibility``: the classifier, the HateXplain posts, the explainers."""

    model: str = field(metadata={"help": "a sequence classifier", "metavar": "DIR"})
    data: str = field(
        metadata={
            "help": "HateXplain JSONL (e.g. ../shared/data/hatexplain/validation.jsonl)",
            "metavar": "FILE.jsonl",
        }
    )
    out: str = field(metadata={"metavar": "DIR"})
    explainers: tuple[str, ...] = field(
        default=("simec", "rollout", "relevancy", "grad_x_input", "random"),
        metadata={"help": "explainers to score", "choices": explainer_names},
    )
    limit: int | None = field(
        default=None,
        metadata={"help": "only the first N posts with rationales", "metavar": "N", "min": 1},
    )
    faithfulness: bool = field(
        default=True,
        metadata={
            "help": "score comprehensiveness/sufficiency (AOPC) too",
            "help_off": "skip comprehensiveness/sufficiency (faster)",
        },
    )
    faithfulness_posts: int | None = field(
        default=None,
        metadata={
            "help": "compute faithfulness on the first N posts only (it costs ~10 model calls "
            "per explainer and post)",
            "metavar": "N",
            "min": 1,
        },
    )
    device: str = "cpu"
    truncate: bool = field(default=False, metadata={"help": "truncate over-long posts"})


def load_hatexplain(path: str | Path) -> list[dict[str, Any]]:
    """Posts with rationales: id, words, rationale (mean of marks), majority label."""
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
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{path}:{n}: not a HateXplain record ({exc})") from None
        marks = [m for m in marks if len(m) == len(words)]
        if not marks or not words:
            continue
        labels = Counter(item.get("annotators", {}).get("label", []))
        label = labels.most_common(1)[0][0] if labels else None
        posts.append(
            {
                "id": str(item.get("id", n)),
                "words": words,
                "rationale": np.mean(np.array(marks, dtype=np.float64), axis=0).tolist(),
                "label": LABELS[label] if label in LABELS else str(label),
            }
        )
    return posts


def word_scores(scores: torch.Tensor, word_ids: list[int | None], n_words: int) -> np.ndarray:
    """Max over each word's pieces; words with no piece left (truncated) score 0."""
    out = np.full(n_words, -np.inf)
    for score, w in zip(scores.tolist(), word_ids):
        if w is not None and w < n_words:
            out[w] = max(out[w], score)
    out[~np.isfinite(out)] = 0.0
    return out


def _predictor(adapter: ModelAdapter, words: list[str], filler: str):
    def predict(keep: np.ndarray) -> np.ndarray:
        kept = [w if k else filler for w, k in zip(words, keep)]
        prepared = adapter.prepare(kept)
        with torch.no_grad():
            return torch.softmax(adapter.logits(prepared.embeddings, prepared), -1).cpu().numpy()

    return predict


def _post_row(
    adapter: ModelAdapter, post: dict, explainers: list[str], faithful: bool, filler: str
) -> dict[str, Any]:
    words, rationale = post["words"], np.array(post["rationale"])
    prepared = adapter.prepare(words)
    if prepared.word_ids is None:
        raise InputError("the tokenizer gives no word ids (a fast tokenizer is needed)")
    with torch.no_grad():
        probs = torch.softmax(adapter.logits(prepared.embeddings, prepared), -1)
    target = int(probs.argmax())
    row: dict[str, Any] = {
        "id": post["id"],
        "label": post["label"],
        "words": len(words),
        "predicted": adapter.labels[target],
        "explainers": {},
    }
    predict = _predictor(adapter, words, filler) if faithful else None
    for name in explainers:
        t0 = time.perf_counter()
        exp = explain(adapter, words, name, target=target)
        seconds = time.perf_counter() - t0
        scores = word_scores(exp.scores, prepared.word_ids, len(words))
        result = {"seconds": seconds, "scores": scores.tolist()}
        for metric in METRICS.values():
            result[metric.name] = metric(scores, rationale)
        if predict is not None:
            result["comprehensiveness"] = aopc_comprehensiveness(predict, scores, target)
            result["sufficiency"] = aopc_sufficiency(predict, scores, target)
        row["explainers"][name] = result
    return row


def summarize(rows: list[dict[str, Any]], explainers: list[str]) -> dict[str, Any]:
    metric_infos = {**METRICS, **FAITHFULNESS}
    table: dict[str, Any] = {}
    for name in explainers:
        entry = {}
        for key in [*metric_infos, "seconds"]:
            vals = [
                r["explainers"][name].get(key, math.nan) for r in rows if name in r["explainers"]
            ]
            entry[key] = mean_std(vals).as_dict()
        table[name] = entry
    return table


def _markdown(table: dict[str, Any], posts: int) -> str:
    metric_infos = {**METRICS, **FAITHFULNESS}
    keys = [k for k in metric_infos if any(table[e][k]["n"] for e in table)]
    arrows = {k: "↑" if metric_infos[k].higher_is_better else "↓" for k in keys}
    head = "| explainer | " + " | ".join(f"{k} {arrows[k]}" for k in keys) + " | s/post |"
    counts = ", ".join(
        sorted(
            {f"{k} n = {max(table[e][k]['n'] for e in table)}" for k in FAITHFULNESS if k in keys}
        )
    )
    note = f"Posts with rationales: {posts}" + (f" (faithfulness: {counts})" if counts else "")
    lines = [note, "", head, "|" + " --- |" * (len(keys) + 2)]
    for name, entry in table.items():
        cells = [f"{entry[k]['mean']:.3f} ± {entry[k]['std']:.3f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {entry['seconds']['mean']:.3f} |")
    paper = ", ".join(f"{k} {m:.3f} (σ {s:.3f})" for k, (m, s) in PAPER_COSINE.items())
    lines += ["", f"Paper (cosine): {paper}."]
    return "\n".join(lines) + "\n"


def run_plausibility(
    adapter: ModelAdapter,
    data: str | Path,
    out: str | Path,
    *,
    explainers: list[str],
    limit: int | None = None,
    faithfulness: bool = True,
    faithfulness_posts: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``explainers`` on every post with rationales (see module docstring).

    Faithfulness (about 10 model calls per explainer and post) is computed on the first
    ``faithfulness_posts`` posts only when given; the table states n for every metric.
    """
    unknown = [e for e in explainers if e not in explainer_names()]
    if unknown:
        raise InputError(f"unknown explainers {unknown}; choose from {explainer_names()}")
    posts = load_hatexplain(data)[:limit]
    out = Path(out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    tokenizer = getattr(adapter, "tokenizer", None)
    filler = (
        getattr(tokenizer, "mask_token", None) or getattr(tokenizer, "unk_token", None) or "[UNK]"
    )
    atomic_write_json(
        out / "config.json",
        {
            "data": str(data),
            "explainers": explainers,
            "limit": limit,
            "faithfulness": faithfulness,
            "faithfulness_posts": faithfulness_posts,
            "filler": filler,
            "model": adapter.describe(),
            "environment": environment(),
        },
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(posts), desc="plausibility", unit="post")
    rows = []
    for i, post in enumerate(posts):
        path = out / "rows" / f"{i:05d}.json"
        if path.is_file():
            row = json.loads(path.read_text())
        else:
            faithful = faithfulness and (faithfulness_posts is None or i < faithfulness_posts)
            row = _post_row(adapter, post, explainers, faithful, filler)
            atomic_write_bytes(path, (json.dumps(row) + "\n").encode())
        rows.append(row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    table = summarize(rows, explainers)
    atomic_write_json(
        out / "results.json", {"table": table, "paper_cosine": PAPER_COSINE, "posts": len(rows)}
    )
    atomic_write_bytes(out / "table.md", _markdown(table, len(rows)).encode())
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["explainer", "metric", "mean", "std", "n"])
    for name, entry in table.items():
        for key, v in entry.items():
            writer.writerow([name, key, v["mean"], v["std"], v["n"]])
    atomic_write_bytes(out / "table.csv", buf.getvalue().encode())
    _plot(table, out / "plausibility.png")
    return table


def _plot(table: dict[str, Any], path: Path) -> None:
    from ..report import plots

    fig, ax = plots.plt.subplots(figsize=(7, 3.2))
    keys = [k for k in METRICS if any(table[e][k]["n"] for e in table)]
    width = 0.8 / max(1, len(table))
    for j, (name, entry) in enumerate(table.items()):
        xs = np.arange(len(keys)) + j * width
        ax.bar(
            xs,
            [entry[k]["mean"] for k in keys],
            width,
            yerr=[entry[k]["std"] for k in keys],
            label=name,
            capsize=2,
        )
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2)
    ax.set_xticklabels(keys)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean over posts (higher is better)")
    ax.legend(fontsize=8)
    plots.save_figure(fig, path)
