"""Figures. Every function takes an optional ``ax`` and returns ``(fig, ax)``; nothing is shown.

A figure made here (no ``ax`` given) is a :class:`matplotlib.figure.Figure` drawn by Agg, made
without pyplot: the process's matplotlib backend is never set or changed (in Jupyter, show one
with ``display(fig)``, or pass an ``ax`` from ``plt.subplots``), and nothing has to be closed.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "figure",
    "subplots",
    "patch_grid",
    "plot_image",
    "plot_image_strip",
    "plot_decoded_picture",
    "plot_decoded_strip",
    "picture_caption",
    "DISAGREE_COLOUR",
    "plot_patch_importance",
    "plot_probability_traces",
    "mask_scale",
    "plot_prompt_probabilities",
    "plot_token_importance",
    "plot_curve_outputs",
    "save_figure",
]


def figure(figsize: tuple[float, float] = (4, 4), **options: Any) -> Figure:
    """A new figure drawn by Agg, without pyplot (the backend stays as it is)."""
    fig = Figure(figsize=figsize, **options)
    FigureCanvasAgg(fig)
    return fig


def subplots(
    nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (4, 4), **options: Any
) -> tuple[Figure, Any]:
    """``plt.subplots`` without pyplot: a :func:`figure` and its axes (``options`` go to
    ``Figure.subplots``, e.g. ``squeeze=False``)."""
    fig = figure(figsize)
    return fig, fig.subplots(nrows, ncols, **options)


def _axes(ax: Any, figsize: tuple[float, float] = (4, 4)) -> tuple[Any, Any]:
    if ax is None:
        return subplots(figsize=figsize)
    return ax.figure, ax


def _gray(image: Any) -> np.ndarray:
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3):
        arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    return arr


def patch_grid(scores: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """The last rows*cols scores (patch tokens; special tokens come first) as a 2-D grid."""
    rows, cols = grid
    return scores[-rows * cols :].detach().cpu().numpy().reshape(rows, cols)


def plot_image(image: Any, *, ax: Any = None, title: str | None = None) -> tuple[Any, Any]:
    fig, ax = _axes(ax, (2.2, 2.2))
    ax.imshow(_gray(image), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return fig, ax


def plot_patch_importance(
    scores: torch.Tensor,
    grid: tuple[int, int],
    *,
    image: Any = None,
    ax: Any = None,
    title: str | None = None,
) -> tuple[Any, Any]:
    """Heatmap of per-patch importance (brighter = more sensitive), over the image if given."""
    fig, ax = _axes(ax)
    heat = patch_grid(scores, grid)
    if image is not None:
        img = _gray(image)
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, extent=(0, img.shape[1], img.shape[0], 0))
        shown = ax.imshow(
            heat, cmap="inferno", alpha=0.6, extent=(0, img.shape[1], img.shape[0], 0)
        )
    else:
        shown = ax.imshow(heat, cmap="inferno")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="max eigenvalue")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return fig, ax


def plot_probability_traces(
    traces: Mapping[str, Sequence[float]],
    *,
    ax: Any = None,
    ylabel: str = "probability",
    title: str | None = None,
) -> tuple[Any, Any]:
    """One line per named trace (e.g. the original class' probability along SiMEC and SiMExp)."""
    fig, ax = _axes(ax, (6, 3.2))
    for name, values in traces.items():
        ax.plot(np.arange(len(values)), np.asarray(values, dtype=float), label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=10)
    return fig, ax


def plot_curve_outputs(
    outputs: Any,
    labels: Sequence[str],
    *,
    ax: Any = None,
    title: str | None = None,
    top: int = 4,
) -> tuple[Any, Any]:
    """The model's outputs (m, q) along a curve of m points: one line per class (the ``top``
    classes with the largest values anywhere on the curve)."""
    fig, ax = _axes(ax, (6.5, 3.2))
    values = np.asarray(torch.as_tensor(outputs).detach().cpu(), dtype=float)
    t = np.linspace(0.0, 1.0, len(values))
    for c in np.argsort(-values.max(0))[:top]:
        ax.plot(t, values[:, c], label=str(labels[c]) if c < len(labels) else str(c))
    ax.set_xlabel("position along the curve (A = 0, B = 1)")
    ax.set_ylabel("output")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig, ax


def plot_image_strip(
    images: Sequence[Any], captions: Sequence[str], *, fig: Any = None, title: str | None = None
) -> tuple[Any, Any]:
    """A row of images with captions; returns (fig, axes)."""
    n = len(images)
    if fig is None:
        fig = figure((1.6 * n, 2.0))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, img, cap in zip(axes, images, captions):
        plot_image(img, ax=ax, title=cap)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, axes


#: the colour of a caption whose picture's class differs from its embedding's
DISAGREE_COLOUR = "#d62728"


def picture_caption(picture: str, embedding: str | None = None) -> tuple[str, bool]:
    """``("embedding: 2 · picture: 8", False)``: the class of an explored point and the class the
    model gives its decoded picture, and whether they agree; ``("class: 8", True)`` for a
    picture without an embedding (the input itself)."""
    if embedding is None:
        return f"class: {picture}", True
    return f"embedding: {embedding} · picture: {picture}", embedding == picture


def plot_decoded_picture(
    image: Any,
    picture: str,
    embedding: str | None = None,
    *,
    header: str = "",
    ax: Any,
    fontsize: float = 8,
) -> tuple[Any, Any]:
    """One decoded picture captioned with its own class and its point's (``picture_caption``),
    under an optional header line; caption and frame in ``DISAGREE_COLOUR`` where the two
    classes differ. Returns (fig, ax)."""
    caption, agree = picture_caption(picture, embedding)
    plot_image(image, ax=ax)
    colour = "black" if agree else DISAGREE_COLOUR
    ax.set_title(f"{header}\n{caption}" if header else caption, fontsize=fontsize, color=colour)
    if not agree:
        for spine in ax.spines.values():
            spine.set_edgecolor(DISAGREE_COLOUR)
            spine.set_linewidth(2.5)
    return ax.figure, ax


def plot_decoded_strip(
    images: Sequence[Any],
    picture_labels: Sequence[str],
    *,
    embedding_labels: Sequence[str | None] | None = None,
    headers: Sequence[str] | None = None,
    fig: Any = None,
    title: str | None = None,
) -> tuple[Any, Any]:
    """A row of decoded pictures, each captioned with the class the model gives the picture
    (``picture_labels``) beside its embedding's class (``embedding_labels``; None for a picture
    that is no decoded point, e.g. the input), under an optional header line. A picture whose
    class differs from its embedding's gets its caption and frame in ``DISAGREE_COLOUR``.
    The classes are data: the caller classifies the pictures. Returns (fig, axes)."""
    n = len(images)
    embedding = list(embedding_labels) if embedding_labels is not None else [None] * n
    head = list(headers) if headers is not None else [""] * n
    if not (len(picture_labels) == len(embedding) == len(head) == n):
        raise ValueError(
            f"{n} pictures but {len(picture_labels)} picture labels, {len(embedding)} "
            f"embedding labels and {len(head)} headers"
        )
    if fig is None:
        fig = figure((max(2.2 * n, 3.0), 2.5))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, img, pic, emb, top in zip(axes, images, picture_labels, embedding, head):
        plot_decoded_picture(img, pic, emb, header=top, ax=ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, axes


def save_figure(fig: Any, path: Any, *, dpi: int = 110) -> None:
    """Write ``fig`` (PNG at ``dpi``, tight box); a figure pyplot manages is closed after."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    pyplot = sys.modules.get("matplotlib.pyplot")  # only if the caller uses pyplot already
    if pyplot is not None:
        pyplot.close(fig)


def plot_token_importance(
    tokens: Sequence[str],
    scores: Any,
    *,
    ax: Any = None,
    title: str | None = None,
    cmap: str = "Blues",
    width: float = 7.0,
    vmax: float | None = None,
) -> tuple[Any, Any]:
    """Tokens as running text, each on a background whose darkness is its score (Figure 2).

    Scores are scaled by ``vmax`` (default: their maximum) and clipped to [0, 1], so one token
    far above the rest (a masked LM's [MASK]) can be put off the scale; a zero vector stays white.
    """
    vals = np.asarray(scores.tolist() if isinstance(scores, torch.Tensor) else scores, float)
    if len(vals) != len(tokens):
        raise ValueError(f"{len(tokens)} tokens but {len(vals)} scores")
    top = float(vmax) if vmax is not None else (float(np.max(vals)) if len(vals) else 0.0)
    norm = np.clip(vals / top, 0.0, 1.0) if top > 0 else np.zeros_like(vals)
    colours = matplotlib.colormaps[cmap]
    fig, ax = _axes(ax, (width, 1.0))
    ax.set_axis_off()
    renderer = fig.canvas.get_renderer()
    ax_width = ax.get_window_extent(renderer).width
    x, line, placed = 0.0, 0, []
    for token, value in zip(tokens, norm):
        text = ax.text(
            x,
            0,
            token,
            fontsize=11,
            color="white" if value > 0.6 else "black",
            bbox={"facecolor": colours(0.08 + 0.92 * value), "edgecolor": "none", "pad": 2},
            transform=ax.transAxes,
            va="top",
        )
        w = text.get_window_extent(renderer).width / ax_width + 0.012
        if x > 0 and x + w > 1.0:
            line += 1
            x = 0.0
        placed.append((text, x, line))
        x += w
    lines = line + 1
    fig.set_size_inches(width, 0.45 * lines + (0.35 if title else 0.1))
    for text, tx, tline in placed:
        text.set_position((tx, 1 - (tline + 0.15) / lines))
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    return fig, ax


def mask_scale(tokens: Sequence[str], scores: Any, mask_token: str | None) -> float | None:
    """Colour-scale maximum that leaves a masked LM's [MASK] off the scale (None: no mask).

    At the [MASK] position the pullback is orders of magnitude larger than at the context
    tokens, which would otherwise all be drawn white.
    """
    vals = scores.tolist() if isinstance(scores, torch.Tensor) else list(scores)
    others = [v for t, v in zip(tokens, vals) if t != mask_token]
    if mask_token is None or mask_token not in tokens or not others:
        return None
    return max(others)


def plot_prompt_probabilities(
    series: Mapping[str, tuple[Any, Any, Any]],
    *,
    axes: Any = None,
    label: str = "original class",
    bins: int = 20,
) -> tuple[Any, Any]:
    """Figure 4: p(i*) of alternative prompts along the iterations, split by outcome.

    ``series`` maps an algorithm name to (iterations, p_original, changed) arrays of equal
    length, one entry per alternative prompt. Left: the prompts whose prediction changed (Y_c);
    middle: those that kept it (Y_s); right: the share of Y_c in ``bins`` iteration bins, which
    the dense scatter hides.
    """
    if axes is None:
        fig, axes = subplots(1, 3, figsize=(13, 3.4))
    else:
        fig = axes[0].figure
    for name, (it, p, changed) in series.items():
        it, p, changed = (np.asarray(a) for a in (it, p, changed))
        mask = changed.astype(bool)
        for panel, keep in ((0, mask), (1, ~mask)):
            axes[panel].scatter(it[keep], p[keep], s=3, alpha=0.25, label=f"{name} ({keep.sum()})")
        edges = np.linspace(it.min(), it.max() + 1, bins + 1)
        which = np.clip(np.digitize(it, edges) - 1, 0, bins - 1)
        share = [mask[which == b].mean() if (which == b).any() else np.nan for b in range(bins)]
        axes[2].plot((edges[:-1] + edges[1:]) / 2, share, marker="o", ms=3, label=name)
    axes[0].set_title("Y_c: prediction changed", fontsize=10)
    axes[1].set_title("Y_s: prediction kept", fontsize=10)
    axes[2].set_title("share of prompts in Y_c", fontsize=10)
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8, markerscale=3)
    axes[0].set_ylabel(f"p({label}) of the prompt")
    fig.tight_layout()
    return fig, axes
