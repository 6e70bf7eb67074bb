"""``simec importance``: rank tokens/patches by sensitivity (Algorithm 3)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..explore.config import ExploreConfig
from .explore import read_input
from .options import (
    add_dataclass_arguments,
    add_device,
    add_dtype,
    add_model,
    add_out,
    add_overwrite,
)

HELP = "rank tokens/patches by sensitivity (Algorithm 3)"
DESCRIPTION = (
    "Per-segment importance: the largest eigenvalue of the pullback metric "
    "restricted to each token/patch. Writes importance.json (and importance.png for images)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model(parser, help="a saved model directory")
    parser.add_argument("--input", required=True, metavar="FILE_OR_TEXT", help="image file or text")
    add_dataclass_arguments(parser, ExploreConfig, include=["method", "output_metric"])
    add_device(parser)
    add_dtype(parser)
    add_out(parser, help="folder for the results")
    add_overwrite(parser)


def text_importance_views(imp: Any, out: Path, mask_token: str | None = None) -> None:
    """importance.png (Figure 2 style), importance.html and word-level scores for a text."""
    from .._io import atomic_write_json
    from ..explainers import aggregate_word_pieces
    from ..report import plots
    from ..report.html import Report

    label = imp.labels[imp.predicted]
    title = f"predicted: {label}"
    vmax = plots.mask_scale(imp.segment_names, imp.scores, mask_token)
    if vmax is not None:
        title += f" (colours scaled without {mask_token}, which is off the scale)"
    fig, _ = plots.plot_token_importance(imp.segment_names, imp.scores, title=title, vmax=vmax)
    plots.save_figure(fig, out / "importance.png")
    words, word_scores = aggregate_word_pieces(imp.segment_names, imp.scores, rule="max")
    atomic_write_json(
        out / "word_importance.json",
        {
            "rule": "max over a word's pieces; special tokens dropped",
            "words": words,
            "scores": word_scores.tolist(),
        },
    )
    rep = Report("simec: token importance")
    rep.paragraph(f"Predicted: {label} (p = {float(imp.probabilities.max()):.3f})")
    rep.heading("Word pieces (Algorithm 3: largest eigenvalue of the restricted pullback)")
    rep.tokens(imp.segment_names, imp.scores.tolist())
    rep.heading("Words (max over their pieces)")
    rep.tokens(words, word_scores.tolist())
    rep.table(["token", "importance"], [[t, f"{v:.4g}"] for t, v in imp.ranking()])
    rep.write(out / "importance.html")


def run(args: argparse.Namespace) -> int:
    from .._io import atomic_write_json, check_output_dir, environment
    from ..interpret import segment_importance
    from ..models import as_image_model, load_adapter

    check_output_dir(args.out, results=("importance.json",), overwrite=args.overwrite)
    adapter = load_adapter(args.model, device=args.device, dtype=args.dtype)
    raw = read_input(args.input, adapter)
    imp = segment_importance(adapter, raw, output_metric=args.output_metric, method=args.method)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / "importance.json",
        {
            "segments": imp.segment_names,
            "scores": imp.scores.tolist(),
            "probabilities": imp.probabilities.tolist(),
            "labels": imp.labels,
            "predicted": imp.labels[imp.predicted],
            "config": {k: v for k, v in vars(args).items() if k not in ("func", "overwrite")},
            "environment": environment(),
        },
    )
    image_model = as_image_model(adapter)
    if image_model is not None and image_model.patch_size:
        from ..report import plots

        grid = image_model.patch_grid
        fig, _ = plots.plot_patch_importance(imp.scores, grid)  # type: ignore[arg-type]
        plots.save_figure(fig, out / "importance.png")
    elif adapter.modality == "text":
        text_importance_views(imp, out, getattr(adapter.tokenizer, "mask_token", None))
    for name, score in imp.ranking()[:10]:
        print(f"{score:12.5g}  {name}")
    print(f"predicted {imp.labels[imp.predicted]!r}; results in {out}/")
    return 0
