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
:func:`main` makes the process-wide choices a library import never makes: torch's thread count
(``simec.configure_cpu``: the idle cores, unless ``--threads`` or ``OMP_NUM_THREADS`` says),
Hugging Face offline, quiet transformers.
Options that mirror a config dataclass are generated from its fields (see ``options``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import ModuleType
from typing import Any, NoReturn

import torch

from ..cpu import configure_cpu
from ..errors import SimecError
from ..registry import Registry
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
COMMANDS: Registry[ModuleType] = Registry(
    "command",
    {
        "explore": explore,
        "importance": importance,
        "demo": demo,
        "experiment": experiment,
        "evaluate": evaluate,
        "structure": structure,
        "equivalence": equivalence,
        "train": train,
        "view": view,
    },
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: finished work is kept."""


#: the SIGTERMs this process received (a walk turns any KeyboardInterrupt into its own stop)
_TERMINATED: list[int] = []


def _terminate(signum: int, frame: Any) -> None:
    _TERMINATED.append(signum)
    raise Terminated()


def _quiet_loading(args: argparse.Namespace) -> None:
    """No "Loading weights" bars with --quiet, or when stderr is not a terminal."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        hf_logging.disable_progress_bar()
    else:
        hf_logging.enable_progress_bar()


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(
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


#: command -> the dest of its subcommand (for error messages: "simec train vit: error: ...")
_SUBCOMMAND = {
    "train": "kind",
    "structure": "structure",
    "experiment": "experiment",
    "evaluate": "evaluation",
}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = getattr(args, _SUBCOMMAND.get(args.command, ""), None)
    command = f"{args.command} {sub}" if isinstance(sub, str) else args.command
    previous, threads_before = None, None
    _TERMINATED.clear()
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave SIGTERM alone
        pass
    try:
        check_common_options(args)
        _quiet_loading(args)
        threads_before = torch.get_num_threads()
        configure_cpu(getattr(args, "threads", None))  # the process's CPU choices: here only
        return int(args.func(args))
    except SimecError as exc:
        print(f"simec {command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read or write failed mid-run (disk full, folder removed, ...)
        where = f" {exc.filename}" if exc.filename else ""
        print(
            f"simec {command}: error: cannot read or write{where}: {exc.strerror or exc}; "
            "finished results are kept",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        if _TERMINATED:
            print(
                f"simec {command}: terminated (SIGTERM); finished results are kept",
                file=sys.stderr,
            )
            return 143
        print(f"simec {command}: interrupted; finished results are kept", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if threads_before is not None:  # main() called in-process leaves torch as it was
            torch.set_num_threads(threads_before)


def check_common_options(args: argparse.Namespace) -> None:
    """The options many commands share, checked before anything is loaded or computed:
    ``--device`` (a device this machine has), ``--seed`` (0 .. 2**63-1) and ``--out`` (a
    folder that can be created and written)."""
    from .._io import check_output_dir
    from ..checks import check_seed
    from ..errors import InputError
    from ..models.base import resolve_device

    device = getattr(args, "device", None)
    if isinstance(device, str):
        resolve_device(device)
    seed = getattr(args, "seed", None)
    if seed is not None and not isinstance(seed, bool):
        try:
            check_seed(seed)
        except InputError as exc:
            raise InputError(f"--{exc}") from None
    out = getattr(args, "out", None)
    if isinstance(out, str):
        check_output_dir(out)


if __name__ == "__main__":
    sys.exit(main())
