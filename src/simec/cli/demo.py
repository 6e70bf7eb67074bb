"""``simec demo``: the whole vision pipeline on the shipped MNIST ViT (no data needed)."""

from __future__ import annotations

import argparse

from .options import add_device, add_quiet, add_seed, non_negative_int

HELP = "run the whole vision pipeline on the shipped MNIST ViT (no data needed)"
DESCRIPTION = (
    "Patch importance, SiMEC and SiMExp walks, decoded images and the class "
    "probability along both walks, on the shipped MNIST ViT and a shipped digit. Writes "
    "DIR/report.html with its PNG figures."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default="simec-demo",
        metavar="DIR",
        help="folder for the report (default: %(default)s)",
    )
    parser.add_argument(
        "--steps",
        type=non_negative_int,
        default=300,
        help="iterations of each walk (default: %(default)s)",
    )
    add_seed(parser)
    add_device(parser)
    parser.add_argument(
        "--model",
        default=None,
        metavar="DIR",
        help="another image classifier directory instead of the shipped one",
    )
    parser.add_argument(
        "--image",
        default=None,
        metavar="FILE",
        help="another image (PNG/.npy) instead of the shipped digit",
    )
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    path = run_demo(
        args.out,
        steps=args.steps,
        seed=args.seed,
        device=args.device,
        model=args.model,
        image=args.image,
        progress=not args.quiet,
    )
    print(f"report written to {path}")
    return 0
