"""``simec explore``: walk the input space of a model from one input or a data set."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from .._io import check_output_dir
from ..errors import InputError
from ..explore.config import ExploreConfig, parse_segments
from ..explore.result import SUMMARY, TRAJECTORY
from ..runs import DatasetOptions, Manifest, ModelSpec
from .options import (
    add_dataclass_arguments,
    add_device,
    add_dtype,
    add_model,
    add_out,
    add_overwrite,
    add_quiet,
    dataclass_from_args,
)

HELP = "walk the input space of a model from one input (SiMEC or SiMExp)"
DESCRIPTION = (
    "Explore the input space of a model from one input with SiMEC (stay in the "
    "equivalence class) or SiMExp (move across classes)."
)
EPILOG = """\
examples:
  simec explore --model runs/vit --input digit.png --algorithm simec --steps 1000 --out out/a
  simec explore --model runs/vit --input digit.npy --space pixels --algorithm simexp --out out/b
  simec explore --model runs/bert --input "you are all corrupt" --segments 1-3 --out out/c
  simec explore --model runs/vit --data ../shared/data/mnist --limit 100 --batch-size 4 --out out/d
  simec explore --model runs/bert --inputs texts.txt --backend ray --workers 2 --out out/e
  simec explore --model runs/vit --data ../shared/data/mnist --limit 100 --out out/d --resume

outputs (in --out):
  summary.json            the full configuration, package versions, per-step probabilities,
                          predicted classes, lambda_max, step sizes, ranks, drift, stop reason
  trajectory.safetensors  the explored points p_k (every --record-every steps, and the last)
  interpretations.json    with --interpretations: predictions from the stored points and from
                          their decoded inputs, and the final paper's measures of the two
  dataset runs: inputs/<id>/ (the two files above, per input), manifest.jsonl (one line per
  input: id, status, seed, result folder, stop reason), run.json (options, model, versions)
"""

#: ExploreConfig fields given as raw text and parsed when the config is built
PARSE = {"segments": parse_segments}
#: ExploreConfig fields per help group; every field but ``extra`` (recorded by the CLI itself)
WALK_FIELDS = (
    "algorithm",
    "steps",
    "method",
    "output_metric",
    "step_multiplier",
    "step_rule",
    "eta",
    "metric_blocks",
    "direction_sign",
    "max_step",
    "box",
    "projection",
    "corrector",
    "corrector_iterations",
    "corrector_tolerance",
    "jacobian_reuse",
    "top_k",
    "top_mass",
    "leakage",
    "rtol",
    "atol",
    "seed",
    "recover",
    "divergence_ratio",
)
RUN_FIELDS = ("record_every", "chunk_size", "max_memory", "compile")
#: ExploreConfig fields that are not options (documented exclusions)
NOT_OPTIONS = ("extra",)
#: ModelSpec fields are options under another name
MODEL_RENAME = {"truncation": "truncate"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to explore")
    add_model(
        what,
        help="a model directory saved with save_pretrained() "
        "(*ForImageClassification or *ForSequenceClassification)",
    )
    source = what.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input",
        metavar="FILE_OR_TEXT",
        help="an image (.png/.jpg/.npy) for vision models; the text itself "
        "(or a .txt file) for text models",
    )
    source.add_argument(
        "--data",
        metavar="DIR",
        help="dataset run: the images of an IDX data set (MNIST layout, t10k-* or train-*)",
    )
    source.add_argument(
        "--inputs",
        metavar="FILE",
        help="dataset run: one input per line (an image path, or a text for text models)",
    )
    add_dataclass_arguments(what, ModelSpec, include=["space"])
    add_dataclass_arguments(what, ExploreConfig, include=["segments"], parse=PARSE)
    what.add_argument(
        "--toward",
        metavar="FILE_OR_TEXT",
        help="guided SiMEC (--input only): walk toward this target input inside the class of "
        "--input (null-space projection of target - x, corrector on); stops when no null "
        "direction brings it closer",
    )
    what.add_argument(
        "--interpretations",
        action="store_true",
        help="--input only: decode every stored point back into an input (a picture, or "
        "tokens), classify it, and write the final paper's measures of the two predictions "
        "to interpretations.json (M1-M3, M6-M9; --record-every 10 is the paper's k)",
    )
    what.add_argument(
        "--text-decoder",
        default="nearest",
        metavar="NAME",
        help="text models, with --interpretations: 'nearest' (the nearest real token under "
        "the embedding map) or a masked LM sharing the classifier's embeddings (a cached "
        "name such as minilm-mlm-hatexplain, or a folder) (default: %(default)s)",
    )
    add_dataclass_arguments(what, ModelSpec, include=["truncation"], rename=MODEL_RENAME)

    how = parser.add_argument_group("how to walk")
    add_dataclass_arguments(how, ExploreConfig, include=WALK_FIELDS)

    run = parser.add_argument_group("run")
    add_out(run, help="folder for the results")
    add_overwrite(run)
    add_device(run)
    add_dtype(run)
    add_dataclass_arguments(run, ExploreConfig, include=RUN_FIELDS)
    add_quiet(run, help="no progress bar")

    many = parser.add_argument_group(
        "dataset runs (--data / --inputs)",
        "one result folder per input in OUT/inputs/<id>, OUT/manifest.jsonl, OUT/run.json; "
        "input i uses seed --seed + i",
    )
    add_dataclass_arguments(many, DatasetOptions, include=["limit"])
    many.add_argument(
        "--split",
        choices=["test", "train"],
        default="test",
        help="--data: which IDX split, t10k-* or train-* (default: %(default)s)",
    )
    add_dataclass_arguments(many, DatasetOptions, exclude=["limit"])


def read_input(text: str, adapter: Any) -> Any:
    """``--input`` as the adapter reads it (``ModelAdapter.read_input``): a text model takes the
    text itself or the contents of a .txt file; an image model the path, which it validates."""
    return adapter.read_input(text)


def config_from_args(args: argparse.Namespace) -> ExploreConfig:
    """The validated ExploreConfig of the parsed options (the CLI's context in ``extra``)."""
    dataset_run = args.input is None
    return dataclass_from_args(
        ExploreConfig,
        args,
        parse=PARSE,
        extra={
            "model_dir": str(Path(args.model).resolve()),
            "input": args.input if not dataset_run else (args.data or args.inputs),
            "space": args.space,
            "toward": args.toward,
            "device": args.device,
            "dtype": args.dtype,
            "argv": sys.argv[1:],
        },
    ).validate()


def run(args: argparse.Namespace) -> int:
    from ..explore import explore
    from ..models import load_adapter

    if args.input is not None:
        for option in dataclasses.fields(DatasetOptions):
            dest = option.name
            if getattr(args, dest) != option.default:
                flag = "--" + dest.replace("_", "-")
                raise InputError(f"{flag} is for dataset runs (--data or --inputs), not --input")
    config = config_from_args(args)
    if args.input is None:
        if args.toward is not None:
            raise InputError("--toward is for one input (--input), not dataset runs")
        if args.overwrite:
            raise InputError(
                "--overwrite is for --input; a dataset run continues with --resume, or "
                "choose a new --out"
            )
        if args.interpretations:
            raise InputError("--interpretations is for one input (--input), not dataset runs")
        return run_dataset(args, config)
    check_output_dir(args.out, results=(SUMMARY, TRAJECTORY), overwrite=args.overwrite)
    adapter = load_adapter(
        args.model,
        space=args.space,
        device=args.device,
        dtype=args.dtype,
        truncation=args.truncation,
    )
    toward = read_input(args.toward, adapter) if args.toward is not None else None
    raw = read_input(args.input, adapter)
    interpreter = _interpreter_factory(args, adapter, raw, config) if args.interpretations else None
    result = explore(adapter, raw, config, progress=not args.quiet, toward=toward)
    out = result.save(args.out)
    labels = result.labels
    first, last = result.predicted[0], result.predicted[-1]
    print(
        f"{config.algorithm}: {result.steps_completed} steps in {result.elapsed_seconds:.1f} s "
        f"({result.stop_reason}); predicted {labels[first]!r} "
        f"(p={float(result.probabilities[0, first]):.4f}) -> {labels[last]!r} "
        f"(p={float(result.probabilities[-1, last]):.4f}); results in {out}/"
    )
    if result.remaining_distance:
        print(f"remaining distance to the target: {result.remaining_distance[-1]:.4g} of the start")
    if interpreter is not None:
        _write_interpretations(result, interpreter(result), out)
    natural = ("completed", "projected distance vanished")
    return 0 if result.stop_reason.startswith(natural) else 3


def _interpreter_factory(
    args: argparse.Namespace, adapter: Any, raw: Any, config: ExploreConfig
) -> Any:
    """``--interpretations``: check the options and load the decoder before the walk; returns
    result -> Interpreter (the explored segments are known once the walk has run)."""
    from ..interpret.walk_measures import text_interpreter, vision_interpreter
    from ..models import as_masked_lm, load_adapter

    if adapter.modality == "image":
        if args.text_decoder != "nearest":
            raise InputError("--text-decoder is for text models; pictures are decoded exactly")
        from ..interpret import ViTDecoder

        decoder = ViTDecoder(adapter)
        return lambda result: vision_interpreter(
            adapter, raw, result.explored_segments, decoder=decoder
        )
    if adapter.modality != "text":
        raise InputError(
            "--interpretations needs a Hugging Face image or text classifier (its decoder)"
        )
    from ..interpret.decode_text import MLMDecoder, NearestTokenDecoder

    prepared = adapter.prepare(raw)
    special = set(adapter.tokenizer.all_special_tokens)
    if config.segments is not None and all(
        prepared.segment_names[i] in special for i in config.segments
    ):
        raise InputError("--interpretations: the explored segments are all special tokens")
    text_decoder: NearestTokenDecoder | MLMDecoder
    if args.text_decoder == "nearest":
        text_decoder = NearestTokenDecoder(adapter)
    else:
        mlm = as_masked_lm(load_adapter(args.text_decoder, device=args.device, dtype=args.dtype))
        if mlm is None:
            raise InputError(f"--text-decoder {args.text_decoder} is not a masked LM")
        text_decoder = MLMDecoder(mlm)
    return lambda result: text_interpreter(
        adapter, prepared, text_decoder, result.explored_segments
    )


def _write_interpretations(result: Any, interpreter: Any, out: Path) -> None:
    from ..interpret.walk_measures import measure_run

    try:
        record = measure_run(result, interpreter)
    except InputError as err:  # e.g. a walk that stopped before storing two points
        print(f"interpretations not measured: {err}")
        return
    path = record.save(Path(out) / "interpretations.json")
    l1 = sorted(record.l1)
    print(
        f"interpretations: {len(record.steps)} stored points decoded; top-1 changes "
        f"{record.top1_changes_embedding} from the points, {record.top1_changes_interpretation} "
        f"from their decoded inputs; median L1 between the two predictions "
        f"{l1[len(l1) // 2]:.3g}; in {path}"
    )


def run_dataset(args: argparse.Namespace, config: ExploreConfig) -> int:
    """`simec explore --data/--inputs`: one result folder per input, a manifest, resumable."""
    from ..runs import idx_items, line_items, run_dataset

    if args.data is not None:
        items, source = idx_items(args.data, limit=args.limit, split=args.split)
    else:
        items, source = line_items(args.inputs, limit=args.limit)
    spec = ModelSpec(
        str(Path(args.model).resolve()),
        space=args.space,
        device=args.device,
        dtype=args.dtype,
        truncation=args.truncation,
    )
    counts = run_dataset(
        spec,
        items,
        args.out,
        config,
        source=source,
        backend=args.backend,
        batch_size=args.batch_size,
        workers=args.workers,
        resume=args.resume,
        progress=not args.quiet,
    )
    print(
        f"{counts['total']} inputs: {counts['completed']} completed, {counts['stopped']} "
        f"stopped early, {counts['failed']} failed ({counts['resumed']} were already done); "
        f"manifest {counts['manifest']}"
    )
    for line in failure_lines(Manifest(args.out).read()):
        print(line, file=sys.stderr)
    return 0 if counts["completed"] == counts["total"] else 3


def failure_lines(entries: dict[str, dict[str, Any]], *, most: int = 3) -> list[str]:
    """Why inputs failed, one line per distinct error (the first ``most``, commonest first,
    each with how many inputs and the first of them), so a run whose every input fails for one
    reason says it without opening the manifest."""
    errors: dict[str, list[dict[str, Any]]] = {}
    for entry in entries.values():
        if entry.get("status") == "failed":
            errors.setdefault(str(entry.get("error")), []).append(entry)
    ranked = sorted(errors.items(), key=lambda kv: -len(kv[1]))  # stable: first seen first
    lines = [
        f"failed ({len(group)} input{'s' if len(group) > 1 else ''}, first {group[0]['id']} "
        f"{group[0].get('input', '')}): {error}"
        for error, group in ranked[:most]
    ]
    if len(ranked) > most:
        rest = len(ranked) - most
        lines.append(f"... and {rest} other error{'s' if rest > 1 else ''}: see the manifest")
    return lines
