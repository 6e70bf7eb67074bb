"""``simec demo``: the whole vision pipeline on the shipped MNIST ViT (no data needed)."""

from __future__ import annotations

import argparse

from ..demo import DemoConfig
from .options import add_dataclass_arguments, add_quiet, dataclass_from_args

HELP = "run the whole vision pipeline on the shipped MNIST ViT (no data needed)"
DESCRIPTION = (
    "Patch importance, SiMEC and SiMExp walks, decoded images and the class "
    "probability along both walks, on the shipped MNIST ViT and a shipped digit. Writes "
    "DIR/report.html with its PNG figures."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, DemoConfig)
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    path = run_demo(dataclass_from_args(DemoConfig, args), progress=not args.quiet)
    print(f"report written to {path}")
    return 0
