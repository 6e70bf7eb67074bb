"""The plausibility table: per-post values of a protocol, their summary per explainer, and the
files written from it (results.json, table.md, table.csv, plausibility.png)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes, atomic_write_json
from .faithfulness import FAITHFULNESS
from .hatexplain import HATEXPLAIN_PUBLISHED, PAPER_COSINE, unit_marks, unit_scores
from .plausibility import MetricInfo
from .protocols import Protocol, value_summary
from .scores import ScoreLine

__all__ = ["score_lines", "summarize", "write_results"]

#: explainer -> metric -> {"value", "std", "n"}
Table = dict[str, dict[str, dict[str, float]]]


def _keep(protocol: Protocol, word_ids: list[int | None] | None, unit: str, size: int):
    if unit == "pieces" and protocol.drop_specials and word_ids is not None:
        return np.array([w is not None for w in word_ids])
    return np.ones(size, dtype=bool)


def score_lines(
    protocol: Protocol, posts: dict[str, dict], lines: list[ScoreLine], unit: str
) -> dict[str, list[dict[str, float]]]:
    """Per explainer, the protocol's per-post values of the score ``lines``."""
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


def summarize(
    protocol: Protocol,
    per_explainer: dict[str, list[dict[str, float]]],
    extra: dict[str, dict[str, list[float]]] | None = None,
) -> Table:
    """The protocol's summary per explainer, plus ``extra`` values (explainer -> key -> values:
    faithfulness, seconds) summarized as mean, std and n."""
    table: Table = {}
    for name, rows in per_explainer.items():
        entry = protocol.aggregate(rows)
        for key, values in (extra or {}).get(name, {}).items():
            entry[key] = value_summary(values)
        table[name] = entry
    return table


def _metric_infos(protocol: Protocol) -> dict[str, MetricInfo]:
    return {**protocol.metrics, **FAITHFULNESS}


def _markdown(table: Table, protocol: Protocol, unit: str, posts: int) -> str:
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
    table: Table,
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


def _plot(table: Table, protocol: Protocol, path: Path) -> None:
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
