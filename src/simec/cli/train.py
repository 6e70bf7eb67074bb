"""``simec train vit|text-classifier|mlm|mlm-head``: train the models simec explores."""

from __future__ import annotations

import argparse

from ..train.mlm import MLMTrainConfig
from ..train.text import MLMHeadTrainConfig, TextClassifierTrainConfig
from ..train.vit import ViTTrainConfig
from .options import add_config_command, add_dataclass_arguments, dataclass_from_args

HELP = "train the models simec explores"

#: options of each trainer's config, in --help order (other fields are fixed training settings)
VIT_FIELDS = (
    "dataset",
    "data_dir",
    "out",
    "epochs",
    "batch_size",
    "lr",
    "schedule",
    "optimizer",
    "weight_decay",
    "shift",
    "keep",
    "seed",
    "limit",
    "device",
    "threads",
)
_TEXT_COMMON = (
    "encoder",
    "out",
    "epochs",
    "batch_size",
    "lr",
    "max_length",
    "seed",
    "device",
    "threads",
)
CLASSIFIER_FIELDS = ("data", "hatexplain", *_TEXT_COMMON)
CLASSIFIER_EXTRA_FIELDS = ("train_layers", "max_per_class", "limit")
MLM_FIELDS = ("data", "texts", *_TEXT_COMMON)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    add_config_command(
        kinds,
        "vit",
        ViTTrainConfig,
        run_vit,
        help="a ViT of the SiMEC paper's shape on MNIST, Fashion-MNIST or digits",
        description="Train ViTForImageClassification (28x28x1, patch 2, hidden 48, 4 layers, "
        "4 heads, MLP 192) with Adam or AdamW; keeps the best (or the last) validation epoch in "
        "--out with a model card.",
        include=VIT_FIELDS,
        rename={"data_dir": "data"},
        required=["out"],
    )
    tc = add_config_command(
        kinds,
        "text-classifier",
        TextClassifierTrainConfig,
        run_text_classifier,
        help="a 3-class hate-speech classifier on a pretrained BERT encoder (default MiniLM)",
        description="Fine-tune BertForSequenceClassification (hate speech / offensive / normal) "
        "on the Davidson tweets, embeddings frozen and the top layers trained; report accuracy "
        "and macro-F1 on a stratified held-out part (and on HateXplain with --hatexplain). "
        "Saves to --out, default the cache (~/.cache/simec/models/minilm-hate or $SIMEC_CACHE).",
        include=CLASSIFIER_FIELDS,
    )
    add_dataclass_arguments(tc, TextClassifierTrainConfig, include=CLASSIFIER_EXTRA_FIELDS)
    add_config_command(
        kinds,
        "mlm-head",
        MLMHeadTrainConfig,
        run_mlm_head,
        help="a masked-LM head for a frozen BERT encoder (decodes explored embeddings)",
        description="Train a BERT MLM head (dense + GELU + LayerNorm + decoder tied to the word "
        "embeddings) on the frozen encoder; report held-out masked-token top-1/top-5 accuracy. "
        "Saves a BertForMaskedLM to --out, default the cache (minilm-mlm).",
        include=MLM_FIELDS,
    )
    add_config_command(
        kinds,
        "mlm",
        MLMTrainConfig,
        run_mlm,
        help="a masked LM that gives text back and shares the classifier's input space",
        description="Train BertForMaskedLM from the encoder with its embeddings module frozen "
        "(the classifier's explored space): encoder layers and MLM head trained on masked-LM "
        "plus give-back loss (and, with --random-rows, give-back of random word pieces of the "
        "whole vocabulary; --init continues a trained one); report held-out [MASK] top-1/top-5, "
        "unmasked tokens and random pieces given back. "
        "Saves to --out, default the cache (minilm-mlm-full).",
    )


def run_vit(args: argparse.Namespace) -> int:
    from ..train.vit import train_vit

    cfg = dataclass_from_args(ViTTrainConfig, args)
    metrics = train_vit(cfg, progress=not args.quiet)
    saved = f"{100 * metrics['saved_val_accuracy']:.2f}%"
    accuracy = (
        f"last epoch's {metrics['evaluated_on']} accuracy {saved} (best "
        f"{100 * metrics['best_val_accuracy']:.2f}%)"
        if cfg.keep == "last"
        else f"best {metrics['evaluated_on']} accuracy {saved}"
    )
    print(f"{accuracy} after {metrics['train_seconds'] / 60:.1f} min; model in {args.out}/")
    return 0


def run_text_classifier(args: argparse.Namespace) -> int:
    from ..train.text import train_text_classifier

    cfg = dataclass_from_args(TextClassifierTrainConfig, args)
    m = train_text_classifier(cfg, progress=not args.quiet)
    h = m["held_out"]
    print(f"held-out accuracy {100 * h['accuracy']:.2f}%, macro-F1 {h['macro_f1']:.3f}")
    print(f"model card: {m['out']}/README.md")
    return 0


def run_mlm(args: argparse.Namespace) -> int:
    from ..train.mlm import train_mlm

    m = train_mlm(dataclass_from_args(MLMTrainConfig, args), progress=not args.quiet)
    print(
        f"held out: [MASK] top-1 {100 * m['masked_top1']:.1f}%, unmasked tokens given back "
        f"top-1 {100 * m['reconstruction_top1']:.1f}%, random pieces given back top-1 "
        f"{100 * m['random_top1']:.1f}%"
    )
    print(f"model card: {m['out']}/README.md")
    return 0


def run_mlm_head(args: argparse.Namespace) -> int:
    from ..train.text import train_mlm_head

    m = train_mlm_head(dataclass_from_args(MLMHeadTrainConfig, args), progress=not args.quiet)
    print(f"held-out masked tokens: top-1 {100 * m['top1']:.1f}%, top-5 {100 * m['top5']:.1f}%")
    print(f"model card: {m['out']}/README.md")
    return 0
