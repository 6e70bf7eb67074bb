"""``simec view RUN_DIR [RUN_DIR ...] --out FILE.html``: the viewer of runs as one HTML file."""

from __future__ import annotations

import argparse

from ..report.viewer import DEFAULT_DATASET_FRAMES, DEFAULT_MAX_FRAMES
from .options import number

HELP = "write one self-contained HTML file to scrub through exploration runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN_DIR",
        help="a run folder (summary.json); several runs of the same input are shown side by "
        "side with one slider; or one dataset run folder (manifest.jsonl) for an index",
    )
    parser.add_argument("--out", required=True, metavar="FILE.html", help="the HTML file to write")
    parser.add_argument(
        "--model",
        default=None,
        metavar="DIR",
        help="the model that decodes the stored points and classifies the decoded input "
        "(default: the model directory each run recorded)",
    )
    parser.add_argument(
        "--max-frames",
        type=number(int, minimum=2),
        default=None,
        metavar="N",
        help=f"decoded steps per run, evenly subsampled beyond N (default {DEFAULT_MAX_FRAMES}; "
        f"{DEFAULT_DATASET_FRAMES} per input of a dataset run)",
    )
    parser.add_argument(
        "--mlm",
        default=None,
        metavar="DIR",
        help="text runs: a masked-LM model sharing the classifier's embeddings (simec train "
        "mlm-head); adds its alternative prompts at every shown step",
    )
    parser.add_argument(
        "--alternatives",
        type=number(int, minimum=2),
        default=5,
        metavar="K",
        help="alternative prompts per step with --mlm (default: %(default)s)",
    )
    parser.add_argument("--title", default=None, help="the page title")
    parser.add_argument(
        "--no-compress",
        dest="compress",
        action="store_false",
        help="inline plotly.js as is (4.8 MB instead of 1.9 MB gzip-packed) for browsers "
        "without DecompressionStream (before Chrome 80, Firefox 113, Safari 16.4)",
    )


def run(args: argparse.Namespace) -> int:
    from ..report.viewer import write_viewer

    out = write_viewer(
        args.runs,
        args.out,
        model=args.model,
        max_frames=args.max_frames,
        title=args.title,
        compress=args.compress,
        mlm=args.mlm,
        alternatives=args.alternatives,
    )
    size = out.stat().st_size / 1e6
    print(f"viewer in {out} ({size:.1f} MB); open it in a browser")
    return 0
