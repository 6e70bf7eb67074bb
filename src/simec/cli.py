"""Command line ``simec``: thin, its options become the ExploreConfig the API takes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .errors import SimecError

DESCRIPTION = """\
simec shows how a Transformer sees its input space. It pulls the output metric back through the
model's Jacobian onto the input embeddings and walks inside the input's equivalence class (SiMEC:
inputs the model cannot tell apart) or across classes (SiMExp)."""

EXPLORE_EPILOG = """\
examples:
  simec explore --model runs/vit --input digit.png --algorithm simec --steps 1000 --out out/a
  simec explore --model runs/vit --input digit.npy --space pixels --algorithm simexp --out out/b
  simec explore --model runs/bert --input "you are all corrupt" --segments 1-3 --out out/c

outputs (in --out):
  summary.json            the full configuration, package versions, per-step probabilities,
                          predicted classes, lambda_max, step sizes, ranks, drift, stop reason
  trajectory.safetensors  the explored points p_k (every --record-every steps, and the last)
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {value}")
    return value


def _at_least_one(text: str) -> int:
    value = _positive_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected a number of at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "off") else _positive_float(text)


def build_parser() -> argparse.ArgumentParser:
    from .explore.config import ALGORITHMS, PROJECTIONS, ExploreConfig
    from .geometry.metrics import output_metric_names
    from .geometry.spectrum import METHODS

    defaults = ExploreConfig()
    parser = argparse.ArgumentParser(
        prog="simec", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"simec {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    ex = commands.add_parser(
        "explore",
        help="walk the input space of a model from one input (SiMEC or SiMExp)",
        description="Explore the input space of a model from one input with SiMEC (stay in the "
        "equivalence class) or SiMExp (move across classes).",
        epilog=EXPLORE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = ex.add_argument_group("what to explore")
    what.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="a model directory saved with save_pretrained() "
        "(*ForImageClassification or *ForSequenceClassification)",
    )
    what.add_argument(
        "--input",
        required=True,
        metavar="FILE_OR_TEXT",
        help="an image (.png/.jpg/.npy) for vision models; the text itself "
        "(or a .txt file) for text models",
    )
    what.add_argument(
        "--space",
        choices=["embeddings", "pixels"],
        default="embeddings",
        help="vision models: explore the embeddings output (default) or the pixels directly",
    )
    what.add_argument(
        "--segments",
        default="all",
        metavar="SPEC",
        help="segments (tokens/patches) to update, e.g. '0,3,5-9' (default: all)",
    )
    what.add_argument(
        "--truncate",
        action="store_true",
        help="text models: keep the first tokens of an over-long text instead of failing",
    )

    how = ex.add_argument_group("how to walk")
    how.add_argument(
        "--algorithm",
        choices=list(ALGORITHMS),
        default=defaults.algorithm,
        help="simec: null directions, delta = 1/sqrt(lmax); simexp: non-null "
        "eigenvectors, delta = 2/sqrt(lmax) (default: %(default)s)",
    )
    how.add_argument(
        "--steps",
        type=_positive_int,
        default=defaults.steps,
        metavar="K",
        help="number of iterations (default: %(default)s)",
    )
    how.add_argument(
        "--method",
        choices=list(METHODS),
        default=defaults.method,
        help="spectral back-end: lowrank = thin SVD of G^1/2 J, O(q^2 n); exact = "
        "eigh of the n x n pullback, O(n^3) (default: %(default)s)",
    )
    how.add_argument(
        "--output-metric",
        choices=output_metric_names(),
        default=defaults.output_metric,
        help="metric on the model output that is pulled back (default: %(default)s)",
    )
    how.add_argument(
        "--step-multiplier",
        type=_positive_float,
        default=defaults.step_multiplier,
        metavar="X",
        help="multiplies the paper's step size (default: %(default)s)",
    )
    how.add_argument(
        "--max-step",
        type=_optional_float,
        default=defaults.max_step,
        metavar="X",
        help="cap each step at X * ||x0|| of the explored segments; 'none' for the "
        "uncapped paper rule (default: %(default)s)",
    )
    how.add_argument(
        "--projection",
        choices=list(PROJECTIONS),
        default=defaults.projection,
        help="project onto the box of the original embedding values at the end "
        "(Algorithm 1 line 11), after every step, or never (default: %(default)s)",
    )
    how.add_argument(
        "--corrector",
        action="store_true",
        help="SiMEC: pull each step back onto the level set N(x) = N(x0) with "
        "Gauss-Newton iterations",
    )
    how.add_argument(
        "--rtol",
        type=float,
        default=None,
        metavar="X",
        help="eigenvalues below X * lmax count as zero (default: the back-end's round-off level)",
    )
    how.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: 0)")

    run = ex.add_argument_group("run")
    run.add_argument("--out", required=True, metavar="DIR", help="folder for the results")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    run.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="float64 for reference-quality spectra (default: float32)",
    )
    run.add_argument(
        "--record-every",
        type=_at_least_one,
        default=1,
        metavar="k",
        help="store every k-th point of the trajectory (default: 1)",
    )
    run.add_argument(
        "--chunk-size",
        type=_at_least_one,
        default=None,
        metavar="C",
        help="pull back at most C output rows at once (caps Jacobian memory)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _read_input(text: str, adapter: Any) -> Any:
    from .models.hf_text import HFSequenceClassifierAdapter

    if isinstance(adapter, HFSequenceClassifierAdapter):
        path = Path(text)
        if path.suffix == ".txt" and path.is_file():
            return path.read_text().strip()
        return text
    return text  # an image path: the adapter reads and validates it


def run_explore(args: argparse.Namespace) -> int:
    from .explore import ExploreConfig, explore, parse_segments
    from .models import load_adapter

    config = ExploreConfig(
        algorithm=args.algorithm,
        steps=args.steps,
        method=args.method,
        output_metric=args.output_metric,
        step_multiplier=args.step_multiplier,
        max_step=args.max_step,
        segments=parse_segments(args.segments),
        projection=args.projection,
        corrector=args.corrector,
        seed=args.seed,
        record_every=args.record_every,
        rtol=args.rtol,
        chunk_size=args.chunk_size,
        extra={
            "model_dir": str(Path(args.model).resolve()),
            "input": args.input,
            "space": args.space,
            "device": args.device,
            "dtype": args.dtype,
            "argv": sys.argv[1:],
        },
    ).validate()
    adapter = load_adapter(
        args.model, space=args.space, device=args.device, dtype=args.dtype, truncation=args.truncate
    )
    result = explore(adapter, _read_input(args.input, adapter), config, progress=not args.quiet)
    out = result.save(args.out)
    labels = result.labels
    first, last = result.predicted[0], result.predicted[-1]
    print(
        f"{config.algorithm}: {result.steps_completed} steps in {result.elapsed_seconds:.1f} s "
        f"({result.stop_reason}); predicted {labels[first]!r} "
        f"(p={float(result.probabilities[0, first]):.4f}) -> {labels[last]!r} "
        f"(p={float(result.probabilities[-1, last]):.4f}); results in {out}/"
    )
    return 0 if result.stop_reason == "completed" else 3


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "explore":
            return run_explore(args)
    except SimecError as exc:
        print(f"simec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simec: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
