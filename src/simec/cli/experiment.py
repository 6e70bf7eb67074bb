"""``simec experiment vit-exploration|vision-explainers|text-exploration|equivalence|
interpretations``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..experiments.equivalence_pairs import EquivalencePairsConfig
from ..experiments.interpretations import InterpretationsConfig
from ..experiments.text_exploration import TextExplorationConfig
from ..experiments.vision_explainers import VisionExplainersConfig
from ..experiments.vit_exploration import VitExplorationConfig
from ..registry import Registry
from .options import add_config_command, dataclass_from_args

HELP = "reproduce the papers' experiments"

#: options of each experiment's config, in --help order (other fields are the paper's settings)
VIT_FIELDS = ("model", "data", "dataset", "images", "steps", "seed", "max_step", "device", "out")
VISION_EXPLAINER_FIELDS = ("model", "data", "images", "explainers", "device", "out")
TEXT_FIELDS = ("model", "mlm", "data", "posts", "steps", "max_tokens", "seed", "device", "out")
INTERPRETATION_FIELDS = (
    "model",
    "data",
    "mlm",
    "images",
    "posts",
    "repetitions",
    "explore.steps",
    "etas",
    "segment_sets",
    "attribution",
    "explore.record_every",
    "explore.jacobian_reuse",
    "explore.step_rule",
    "explore.metric_blocks",
    "explore.direction_sign",
    "explore.atol",
    "max_tokens",
    "dataset",
    "decoded_pixels",
    "seed",
    "device",
    "out",
)


@dataclass(frozen=True)
class Experiment:
    """One ``simec experiment NAME``: its config dataclass, whose fields are its options
    (``options`` go to ``add_config_command``: ``include``, ``required``), the command's
    ``run``, its help and description."""

    config: type
    run: Callable[[argparse.Namespace], int]
    help: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    exps = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    exps.required = True
    for name, exp in EXPERIMENTS.items():
        add_config_command(
            exps,
            name,
            exp.config,
            exp.run,
            help=exp.help,
            description=exp.description,
            **exp.options,
        )


def run_vit_exploration(args: argparse.Namespace) -> int:
    from ..experiments.vit_exploration import run_vit_exploration

    run_vit_exploration(dataclass_from_args(VitExplorationConfig, args), progress=not args.quiet)
    print((Path(args.out) / "table.md").read_text())
    return 0


def run_vision_explainers(args: argparse.Namespace) -> int:
    from ..experiments.vision_explainers import run_vision_explainers

    res = run_vision_explainers(dataclass_from_args(VisionExplainersConfig, args))
    for name, corr in res["mean_spearman_vs_simec"].items():
        print(f"{name:>22}: mean Spearman with simec {corr:+.3f}")
    print(f"heatmaps in {args.out}/explainers_heatmaps.png")
    return 0


def run_equivalence_pairs(args: argparse.Namespace) -> int:
    from ..experiments.equivalence_pairs import run_equivalence_pairs

    cfg = dataclass_from_args(EquivalencePairsConfig, args)
    run_equivalence_pairs(cfg, progress=not args.quiet)
    print((Path(cfg.out) / "table.md").read_text())
    return 0


def run_text_exploration(args: argparse.Namespace) -> int:
    from ..experiments.text_exploration import run_text_exploration

    cfg = dataclass_from_args(TextExplorationConfig, args)
    run_text_exploration(cfg, progress=not args.quiet)
    print((Path(args.out) / "table.md").read_text())
    print(f"figures and report.html in {args.out}/")
    return 0


def run_interpretations(args: argparse.Namespace) -> int:
    from ..experiments.interpretations import run_interpretations

    cfg = dataclass_from_args(InterpretationsConfig, args)
    run_interpretations(cfg, progress=not args.quiet)
    print((Path(cfg.out) / "table.md").read_text())
    return 0


#: experiment name -> Experiment, in --help order
EXPERIMENTS: Registry[Experiment] = Registry(
    "experiment",
    {
        "vit-exploration": Experiment(
            VitExplorationConfig,
            run_vit_exploration,
            help="SiMEC vs the perturbation baseline on a ViT (SiMEC paper, Section 4)",
            description="For N images: SiMEC for K steps (timed), the perturbation baseline for "
            "the same wall time, SiMExp for K steps; informative-image counts, explored volume, "
            "a markdown + JSON table and Figure 1/3-style PNGs. Resumable: finished images are "
            "kept.",
            options={"include": VIT_FIELDS},
        ),
        "vision-explainers": Experiment(
            VisionExplainersConfig,
            run_vision_explainers,
            help="every explainer's patch heatmap side by side for a handful of digits",
            description="Per image: the predicted class and one heatmap per explainer (absolute "
            "scores for that class), plus each explainer's Spearman correlation with simec. "
            "Writes rows/, explainers_heatmaps.png and explainers.json. Resumable: finished "
            "images are kept.",
            options={"include": VISION_EXPLAINER_FIELDS},
        ),
        "text-exploration": Experiment(
            TextExplorationConfig,
            run_text_exploration,
            help="alternative prompts along SiMEC/SiMExp on a hate-speech classifier (Figure 4)",
            description="For N HateXplain posts labelled hate speech or offensive: SiMEC and "
            "SiMExp for K steps on the classifier's embeddings; every explored point is decoded "
            "by the masked LM into 5 alternative prompts, which are classified (Y_c: prediction "
            "changed, Y_s: kept). Writes a table, Figure 2/4-style PNGs and report.html. "
            "Resumable.",
            options={"include": TEXT_FIELDS, "required": ["out"]},
        ),
        "equivalence": Experiment(
            EquivalencePairsConfig,
            run_equivalence_pairs,
            help="bounds on the pseudodistance of four kinds of image pairs (SiMEC endpoints, "
            "embedding-matched, same class, different classes)",
            description="Pairs of each kind from an IDX data set, bounded by `simec equivalence` "
            "in the embedding space: lower and upper bounds, verdicts, the guided walks' closest "
            "approach, seconds per pair. Writes rows/, table.md and results.json. Resumable.",
        ),
        "interpretations": Experiment(
            InterpretationsConfig,
            run_interpretations,
            help="the final paper's measures of decoded inputs along SiMEC/SiMExp (M1-M9), on "
            "a ViT or a text classifier",
            description="Per input (one image per class, or HateXplain hate/offensive posts), "
            "repetition, eta and segment set (all / one / q2 by an attribution method): SiMEC "
            "and SiMExp with the final version's step rule and box; every k-th point decoded "
            "and re-classified. Writes rows/, table.md (M1, M2/M3, M4, M7, M9, time per segment "
            "per iteration, the paper's numbers beside), results.json and M1 figures. "
            "Resumable.",
            options={"include": INTERPRETATION_FIELDS},
        ),
    },
)
