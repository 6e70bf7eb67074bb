"""``simec structure match|spectrum|lipschitz``: embedding-space structure of a vision model."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from ..registry import Registry
from ..structure.commands import (
    LipschitzConfig,
    MatchConfig,
    SpectrumConfig,
    StructureConfig,
    structure_lipschitz,
    structure_match,
    structure_spectrum,
)
from .options import add_dataclass_arguments, dataclass_from_args

HELP = "embedding-space structure of a vision transformer"
DESCRIPTION = (
    "Embedding-space structure of a Hugging Face vision model: ViT, DeiT, BEiT, "
    "Swin, ViT-MSN classifiers, or ViT-MAE / CLIP vision models without a head "
    "(--embedding cls or pooled). The images: an IDX data set (--data), or your own image "
    "files or folders (--input; match: --source and --target). Images are resized to the "
    "model's input size."
)
#: (help, its config, the function that runs it)
Analysis = tuple[str, type[StructureConfig], Callable[[Any], dict[str, Any]]]
#: analysis name -> Analysis
ANALYSES: Registry[Analysis] = Registry(
    "structure analysis",
    {
        "match": (
            "change source images until their embedding matches a target's",
            MatchConfig,
            structure_match,
        ),
        "spectrum": (
            "singular values of the embedding's Jacobian and its null space",
            SpectrumConfig,
            structure_spectrum,
        ),
        "lipschitz": (
            "local directional Lipschitz constants, random vs optimised",
            LipschitzConfig,
            structure_lipschitz,
        ),
    },
)
#: options in --help order: the shared ones, the analysis' own, then seed, device, out
FIRST = ("model", "data", "dataset", "count", "kind")
LAST = ("seed", "device", "out", "overwrite")
RENAME = {"kind": "embedding"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sts = parser.add_subparsers(dest="structure", metavar="ANALYSIS")
    sts.required = True
    for name, (text, cls, _) in ANALYSES.items():
        sp = sts.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        own = [f for f in cls.__dataclass_fields__ if f not in (*FIRST, *LAST)]
        add_dataclass_arguments(sp, cls, include=[*FIRST, *own, *LAST], rename=RENAME)
        sp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    _, cls, analyse = ANALYSES[args.structure]
    summary = analyse(dataclass_from_args(cls, args))
    print(json.dumps(summary, indent=2))
    return 0
