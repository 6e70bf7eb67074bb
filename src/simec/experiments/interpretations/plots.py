"""The M1 figure: p(original class) and max p along the walks, mean ± sd over runs."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "plot_original_vs_top",
]


def plot_original_vs_top(
    curves: dict[str, dict[str, np.ndarray]], *, ax: Any = None, title: str | None = None
) -> tuple[Any, Any]:
    """M1: mean ± sd over runs of p(original class) (solid) and max_c p(c) (dashed) along the
    walks, one colour per algorithm (``curves``: name -> its curves, as
    ``tables.write_tables`` makes them)."""
    from ...report import plots

    if ax is None:
        fig, ax = plots.subplots(figsize=(6, 3.4))
    else:
        fig = ax.figure
    for n, (name, c) in enumerate(curves.items()):
        colour = f"C{n}"
        for key, style in (("orig", "-"), ("top", "--")):
            mean, sd = c[f"{key}_mean"], c[f"{key}_sd"]
            label = f"{name} {'original class' if key == 'orig' else 'top class'}"
            ax.plot(c["steps"], mean, style, color=colour, label=label)
            ax.fill_between(c["steps"], mean - sd, mean + sd, color=colour, alpha=0.12)
    ax.set_xlabel("iteration")
    ax.set_ylabel("probability (from embeddings)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig, ax
