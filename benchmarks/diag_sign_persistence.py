"""How often does an eigensolver flip the sign of a block's eigenvector from one step to the next?

Issue 25, M7 for `q2`. The official code moves each explored patch along an eigenvector of its
block g_i = J_i^T J_i exactly as ``torch.linalg.eigh`` returns it, so the walk's persistence
(how long a patch keeps moving one way along the same eigenvector) is the solver's sign
convention. The blocks have rank <= q (10 logits) of h = 48, and LAPACK implementations fix the
sign of such eigenvectors differently, some of them unstably under the tiny changes one step
makes. This script walks committed rows' SiMExp walks (same inputs, segments, seeds and the
code's settings; ``--sign`` as in ``diag_m7_temperature.py``), keeps every step's blocks
(rebuilt in float64 from their spectra, as the ``eigh`` signs of that script do) and decomposes
each sequence with each solver. A flip is a step where an eigenvector among the block's
``--top`` largest points against the previous step's (cosine < 0), counted only where the two
are clearly the same eigenvector (|cosine| > 0.9).

    python benchmarks/diag_sign_persistence.py --rows results/interpretations-mnist-token \
        --only 00001-r0-eta10-q2,00004-r0-eta10-q2 --steps 200

A sign that flips with probability P at each step keeps its direction for 1/P steps on
average; P = 0.5 is an independent random sign (ours), P = 0 a fixed one. A solver's flips need
not be spread evenly: the script also gives the share of tracks (one block's j-th largest
eigenvector along the walk) that never flip in the recorded steps, which keep pushing one way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import diag_m7_temperature as diag  # noqa: E402  (the benchmarks folder is not a package)

from simec import explore, load_adapter  # noqa: E402
from simec.data import load_idx_dataset  # noqa: E402
from simec.experiments.interpretations.config import config_from_dict  # noqa: E402
from simec.explore import blocks as explore_blocks  # noqa: E402
from simec.geometry.blocks import BlockSpectra  # noqa: E402


def flip_rate(blocks: list[torch.Tensor], solver: str, top: int) -> tuple[int, int, float]:
    """(flips, comparisons, share of tracks never flipped) of the ``top`` largest eigenvectors
    over consecutive blocks; a track is one block's j-th largest eigenvector along the walk."""
    flips = compared = 0
    previous = None
    per_track = None
    for g in blocks:
        vectors = diag.SOLVERS[solver](g)[:, :, -top:].cpu().numpy()
        if previous is not None:
            cosine = np.einsum("mhc,mhc->mc", vectors, previous)
            same = np.abs(cosine) > 0.9
            flipped = same & (cosine < 0)
            per_track = flipped.astype(int) if per_track is None else per_track + flipped
            flips += int(flipped.sum())
            compared += int(same.sum())
        previous = vectors
    never = float((per_track == 0).mean()) if per_track is not None else float("nan")
    return flips, compared, never


def solvers() -> list[str]:
    """The solvers to compare: every one of ``diag.SOLVERS``, the GPU's where there is one."""
    return [s for s in diag.SOLVERS if s != "eigh-cuda" or torch.cuda.is_available()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="results/interpretations-mnist-token")
    ap.add_argument("--only", required=True, help="comma list of image row names")
    ap.add_argument("--steps", type=int, default=200, help="steps of each walk to record")
    ap.add_argument("--top", type=int, default=10, help="eigenvectors compared per block")
    ap.add_argument("--sign", default="random", help="the walk's sign (diag_m7_temperature.py)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    folder = Path(args.rows)
    cfg = config_from_dict(json.loads((folder / "config.json").read_text())["config"])
    adapter = load_adapter(cfg.model)
    data = load_idx_dataset(cfg.data)
    walk_sign = args.sign
    chooser, persistent = diag.sign_chooser(walk_sign)
    blocks: list[torch.Tensor] = []

    def recording(
        spectra: BlockSpectra,
        generator: torch.Generator | None,
        *,
        strict: bool = True,
        sign: str = "random",
    ) -> torch.Tensor:
        blocks.append(diag.rebuilt_blocks(spectra))
        return chooser(spectra, generator, strict=strict, sign=sign)

    explore_blocks.block_nonnull_directions = recording  # type: ignore[assignment]
    print(
        f"load average {os.getloadavg()[0]:.2f}; walks with sign {walk_sign}, {args.steps} steps, "
        f"top {args.top} eigenvectors per block; torch {torch.__version__}, numpy {np.__version__}"
    )
    names = solvers()
    totals = {s: [0, 0] for s in names}
    print(
        "row | blocks | " + " | ".join(f"{s}: flips per step, tracks never flipped" for s in names)
    )
    for name in [n for n in args.only.split(",") if n]:
        row = json.loads((folder / "rows" / f"{name}.json").read_text())
        ecfg = replace(cfg.explore_config("simexp", row["eta"], row["segments"]), steps=args.steps)
        ecfg = diag.walk_config(ecfg, walk_sign, persistent, row["seed"])
        blocks.clear()
        explore(adapter, data.images[row["index"]], ecfg, seed=row["seed"])
        cells = []
        for solver in names:
            flips, compared, never = flip_rate(blocks, solver, args.top)
            totals[solver][0] += flips
            totals[solver][1] += compared
            cells.append(f"{flips / max(compared, 1):.4f} ({flips}/{compared}), {never:.2f}")
        print(f"{name} | {blocks[0].shape[0]} | " + " | ".join(cells), flush=True)
    print(
        "all | | "
        + " | ".join(f"{f / max(c, 1):.4f} ({f}/{c})" for f, c in (totals[s] for s in totals))
    )


if __name__ == "__main__":
    main()
