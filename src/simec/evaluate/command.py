"""The ``simec evaluate plausibility`` command: its arguments and its body.

``add_plausibility_arguments(parser)`` defines the options once (defaults and help included);
``run_plausibility(args)`` runs either the explainers on a model (``--model``) or an external
score file (``--scores``, no model needed), and prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from .hatexplain import UNITS
from .protocols import PROTOCOLS

__all__ = ["DESCRIPTION", "HELP", "add_plausibility_arguments", "run_plausibility"]

HELP = "explanations vs HateXplain rationales (HateXplain/ERASER or ferret protocol, cosine, AOPC)"
DESCRIPTION = (
    "Score explanations against HateXplain's human rationales under a named protocol "
    "(hatexplain: union gold, top-5 units, ERASER's IOU-F1, token-F1 and AUPRC; ferret: top-7 "
    "positive scores, token-F1, token-IOU, AUPRC), with the SiMEC paper's cosine as its own "
    "column. Either run explainers on a model (--model; resumable, one row per post, "
    "faithfulness too) or score a file of explanations from any tool (--scores SCORES.jsonl: "
    'one line {"id", "explainer", "scores"} per post and explainer; no model needed). Writes '
    "results.json, table.md, table.csv and a plot to --out."
)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("expected a number of at least 1")
    return value


def add_plausibility_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``simec evaluate plausibility``."""
    from ..explainers import explainer_names

    source = parser.add_argument_group("source of the explanations (one of)")
    source.add_argument("--model", metavar="DIR", help="a sequence classifier to explain")
    source.add_argument(
        "--scores",
        metavar="SCORES.jsonl",
        help='explanations from any tool: one line {"id": post id, "explainer": name, '
        '"scores": [one float per unit]} per post and explainer; with --unit pieces also '
        '"word_ids" (word index per piece, null for specials)',
    )
    parser.add_argument(
        "--data",
        required=True,
        metavar="FILE.jsonl",
        help="HateXplain JSONL (e.g. ../shared/data/hatexplain/validation.jsonl)",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS.names(),
        default="hatexplain",
        help="how gold, hard rationale and metrics are defined (default: %(default)s)",
    )
    parser.add_argument(
        "--unit",
        choices=UNITS,
        default="pieces",
        help="pieces: the classifier's word pieces with [CLS]/[SEP] (as HateXplain); words: "
        "HateXplain's words, a word scoring the max over its pieces (default: %(default)s)",
    )
    parser.add_argument(
        "--explainers",
        default="simec,rollout,relevancy,grad_x_input,random",
        help=f"with --model: comma list from: {', '.join(explainer_names())}",
    )
    parser.add_argument(
        "--limit",
        type=_at_least_one,
        default=None,
        metavar="N",
        help="with --model: only the first N posts with rationales",
    )
    parser.add_argument(
        "--no-faithfulness",
        action="store_true",
        help="with --model: skip comprehensiveness/sufficiency (faster)",
    )
    parser.add_argument(
        "--faithfulness-posts",
        type=_at_least_one,
        default=None,
        metavar="N",
        help="with --model: faithfulness on the first N posts only (it costs ~10 model calls "
        "per explainer and post)",
    )
    parser.add_argument(
        "--save-scores",
        metavar="FILE.jsonl",
        default=None,
        help="with --model: also write the explanations in the --scores format (per --unit), "
        "to re-score them later without the model",
    )
    parser.add_argument("--device", default="cpu", help="with --model: torch device")
    parser.add_argument(
        "--truncate", action="store_true", help="with --model: truncate over-long posts"
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for results.json, the table and plot"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_plausibility(args: argparse.Namespace) -> int:
    """Body of ``simec evaluate plausibility``; errors are ``InputError``s (one line)."""
    from .hatexplain import evaluate_model, evaluate_scores

    if (args.model is None) == (args.scores is None):
        raise InputError("give exactly one of --model DIR and --scores SCORES.jsonl")
    if args.scores is not None:
        model_only = {
            "--limit": args.limit is not None,
            "--faithfulness-posts": args.faithfulness_posts is not None,
            "--save-scores": args.save_scores is not None,
        }
        used = [flag for flag, given in model_only.items() if given]
        if used:
            raise InputError(f"{', '.join(used)} only apply with --model")
        evaluate_scores(args.data, args.scores, args.out, protocol=args.protocol, unit=args.unit)
    else:
        from ..models import load_adapter

        explainers = [e.strip() for e in args.explainers.split(",") if e.strip()]
        adapter = load_adapter(args.model, device=args.device, truncation=args.truncate)
        if adapter.modality != "text" or adapter.task != "classifier":
            raise InputError(
                f"--model {args.model!r} is a {type(adapter).__name__}: plausibility against "
                "HateXplain rationales needs a text classifier (*ForSequenceClassification)"
            )
        evaluate_model(
            adapter,
            args.data,
            args.out,
            explainers=explainers,
            protocol=args.protocol,
            unit=args.unit,
            limit=args.limit,
            faithfulness=not args.no_faithfulness,
            faithfulness_posts=args.faithfulness_posts,
            save_scores=args.save_scores,
            progress=not args.quiet,
        )
    print((Path(args.out) / "table.md").read_text())
    return 0
