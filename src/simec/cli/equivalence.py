"""``simec equivalence --model DIR A B``: bounds on the pseudodistance of two inputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..runs import ModelSpec
from ..structure.equivalence import EquivalenceConfig
from ..structure.equivalence_run import PairOptions
from .options import (
    add_dataclass_arguments,
    add_device,
    add_dtype,
    add_model,
    add_out,
    dataclass_from_args,
)

HELP = "are two inputs the same to the model? bounds on their pseudodistance"
DESCRIPTION = (
    "Bounds on the pseudodistance Pd(A, B) of the pullback metric (Definitions 4-5 of the SiMEC "
    "paper): a lower bound (the output distance of N(A) and N(B)) and an upper bound (the "
    "pseudolength of the shortest curve found from A to B: the straight line and the guided "
    "SiMEC walks A->B and B->A, optimised and refined, certified by adaptive subdivision and a "
    "denser verification), and a verdict: equivalent, not "
    "equivalent, or undetermined. A and B: two images, or two texts with the same number of "
    "tokens. Writes summary.json, equivalence.png, curve.safetensors and viewer.html."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    parser.add_argument("a", metavar="A", help="first input: an image file, or a text")
    parser.add_argument("b", metavar="B", help="second input: an image file, or a text")
    add_out(parser)
    add_dataclass_arguments(parser, EquivalenceConfig)
    add_dataclass_arguments(parser, PairOptions)
    add_dataclass_arguments(parser, ModelSpec, include=["space"])
    add_device(parser)
    add_dtype(parser)


#: what each reference pair records
REFERENCE_KEYS = ("lower_bound", "upper_bound", "upper_converged", "verdict")


def _read(value: str, adapter: Any) -> Any:
    """A text (or the contents of a .txt, as ``--input`` reads it), or an existing image file."""
    if adapter.modality == "text":
        return adapter.read_input(value)
    if not Path(value).is_file():
        raise InputError(f"{value!r} is not an image file")
    return value


def run(args: argparse.Namespace) -> int:
    from ..models import load_adapter
    from ..structure.equivalence_run import compare_pair, reference_pairs, save_equivalence

    cfg = dataclass_from_args(EquivalenceConfig, args).validate()
    pair = dataclass_from_args(PairOptions, args)
    if pair.reference and not pair.data:
        raise InputError("--reference needs --data (an IDX image folder)")
    adapter = load_adapter(args.model, device=args.device, dtype=args.dtype, space=args.space)
    text = adapter.modality == "text"
    a, b = _read(args.a, adapter), _read(args.b, adapter)
    result = compare_pair(adapter, a, b, cfg, guided_steps=pair.guided_steps)
    reference = None
    if pair.reference and pair.data:  # --reference without --data was refused above
        if text:
            raise InputError("--reference draws image pairs: it needs a vision model")
        from ..data import load_idx_dataset

        images = load_idx_dataset(pair.data).images
        reference = []
        for i, j in reference_pairs(adapter, images, pair.reference, seed=cfg.seed):
            ref = compare_pair(adapter, images[i], images[j], cfg, guided_steps=0).summary()
            reference.append({"i": i, "j": j, **{k: ref[k] for k in REFERENCE_KEYS}})
    save_equivalence(
        result,
        args.out,
        adapter,
        adapter.prepare(a),
        inputs=(args.a, args.b),
        reference=reference,
    )
    summary = result.summary()
    keys = ("verdict", "lower_bound", "upper_bound", "upper_converged", "straight_line")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    return 0
