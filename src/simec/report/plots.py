"""Figures. Every function takes an optional ``ax`` and returns ``(fig, ax)``; nothing is shown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

__all__ = [
    "patch_grid",
    "plot_image",
    "plot_image_strip",
    "plot_patch_importance",
    "plot_probability_traces",
    "save_figure",
]


def _axes(ax: Any, figsize: tuple[float, float] = (4, 4)) -> tuple[Any, Any]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
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


def plot_image_strip(
    images: Sequence[Any], captions: Sequence[str], *, fig: Any = None, title: str | None = None
) -> tuple[Any, Any]:
    """A row of images with captions; returns (fig, axes)."""
    n = len(images)
    if fig is None:
        fig = plt.figure(figsize=(1.6 * n, 2.0))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, img, cap in zip(axes, images, captions):
        plot_image(img, ax=ax, title=cap)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, axes


def save_figure(fig: Any, path: Any, *, dpi: int = 110) -> None:
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
