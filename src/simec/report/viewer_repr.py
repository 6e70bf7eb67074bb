"""The compact HTML of an ExplorationResult in Jupyter (``_repr_html_``): facts and one plot."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from .viewer_data import first_change, run_from_result

__all__ = ["compact_html"]


def _probability_png(probabilities: Any, top: int, label: str, change: int | None) -> str:
    from matplotlib.figure import Figure  # no pyplot: leaves the notebook's backend alone

    fig = Figure(figsize=(4.2, 1.8), dpi=80)
    ax = fig.subplots()
    ax.plot(range(len(probabilities)), probabilities[:, top], lw=1.4)
    if change is not None:
        ax.axvline(change, color="grey", ls="--", lw=1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel(f"p({label})", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def compact_html(result: Any) -> str:
    run = run_from_result(result)
    probs = run.probabilities
    predicted = probs.argmax(1).tolist()
    labels = run.labels
    top, change = predicted[0], first_change(predicted)
    config = run.config
    rows = [
        ("algorithm", config.get("algorithm", "?")),
        ("input", run.summary.get("input") or ""),
        ("steps", f"{len(probs) - 1} ({run.summary.get('stop_reason', '?')})"),
        (
            "class",
            f"{labels[top]} (p = {probs[0, top]:.4f}) \u2192 {labels[predicted[-1]]} "
            f"(p = {probs[-1, predicted[-1]]:.4f})",
        ),
        ("first class change", "never" if change is None else f"step {change}"),
    ]
    table = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    png = _probability_png(probs, top, labels[top], change)
    return (
        "<div class='simec-result'><b>ExplorationResult</b>"
        f"<table>{table}</table><img src='{png}' alt='p along the walk'>"
        "<div style='color:#555;font-size:.85em'>result.view('walk.html') writes the "
        "interactive viewer (slider over the walk, decoded input, probabilities)</div></div>"
    )
