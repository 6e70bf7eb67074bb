"""Record the golden trajectories (see ``cases.py``). Run from the repository root:

python -m tests.golden.record                # rewrite tests/golden/data (an intended change)
python -m tests.golden.record --out /tmp/b   # a baseline of this machine, then, after a
SIMEC_GOLDEN_BASELINE=/tmp/b pytest tests/golden   # refactor, compare bit for bit against it
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from tests.conftest import LayerNormHead, make_tokenizer, tiny_bert, tiny_vit, write_idx
from tests.golden.cases import CASES, DATA, MODELS, dataset_run, freeze
from tests.golden.compare import ENVIRONMENT, environment


def build_fixtures() -> None:
    """The stored models and digits (built once; kept if present so goldens stay comparable)."""
    if not (MODELS / "head.safetensors").exists():
        MODELS.mkdir(parents=True, exist_ok=True)
        save_file(LayerNormHead().state_dict(), str(MODELS / "head.safetensors"))
    if (MODELS / "vit").exists():
        return
    MODELS.mkdir(parents=True, exist_ok=True)
    tiny_vit().save_pretrained(MODELS / "vit")
    (MODELS / "vit" / "preprocessor_config.json").write_text(
        json.dumps({"do_normalize": True, "image_mean": [0.5], "image_std": [0.5]})
    )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = make_tokenizer(Path(tmp))
        tiny_bert().save_pretrained(MODELS / "bert")
        tokenizer.save_pretrained(MODELS / "bert")
    digits = DATA / "digits"
    digits.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    write_idx(digits / "t10k-images-idx3-ubyte.gz", rng.integers(10, 245, size=(6, 8, 8)))
    write_idx(digits / "t10k-labels-idx1-ubyte.gz", np.arange(6) % 3)


def write(folder: Path, name: str, results: list) -> None:
    tensors, lists = freeze(results)
    save_file(tensors, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps(lists, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DATA,
        help="where to write (default: the goldens themselves); a scratch folder records a "
        "baseline of this machine for SIMEC_GOLDEN_BASELINE=DIR (bit-for-bit refactor checks)",
    )
    out_dir: Path = parser.parse_args(argv).out
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    build_fixtures()
    for case in CASES:
        write(out_dir, case.name, case.run())
        print("recorded", case.name)
    out = Path(tempfile.mkdtemp()) / "run"
    try:
        write(out_dir, "dataset_run", dataset_run(out))
        print("recorded dataset_run")
    finally:
        shutil.rmtree(out.parent)
    (out_dir / ENVIRONMENT).write_text(json.dumps(environment(), indent=1) + "\n")


if __name__ == "__main__":
    main()
