"""How many of a per-token block's eigenvalues does the official code's absolute threshold drop?

Issue 25. The code counts a block eigenvalue |lambda| < 0.01 as zero (``--atol 0.01``); our
default threshold is relative to the block's largest eigenvalue, at round-off. For the rows'
first point (the input itself) this prints, per digit, the top eigenvalues of every explored
block g_i = J_i^T J_i (J_i: the Jacobian of the logits, the identity output metric, with respect
to patch i's embedding; float64 eigendecomposition) and the share of them at or below the
threshold, i.e. how often SiMExp's uniform draw among "non-null" eigenvectors picks one the code
would never draw.

    python benchmarks/diag_block_spectra.py --rows results/interpretations-mnist-token
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from simec import load_adapter
from simec.data import load_idx_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=Path, required=True, help="an interpretations folder (MNIST)")
    p.add_argument("--model", default="src/simec/assets/vit-mnist")
    p.add_argument("--data", default="../shared/data/mnist")
    p.add_argument("--set", default="q2", help="the rows' segment set (default q2)")
    p.add_argument("--threshold", type=float, default=0.01, help="the code's atol (0.01)")
    p.add_argument("--top", type=int, default=10, help="eigenvalues per block (default 10)")
    a = p.parse_args()
    torch.set_num_threads(1)
    adapter = load_adapter(a.model)
    data = load_idx_dataset(a.data)
    paths = sorted(a.rows.glob(f"rows/*-r0-eta10-{a.set}.json"))
    if not paths:
        raise SystemExit(f"no repetition-0, eta-10 '{a.set}' rows in {a.rows}/rows")
    print(f"blocks of the '{a.set}' rows; top {a.top} eigenvalues each; threshold {a.threshold}")
    print(
        "digit | blocks | median largest eigenvalue | share of top eigenvalues <= threshold "
        "| blocks with every eigenvalue <= threshold"
    )
    shares = []
    for path in paths:
        row = json.loads(path.read_text())
        prepared = adapter.prepare(data.images[row["index"]])
        jac = torch.autograd.functional.jacobian(
            lambda z, prepared=prepared: adapter.logits(z, prepared), prepared.embeddings
        )  # (q, tokens, width)
        blocks = jac[:, row["segments"], :].double()  # (q, m, width)
        g = torch.einsum("qmh,qmk->mhk", blocks, blocks)  # g_i = J_i^T J_i, one per patch
        lam = torch.linalg.eigvalsh(g).flip(-1)[:, : a.top]  # (m, top), largest first
        share = float((lam <= a.threshold).double().mean())
        shares.append(share)
        print(
            f"{row['input_id']} | {len(row['segments'])} | {float(lam[:, 0].median()):.3g} | "
            f"{share:.2f} | {int((lam[:, 0] <= a.threshold).sum())}"
        )
    print(f"mean share over {len(paths)} digits: {sum(shares) / len(shares):.2f}")


if __name__ == "__main__":
    main()
