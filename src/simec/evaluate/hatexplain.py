"""``simec evaluate plausibility``: explanations vs HateXplain's human rationales.

Posts: those with rationales, i.e. whose majority label is hate speech or offensive (normal
posts have none and are excluded, as in HateXplain). Each annotator's 0/1 marks are kept; the
protocol (``protocols``) decides the gold (HateXplain and ferret: the union).

Units (``--unit``):
- ``pieces``: the classifier's word pieces with [CLS]/[SEP], as HateXplain scores BERT; a piece
  carries the marks of its word, specials are unmarked (0). The scores are the explainer's own
  per-piece scores.
- ``words``: HateXplain's ``post_tokens``; a word's score is the max over its pieces (a word cut
  off by truncation scores 0).

Two sources of scores: a model run (``evaluate_model``: every explainer on every post, the
target class = the model's prediction on the whole post; one JSON row per post is written
atomically as soon as it is done and a rerun skips finished posts) or a score file from any tool
(``evaluate_scores``, no model needed; format in ``scores``). Faithfulness (model runs only) is
AOPC over words, removed words replaced by the tokenizer's mask token (``faithfulness``).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_bytes, atomic_write_json, environment
from ..errors import InputError
from ..explainers import explain, explainer_names
from ..models.base import ModelAdapter, eval_mode
from .faithfulness import (
    FAITHFULNESS,
    aopc_comprehensiveness,
    aopc_sufficiency,
    hard_comprehensiveness,
    hard_sufficiency,
)
from .plausibility import MetricInfo, top_k
from .protocols import PROTOCOLS, Protocol, value_summary
from .scores import ScoreLine, read_scores, word_scores, write_scores

__all__ = [
    "HATEXPLAIN_PUBLISHED",
    "PAPER_COSINE",
    "UNITS",
    "evaluate_model",
    "evaluate_scores",
    "load_hatexplain",
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


def _keep(protocol: Protocol, word_ids: list[int | None] | None, unit: str, size: int):
    if unit == "pieces" and protocol.drop_specials and word_ids is not None:
        return np.array([w is not None for w in word_ids])
    return np.ones(size, dtype=bool)


def _score_entries(
    protocol: Protocol, posts: dict[str, dict], lines: list[ScoreLine], unit: str
) -> dict[str, list[dict[str, float]]]:
    """Per explainer, the protocol's per-post values."""
    per_explainer: dict[str, list[dict[str, float]]] = {}
    for line in lines:
        post = posts[line.id]
        if unit == "pieces":
            marks = unit_marks(post["marks"], line.word_ids, unit)
            scores = np.asarray(line.scores, dtype=np.float64)
        else:
            marks = unit_marks(post["marks"], None, unit)
            scores = (
                unit_scores(line.scores, line.word_ids, len(post["words"]), "words")
                if line.unit == "pieces"
                else np.asarray(line.scores, dtype=np.float64)
            )
        keep = _keep(protocol, line.word_ids, unit, scores.size)
        row = protocol.score_post(scores[keep], marks[:, keep])
        per_explainer.setdefault(line.explainer, []).append(row)
    return per_explainer


def _summarize(
    protocol: Protocol,
    per_explainer: dict[str, list[dict[str, float]]],
    extra: dict[str, dict[str, list[float]]] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name, rows in per_explainer.items():
        entry = protocol.aggregate(rows)
        for key, values in (extra or {}).get(name, {}).items():
            entry[key] = value_summary(values)
        table[name] = entry
    return table


def _metric_infos(protocol: Protocol) -> dict[str, MetricInfo]:
    return {**protocol.metrics, **FAITHFULNESS}


def _markdown(table: dict[str, Any], protocol: Protocol, unit: str, posts: int) -> str:
    infos = _metric_infos(protocol)
    keys = [k for k in infos if any(k in e and e[k]["n"] for e in table.values())]
    has_seconds = any("seconds" in e for e in table.values())
    arrows = {k: "↑" if infos[k].higher_is_better else "↓" for k in keys}
    head = "| explainer | " + " | ".join(f"{k} {arrows[k]}" for k in keys)
    head += " | s/post |" if has_seconds else " |"
    counts = ", ".join(
        sorted(
            {
                f"{k} n = {max(e[k]['n'] for e in table.values() if k in e)}"
                for k in FAITHFULNESS
                if k in keys
            }
        )
    )
    note = f"Protocol {protocol.name}, unit {unit}. Posts with rationales: {posts}"
    note += f" (faithfulness: {counts})" if counts else ""
    lines = [note, "", head, "|" + " --- |" * (len(keys) + 1 + has_seconds)]
    for name, entry in table.items():
        cells = [
            f"{entry[k]['value']:.3f} ± {entry[k]['std']:.3f}" if k in entry else "–" for k in keys
        ]
        tail = f" | {entry['seconds']['value']:.3f} |" if has_seconds else " |"
        lines.append(f"| {name} | " + " | ".join(cells) + tail)
    paper = ", ".join(f"{k} {m:.3f} (σ {s:.3f})" for k, (m, s) in PAPER_COSINE.items())
    lines += ["", f"Paper (cosine): {paper}."]
    if protocol.name == "hatexplain":
        cols = ["iou_f1", "token_f1", "auprc", "comprehensiveness", "sufficiency"]
        lines += [
            "",
            "HateXplain paper (test split, BERT-base trained on HateXplain; faithfulness of the "
            "top 5):",
            "",
            "| model | " + " | ".join(cols) + " |",
            "|" + " --- |" * (len(cols) + 1),
        ]
        for model, vals in HATEXPLAIN_PUBLISHED.items():
            lines.append(f"| {model} | " + " | ".join(f"{vals[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_results(
    out: Path,
    table: dict[str, Any],
    protocol: Protocol,
    unit: str,
    posts: int,
    **meta: Any,
) -> None:
    """results.json, table.md, table.csv and plausibility.png under ``out``."""
    infos = _metric_infos(protocol)
    if protocol.name == "hatexplain":
        meta = {"hatexplain_published": HATEXPLAIN_PUBLISHED, **meta}
    atomic_write_json(
        out / "results.json",
        {
            "protocol": protocol.name,
            "unit": unit,
            "posts": posts,
            "table": table,
            "metrics": {
                k: {
                    "lower": v.lower,
                    "upper": v.upper,
                    "higher_is_better": v.higher_is_better,
                    "description": v.description,
                }
                for k, v in infos.items()
            },
            "paper_cosine": PAPER_COSINE,
            **meta,
        },
    )
    atomic_write_bytes(out / "table.md", _markdown(table, protocol, unit, posts).encode())
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["explainer", "metric", "value", "std", "n"])
    for name, entry in table.items():
        for key, v in entry.items():
            writer.writerow([name, key, v["value"], v["std"], v["n"]])
    atomic_write_bytes(out / "table.csv", buf.getvalue().encode())
    _plot(table, protocol, out / "plausibility.png")


def _plot(table: dict[str, Any], protocol: Protocol, path: Path) -> None:
    from ..report import plots

    fig, ax = plots.subplots(figsize=(7, 3.2))
    keys = [k for k in protocol.metrics if any(k in e and e[k]["n"] for e in table.values())]
    width = 0.8 / max(1, len(table))
    for j, (name, entry) in enumerate(table.items()):
        xs = np.arange(len(keys)) + j * width
        ax.bar(
            xs,
            [entry[k]["value"] for k in keys],
            width,
            yerr=[entry[k]["std"] for k in keys],
            label=name,
            capsize=2,
        )
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2)
    ax.set_xticklabels(keys)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"{protocol.name} protocol (higher is better)")
    ax.legend(fontsize=8)
    plots.save_figure(fig, path)


def _protocol(name: str, unit: str) -> Protocol:
    protocol = PROTOCOLS.get(name)
    if unit not in UNITS:
        raise InputError(f"unknown unit {unit!r}; choose from {list(UNITS)}")
    return protocol


def evaluate_scores(
    data: str | Path,
    scores: str | Path,
    out: str | Path,
    *,
    protocol: str = "hatexplain",
    unit: str = "pieces",
) -> dict[str, Any]:
    """Score an external SCORES.jsonl against the posts of ``data`` (no model needed)."""
    proto = _protocol(protocol, unit)
    posts = load_hatexplain(data)
    with_rationale = {p["id"]: p for p in posts}
    lines = read_scores(scores, post_ids(data), with_rationale, unit=unit)
    if not lines:
        raise InputError(f"{scores}: no scores for any post with rationales in {data}")
    table = _summarize(proto, _score_entries(proto, with_rationale, lines, unit))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scored = len({line.id for line in lines})
    write_results(out, table, proto, unit, scored, data=str(data), scores=str(scores))
    return table


def _predictor(adapter: ModelAdapter, words: list[str], filler: str):
    seen: dict[tuple[bool, ...], np.ndarray] = {}  # the full post is asked for by every metric

    def predict(keep: np.ndarray) -> np.ndarray:
        key = tuple(bool(k) for k in keep)
        if key not in seen:
            kept = [w if k else filler for w, k in zip(words, keep)]
            prepared = adapter.prepare(kept)
            with torch.no_grad():
                logits = adapter.logits(prepared.embeddings, prepared)
            seen[key] = torch.softmax(logits, -1).cpu().numpy()
        return seen[key]

    return predict


def _piece_predictor(adapter: ModelAdapter, prepared: Any):
    """p(classes | pieces) for a keep mask over the post's pieces, as HateXplain's
    ``convert_data``: comprehensiveness deletes pieces (the rest, specials included, is run
    as is); sufficiency (``only=True``) runs [CLS] + the kept pieces + [SEP]. An empty
    remainder is run as [CLS] [SEP]."""
    model = getattr(adapter, "model", None)
    tokenizer = getattr(adapter, "tokenizer", None)
    ids = prepared.model_inputs.get("input_ids")
    if model is None or tokenizer is None or ids is None:
        return None
    ids = ids[0]
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id

    seen: dict[tuple[int, ...], np.ndarray] = {}  # the full post is asked for by every metric

    def run(selected: list[int]) -> np.ndarray:
        key = tuple(selected)
        if key not in seen:
            tensor = torch.tensor([selected], dtype=ids.dtype, device=ids.device)
            with torch.no_grad(), eval_mode(model):
                out = model(input_ids=tensor)
            logits = out.logits if hasattr(out, "logits") else out[0]
            seen[key] = torch.softmax(logits[0].float(), -1).cpu().numpy()
        return seen[key]

    def predict(keep: np.ndarray, only: bool = False) -> np.ndarray:
        kept = [int(t) for t, k in zip(ids.tolist(), keep) if k]
        if only or not kept:
            kept = [cls_id, *kept, sep_id]
        return run(kept)

    return predict


def _post_row(
    adapter: ModelAdapter,
    post: dict,
    explainers: list[str],
    faithful: bool,
    filler: str,
    faithful_top5: bool = False,
) -> dict[str, Any]:
    words = post["words"]
    prepared = adapter.prepare(words)
    if prepared.word_ids is None:
        raise InputError("the tokenizer gives no word ids (a fast tokenizer is needed)")
    with torch.no_grad():
        probs = torch.softmax(adapter.logits(prepared.embeddings, prepared), -1)
    target = int(probs.argmax())
    row: dict[str, Any] = {
        "format": 2,
        "id": post["id"],
        "label": post["label"],
        "words": len(words),
        "predicted": adapter.labels[target],
        "tokens": list(prepared.segment_names),
        "word_ids": list(prepared.word_ids),
        "explainers": {},
    }
    predict = _predictor(adapter, words, filler) if faithful else None
    by_piece = _piece_predictor(adapter, prepared) if faithful_top5 else None
    for name in explainers:
        t0 = time.perf_counter()
        exp = explain(adapter, words, name, target=target)
        seconds = time.perf_counter() - t0
        pieces = [float(v) for v in exp.scores.tolist()]
        result: dict[str, Any] = {"seconds": seconds, "piece_scores": pieces}
        if predict is not None:
            scores = word_scores(pieces, prepared.word_ids, len(words))
            result["comprehensiveness"] = aopc_comprehensiveness(predict, scores, target)
            result["sufficiency"] = aopc_sufficiency(predict, scores, target)
        if by_piece is not None:
            hard = top_k(np.asarray(pieces), 5)
            result["comprehensiveness_top5"] = hard_comprehensiveness(by_piece, hard, target)
            result["sufficiency_top5"] = hard_sufficiency(
                by_piece, hard, target, alone=lambda keep: by_piece(keep, only=True)
            )
        row["explainers"][name] = result
    return row


def evaluate_model(
    adapter: ModelAdapter,
    data: str | Path,
    out: str | Path,
    *,
    explainers: list[str],
    protocol: str = "hatexplain",
    unit: str = "pieces",
    limit: int | None = None,
    faithfulness: bool = True,
    faithfulness_posts: int | None = None,
    save_scores: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``explainers`` on every post with rationales and score them (module docstring).

    Faithfulness (about 10 model calls per explainer and post) is computed on the first
    ``faithfulness_posts`` posts only when given; the table states n for every metric.
    """
    proto = _protocol(protocol, unit)
    unknown = [e for e in explainers if e not in explainer_names()]
    if unknown:
        raise InputError(f"unknown explainers {unknown}; choose from {explainer_names()}")
    if not explainers:
        raise InputError("no explainers given")
    posts = load_hatexplain(data)[:limit]
    out = Path(out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    tokenizer = getattr(adapter, "tokenizer", None)
    filler = (
        getattr(tokenizer, "mask_token", None) or getattr(tokenizer, "unk_token", None) or "[UNK]"
    )
    config = {
        "data": str(data),
        "explainers": explainers,
        "protocol": protocol,
        "unit": unit,
        "limit": limit,
        "faithfulness": faithfulness,
        "faithfulness_posts": faithfulness_posts,
        "filler": filler,
        "model": adapter.describe(),
        "environment": environment(),
    }
    atomic_write_json(out / "config.json", config)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(posts), desc="plausibility", unit="post")
    rows = []
    for i, post in enumerate(posts):
        path = out / "rows" / f"{i:05d}.json"
        row = json.loads(path.read_text()) if path.is_file() else None
        if (
            row is None
            or row.get("format") != 2
            or row.get("id") != post["id"]
            or any(e not in row["explainers"] for e in explainers)
        ):
            faithful = faithfulness and (faithfulness_posts is None or i < faithfulness_posts)
            row = _post_row(adapter, post, explainers, faithful, filler, faithfulness)
            atomic_write_bytes(path, (json.dumps(row) + "\n").encode())
        rows.append(row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    lines = [
        ScoreLine(r["id"], name, r["explainers"][name]["piece_scores"], "pieces", r["word_ids"])
        for r in rows
        for name in explainers
    ]
    if save_scores is not None:
        write_scores(save_scores, lines, unit=unit, words={p["id"]: len(p["words"]) for p in posts})
    extra = {
        name: {
            key: [r["explainers"][name][key] for r in rows if key in r["explainers"][name]]
            for key in [*FAITHFULNESS, "seconds"]
        }
        for name in explainers
    }
    by_id = {p["id"]: p for p in posts}
    table = _summarize(proto, _score_entries(proto, by_id, lines, unit), extra)
    write_results(out, table, proto, unit, len(rows), config=config)
    return table
