"""Why do SiMExp walks with the official code's settings hardly change MNIST's output for the
`one` and `q2` patch sets (issue 25, M7)? A diagnostic of the direction each patch moves along.

With the code's per-token blocks, each explored patch i moves along the top eigenvector v_i of
its own block G_i = J_i^T J_i (J_i: the 10 x 48 Jacobian of the logits with respect to patch i,
the identity metric on the logits). The logits then change by u_i = J_i v_i. Softmax ignores a
change that moves every logit by the same amount. This script measures, at the start of each
walk of the committed one/q2 rows:

* ``common``: the share of ||u||^2 in the all-ones direction (1 = every logit moves alike, so
  the probabilities do not move; 1/10 for a random direction);
* ``effect``: |d log p(original)| per unit of ||u||, that is |u_orig - p . u| / ||u|| (the
  first-order change of the log-probability of the original class);
* ``ceiling``: the largest ``effect`` any direction can have, ||e_orig - p|| (about
  sqrt(2) (1 - p(original)) for a confident model: a saturated softmax);
* the same two numbers for the patch's *second* eigenvector and for the top eigenvector of the
  block with the common mode removed (the metric on centred logits), for comparison.

The u of every explored patch is summed, as one step of the code moves them all at once. Each
patch's sign is drawn at random: a random walk, like our SiMExp.

    python benchmarks/diag_m7_common_mode.py --rows results/interpretations-mnist-token-one-q2/rows
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from simec import load_adapter
from simec.data import load_idx_dataset


def _numbers(u: torch.Tensor, p: torch.Tensor, orig: int) -> tuple[float, float]:
    ones = torch.ones_like(u) / u.numel() ** 0.5
    norm = float(torch.linalg.vector_norm(u))
    common = float((u @ ones) ** 2) / norm**2
    effect = abs(float(u[orig] - p @ u)) / norm
    return common, effect


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="src/simec/assets/vit-mnist")
    ap.add_argument("--data", default="../shared/data/mnist")
    ap.add_argument("--rows", default="results/interpretations-mnist-token-one-q2/rows")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(args.seed)
    adapter = load_adapter(args.model)
    data = load_idx_dataset(args.data)
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(
        "row | patches | p(orig) | ceiling | top eigvec: common, effect | "
        "2nd eigvec: common, effect | top of centred block: common, effect | "
        "sum over patches, random signs: common, effect"
    )
    for path in sorted(Path(args.rows).glob("*.json")):
        row = json.loads(path.read_text())
        raw = data.images[row["index"]]
        prepared = adapter.prepare(raw)
        x = prepared.embeddings.detach().double()
        with torch.no_grad():
            logits = adapter.logits(x.float(), prepared).double().flatten()
        p = torch.softmax(logits, -1)
        orig = int(p.argmax())
        assert orig == row["predicted"], (orig, row["predicted"])

        def f(z: torch.Tensor, prepared: object = prepared) -> torch.Tensor:
            return adapter.logits(z, prepared).flatten()

        jac = torch.func.jacrev(f)(x.float()).double()  # (10, rows, width)
        centre = torch.eye(10, dtype=torch.float64) - 1.0 / 10
        top, second, centred, total = [], [], [], torch.zeros(10, dtype=torch.float64)
        for i in row["segments"]:
            j = jac[:, i, :]  # (10, 48)
            vals, vecs = torch.linalg.eigh(j.T @ j)
            u1, u2 = j @ vecs[:, -1], j @ vecs[:, -2]
            top.append(_numbers(u1, p, orig))
            second.append(_numbers(u2, p, orig))
            jc = centre @ j
            vc = torch.linalg.eigh(jc.T @ jc)[1][:, -1]
            centred.append(_numbers(j @ vc, p, orig))
            sign = 1.0 if torch.rand((), generator=gen) < 0.5 else -1.0
            total += sign * u1

        def mean(pairs: list[tuple[float, float]]) -> str:
            c = sum(a for a, _ in pairs) / len(pairs)
            e = sum(b for _, b in pairs) / len(pairs)
            return f"{c:.3f}, {e:.3f}"

        summed = _numbers(total, p, orig)
        ceiling = float(torch.linalg.vector_norm(torch.eye(10, dtype=p.dtype)[orig] - p))
        print(
            f"{path.stem} | {len(row['segments'])} | {float(p[orig]):.4f} | {ceiling:.4f} | "
            f"{mean(top)} | "
            f"{mean(second)} | {mean(centred)} | {summed[0]:.3f}, {summed[1]:.3f}"
        )


if __name__ == "__main__":
    main()
