"""``simec evaluate plausibility``: score explanations against human rationales.

The options and the command's body live with the protocols they choose, in
``simec.evaluate.command`` (``add_plausibility_arguments`` / ``run_plausibility``).
"""

from __future__ import annotations

import argparse

from ..evaluate.command import HELP as PLAUSIBILITY_HELP
from ..evaluate.command import add_plausibility_arguments

HELP = "score explanations against human rationales"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    evs = parser.add_subparsers(dest="evaluation", metavar="EVALUATION")
    evs.required = True
    pl = evs.add_parser(
        "plausibility",
        help=PLAUSIBILITY_HELP,
        description="Score explanations against HateXplain's rationales under a named protocol "
        "(--protocol hatexplain: ERASER's metrics run HateXplain's way; ferret), from a model's "
        "explainers (--model, --explainers) or from a scores file of any tool (--scores). "
        "Writes results.json, a markdown/CSV table and a plot. Resumable with --model.",
    )
    add_plausibility_arguments(pl)
    pl.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate.command import run_plausibility

    return run_plausibility(args)
