"""``simec evaluate plausibility``: score explanations against human rationales."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_device, add_model, add_out, add_quiet, at_least_one

HELP = "score explanations against human rationales"


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
    from ..explainers import explainer_names

    add_model(pl, help="a sequence classifier")
    pl.add_argument(
        "--data",
        required=True,
        metavar="FILE.jsonl",
        help="HateXplain JSONL (e.g. ../shared/data/hatexplain/validation.jsonl)",
    )
    pl.add_argument(
        "--explainers",
        default="simec,rollout,relevancy,grad_x_input,random",
        help=f"comma list from: {', '.join(explainer_names())}",
    )
    pl.add_argument(
        "--limit",
        type=at_least_one,
        default=None,
        metavar="N",
        help="only the first N posts with rationales",
    )
    pl.add_argument(
        "--no-faithfulness", action="store_true", help="skip comprehensiveness/sufficiency (faster)"
    )
    pl.add_argument(
        "--faithfulness-posts",
        type=at_least_one,
        default=None,
        metavar="N",
        help="compute faithfulness on the first N posts only (it costs ~10 model calls per "
        "explainer and post)",
    )
    add_device(pl)
    pl.add_argument("--truncate", action="store_true", help="truncate over-long posts")
    add_out(pl)
    add_quiet(pl)
    pl.set_defaults(func=run_plausibility)


def run_plausibility(args: argparse.Namespace) -> int:
    from ..evaluate.hatexplain import run_plausibility
    from ..models import load_adapter

    adapter = load_adapter(args.model, device=args.device, truncation=args.truncate)
    explainers = [e.strip() for e in args.explainers.split(",") if e.strip()]
    run_plausibility(
        adapter,
        args.data,
        args.out,
        explainers=explainers,
        limit=args.limit,
        faithfulness=not args.no_faithfulness,
        faithfulness_posts=args.faithfulness_posts,
        progress=not args.quiet,
    )
    print((Path(args.out) / "table.md").read_text())
    return 0
