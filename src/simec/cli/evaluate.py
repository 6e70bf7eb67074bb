"""``simec evaluate plausibility``: score explanations against human rationales."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluate.hatexplain import PlausibilityConfig
from .options import add_dataclass_arguments, add_quiet, dataclass_from_args

HELP = "score explanations against human rationales"
#: PlausibilityConfig fields in --help order (all of them)
PLAUSIBILITY_FIELDS = (
    "model",
    "data",
    "explainers",
    "limit",
    "faithfulness",
    "faithfulness_posts",
    "device",
    "truncate",
    "out",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    evs = parser.add_subparsers(dest="evaluation", metavar="EVALUATION")
    evs.required = True
    pl = evs.add_parser(
        "plausibility",
        help="explainers vs HateXplain rationales (cosine, token-F1, IOU-F1, AUPRC, AOPC)",
        description="Run every explainer on every HateXplain post with rationales; write a "
        "table (markdown, CSV, JSON) with mean ± std per metric and seconds per post, and a "
        "plot. Resumable: finished posts are kept.",
    )
    add_dataclass_arguments(pl, PlausibilityConfig, include=PLAUSIBILITY_FIELDS)
    add_quiet(pl)
    pl.set_defaults(func=run_plausibility)


def run_plausibility(args: argparse.Namespace) -> int:
    from ..evaluate.hatexplain import run_plausibility
    from ..models import load_adapter

    cfg = dataclass_from_args(PlausibilityConfig, args)
    adapter = load_adapter(cfg.model, device=cfg.device, truncation=cfg.truncate)
    run_plausibility(
        adapter,
        cfg.data,
        cfg.out,
        explainers=list(cfg.explainers),
        limit=cfg.limit,
        faithfulness=cfg.faithfulness,
        faithfulness_posts=cfg.faithfulness_posts,
        progress=not args.quiet,
    )
    print((Path(cfg.out) / "table.md").read_text())
    return 0
