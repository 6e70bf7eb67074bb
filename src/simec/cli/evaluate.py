"""``simec evaluate plausibility``: score explanations against human rationales.

The options are generated from :class:`simec.evaluate.rationales.PlausibilityConfig`; the body
is ``run_plausibility`` there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluate.rationales import PlausibilityConfig
from .options import add_dataclass_arguments, add_quiet, dataclass_from_args

HELP = "score explanations against human rationales"
PLAUSIBILITY_HELP = (
    "explanations vs HateXplain rationales (HateXplain/ERASER or ferret protocol, cosine, AOPC)"
)
PLAUSIBILITY_DESCRIPTION = (
    "Score explanations against HateXplain's human rationales under a named protocol "
    "(hatexplain: union gold, top-5 units, ERASER's IOU-F1, token-F1 and AUPRC; ferret: top-7 "
    "positive scores, token-F1, token-IOU, AUPRC), with the SiMEC paper's cosine as its own "
    "column. Either run explainers on a model (--model; resumable, one row per post, "
    "faithfulness too) or score a file of explanations from any tool (--scores SCORES.jsonl: "
    'one line {"id", "explainer", "scores"} per post and explainer; no model needed). Writes '
    "results.json, table.md, table.csv and a plot to --out."
)
#: the source of the explanations, one of them
SOURCE_FIELDS = ("model", "scores")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    evs = parser.add_subparsers(dest="evaluation", metavar="EVALUATION")
    evs.required = True
    pl = evs.add_parser(
        "plausibility", help=PLAUSIBILITY_HELP, description=PLAUSIBILITY_DESCRIPTION
    )
    source = pl.add_argument_group("source of the explanations (one of)")
    add_dataclass_arguments(source, PlausibilityConfig, include=SOURCE_FIELDS)
    add_dataclass_arguments(pl, PlausibilityConfig, exclude=SOURCE_FIELDS)
    add_quiet(pl)
    pl.set_defaults(func=run_plausibility)


def run_plausibility(args: argparse.Namespace) -> int:
    from ..evaluate.rationales import run_plausibility

    cfg = dataclass_from_args(PlausibilityConfig, args)
    run_plausibility(cfg, progress=not args.quiet)
    print((Path(cfg.out) / "table.md").read_text())
    return 0
