"""Command line ``simec``: one module per command, each with ``add_arguments`` and ``run``.

=================  ===========================================================
module             command
=================  ===========================================================
``explore``        ``simec explore`` (one input, or a data set run)
``importance``     ``simec importance`` (Algorithm 3)
``demo``           ``simec demo``
``train``          ``simec train vit|text-classifier|mlm-head``
``experiment``     ``simec experiment vit-exploration|vision-explainers|text-exploration``
``evaluate``       ``simec evaluate plausibility``
``structure``      ``simec structure match|spectrum|lipschitz``
``equivalence``    ``simec equivalence A B`` (bounds on the pseudodistance, Definitions 4-5)
``view``           ``simec view`` (the interactive viewer of runs, one HTML file)
``options``        options generated from config dataclasses; the shared options
=================  ===========================================================

A command's parser gets ``func`` (its ``run``) by ``set_defaults``; :func:`main` calls it.
Options that mirror a config dataclass are generated from its fields (see ``options``).
"""

from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType

from ..errors import SimecError
from . import (
    demo,
    equivalence,
    evaluate,
    experiment,
    explore,
    importance,
    structure,
    train,
    view,
)

__all__ = ["COMMANDS", "DESCRIPTION", "build_parser", "main"]

DESCRIPTION = """\
simec shows how a Transformer sees its input space. It pulls the output metric back through the
model's Jacobian onto the input embeddings and walks inside the input's equivalence class (SiMEC:
inputs the model cannot tell apart) or across classes (SiMExp)."""

#: command name -> its module (``HELP``, optional ``DESCRIPTION``/``EPILOG``, ``add_arguments``,
#: ``run`` unless its subcommands set their own ``func``)
COMMANDS: dict[str, ModuleType] = {
    "explore": explore,
    "importance": importance,
    "demo": demo,
    "experiment": experiment,
    "evaluate": evaluate,
    "structure": structure,
    "equivalence": equivalence,
    "train": train,
    "view": view,
}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="simec", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"simec {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name, module in COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", None),
            epilog=getattr(module, "EPILOG", None),
            # an epilog of examples keeps its layout
            formatter_class=(
                argparse.RawDescriptionHelpFormatter
                if hasattr(module, "EPILOG")
                else argparse.HelpFormatter
            ),
        )
        module.add_arguments(sub)
        if hasattr(module, "run"):
            sub.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SimecError as exc:
        print(f"simec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
