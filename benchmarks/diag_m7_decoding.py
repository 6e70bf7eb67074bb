"""Why do decoded MNIST pictures disagree with SiMExp's embeddings (M7)? A diagnostic.

For SiMExp walks with the interpretations experiment's settings (paper-final step rule, the
embedding layer's analytic box projected every step, logits metric), it splits the end point's
displacement x_K - x_0 on the patch rows into the part inside range(W) of the patch embedding
(what the pseudo-inverse decoder can keep) and the rest, and classifies four versions of the end
point: the embedding itself, the embedding with only its range(W) part kept (no [0, 1] cap),
the decoded picture (range part, then the [0, 1] cap), and the original. If the range-only
embedding is classified like the decoded picture and unlike the embedding, the disagreement
comes from the directions the decoder cannot see, not from the pixel cap.

    python benchmarks/diag_m7_decoding.py --digits 0,3,8 --steps 1000
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from simec import ExploreConfig, explore, load_adapter
from simec.data import load_idx_dataset
from simec.interpret import ViTDecoder
from simec.models.cache import resolve_model_path


def _l1(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="src/simec/assets/vit-mnist")
    ap.add_argument("--data", default="../shared/data/mnist")
    ap.add_argument("--digits", default="0,3,8", help="classes; the first validation image of each")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eta", type=float, default=10.0)
    ap.add_argument("--box", default="embedding-bounds", choices=("embedding-bounds", "input"))
    ap.add_argument(
        "--step-rule",
        default="paper-final",
        choices=("paper-final", "paper-v1"),
        help="paper-v1: the toolkit's default step (delta = c/sqrt(lambda_max), capped)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    adapter = load_adapter(args.model)
    decoder = ViTDecoder(adapter)
    data = load_idx_dataset(args.data, split="test", kind="mnist")
    pool = json.loads((resolve_model_path(args.model) / "split.json").read_text())[
        "validation_indices"
    ]
    print(
        f"load average {os.getloadavg()[0]:.2f}; SiMExp, step rule {args.step_rule}"
        + (f" eta={args.eta:g}" if args.step_rule == "paper-final" else "")
        + f", {args.steps} steps, box {args.box}, all patches"
    )
    print(
        "digit | kept in range(W) | class emb/range-only/picture | "
        "L1(emb, picture) | L1(range-only, picture) | L1(emb, range-only)"
    )
    for cls in [int(c) for c in args.digits.split(",")]:
        i = next(int(j) for j in pool if int(data.labels[j]) == cls)
        raw = data.images[i]
        prepared = adapter.prepare(raw)
        final = args.step_rule == "paper-final"
        cfg = ExploreConfig(
            algorithm="simexp",
            steps=args.steps,
            step_rule=args.step_rule,
            box=args.box,
            projection="step",
            output_metric="euclidean-logits",
            segments=tuple(range(1, adapter.num_patches + 1)),
            record_every=args.steps,
            **({"eta": args.eta, "max_step": None} if final else {}),
        )
        res = explore(adapter, raw, cfg, seed=args.seed)
        traj = res.trajectory.to(decoder.weight)
        start, end = traj[0], traj[-1]
        d = (end - start)[1:]  # patch rows (row 0 is CLS, not explored)
        kept = d @ decoder._range.T
        frac = float(torch.linalg.vector_norm(kept) / torch.linalg.vector_norm(d))
        range_only = end.clone()
        range_only[1:] = start[1:] + kept
        with torch.no_grad():
            p_emb = torch.softmax(adapter.logits(end, prepared).double(), -1).flatten()
            p_rng = torch.softmax(adapter.logits(range_only, prepared).double(), -1).flatten()
            picture = decoder.to_image(
                end, original=adapter.image(raw), explored_segments=res.explored_segments
            )
            p_pic = torch.softmax(adapter.image_logits(picture[None]).double(), -1).flatten()
        print(
            f"{cls} | {frac:.3f} | {int(p_emb.argmax())}/{int(p_rng.argmax())}/"
            f"{int(p_pic.argmax())} | {_l1(p_emb, p_pic):.3f} | {_l1(p_rng, p_pic):.3f} | "
            f"{_l1(p_emb, p_rng):.3f}"
        )


if __name__ == "__main__":
    main()
