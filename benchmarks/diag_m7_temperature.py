"""Does a less confident model let SiMExp (the official code's settings) move the output?

Issue 25, M7 for `one`/`q2`. Our SiMExp walks with the code's per-token blocks and step rule end
at p(original) 0.991-0.992, against the paper's 0.943 / 0.921. With the code's step rule one step
changes the logits by about eta * 1e-3, whatever the model. A model with smaller logit margins
should then lose more probability in the same 1000 steps. This script tests that directly. It
divides the shipped model's logits by a temperature T: a copy of the model's folder whose
classifier weight and bias are divided by T, so the classes and their order are unchanged and
only the margins shrink. Then it reruns the committed rows' SiMExp walks (same inputs,
segments, seed and walk settings, read from the rows and their config.json) and reports
p(original) at the start, at the end, and at its lowest point along the walk.

    python benchmarks/diag_m7_temperature.py --temperatures 1,2 --rows \
        results/interpretations-mnist-token-one-q2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import simec
from simec import explore, load_adapter
from simec.data import load_idx_dataset
from simec.experiments.interpretations.config import config_from_dict
from simec.models.cache import resolve_model_path


def tempered(model_dir: str, temperature: float, tmp: Path) -> simec.TorchAdapter:
    """The model saved again with its classifier weight and bias divided by T (logits / T),
    beside a copy of every other file of its folder (preprocessing, labels), then loaded like
    the original: the user's model and folder are not changed."""
    source = resolve_model_path(model_dir)
    folder = tmp / f"T{temperature:g}"
    shutil.copytree(source, folder)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    tensors["classifier.weight"] = tensors["classifier.weight"] / temperature
    tensors["classifier.bias"] = tensors["classifier.bias"] / temperature
    save_file(tensors, weights, metadata={"format": "pt"})
    return load_adapter(str(folder))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="results/interpretations-mnist-token-one-q2")
    ap.add_argument("--temperatures", default="1,2")
    ap.add_argument("--only", default="", help="comma list of row names (default: every row)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    folder = Path(args.rows)
    cfg = config_from_dict(json.loads((folder / "config.json").read_text())["config"])
    tmp = Path(tempfile.mkdtemp(prefix="simec-temperature-"))
    data = load_idx_dataset(cfg.data)
    names = [n for n in args.only.split(",") if n]
    paths = sorted((folder / "rows").glob("*.json"))
    paths = [p for p in paths if not names or p.stem in names]
    walk = cfg.explore
    print(f"load average {os.getloadavg()[0]:.2f}; {walk.step_rule}, {walk.metric_blocks}")
    print("T | row | segments | p(orig) start | end | lowest | top-1 changes | s")
    try:
        for temperature in [float(t) for t in args.temperatures.split(",")]:
            adapter = tempered(cfg.model, temperature, tmp)
            for path in paths:
                row = json.loads(path.read_text())
                ecfg = cfg.explore_config("simexp", row["eta"], row["segments"])
                res = explore(adapter, data.images[row["index"]], ecfg, seed=row["seed"])
                p = res.trajectory_probabilities[:, row["predicted"]]
                top = res.trajectory_probabilities.argmax(-1)
                print(
                    f"{temperature:g} | {path.stem} | {len(row['segments'])} | {float(p[0]):.4f} | "
                    f"{float(p[-1]):.4f} | {float(p.min()):.4f} | "
                    f"{int((top != row['predicted']).sum())} | {res.elapsed_seconds:.0f}",
                    flush=True,
                )

    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
