"""Train a Hugging Face ViTForImageClassification of the SiMEC paper's shape on IDX/digits data.

Paper shape: 28x28x1 input, patch 2, hidden 48, 4 layers, 4 heads, MLP 192 (197 tokens).
Adam (or AdamW, the final paper's optimiser), warmup then cosine learning-rate decay (or a
constant rate, the official code's), optional +-2 pixel shifts; the best epoch on the validation
split is kept (or the last, as the official code keeps). MNIST: only the 10,000-image test
split exists offline, so it is split 8,000 / 2,000 by a recorded seed and the indices are saved
with the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._io import atomic_write_json
from ..data import ImageDataset, load_digits, load_idx_dataset
from ..errors import InputError
from ..fields import check_choices, option
from .fit import fit
from .save import save_model, training_log

__all__ = ["ViTTrainConfig", "train_vit", "paper_vit_config"]

IMAGE_MEAN, IMAGE_STD = [0.5], [0.5]

#: ``--optimizer`` choices: the torch optimiser of each (the model card names its class)
OPTIMIZERS: dict[str, type[torch.optim.Adam]] = {  # AdamW is an Adam subclass
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}

#: ``--schedule`` choices: the learning rate over training, as a factor of ``--lr``
SCHEDULES = ("warmup-cosine", "constant")
#: ``--keep`` choices: which epoch's weights are saved
KEEPS = ("best", "last")


@dataclass
class ViTTrainConfig:
    dataset: str = option("mnist", choices=("mnist", "fashion-mnist", "digits"))
    data_dir: str | None = option(
        None,
        "IDX folder (MNIST: ../shared/data/mnist; Fashion-MNIST default: "
        "/usr/share/datasets/fashion-mnist)",
        metavar="DIR",
    )
    out: str = option("runs/vit-mnist", metavar="DIR")
    epochs: int = option(20, min=1)
    batch_size: int = option(64, min=1)
    lr: float = option(1e-3, "learning rate (with warmup-cosine: the peak, after warmup)", gt=0)
    schedule: str = option(
        "warmup-cosine",
        "warmup-cosine: linear warmup over 200 steps, then cosine decay to 0; constant: --lr "
        "throughout (the official code's)",
        choices=SCHEDULES,
    )
    keep: str = option(
        "best",
        "which epoch's weights are saved: best (highest validation accuracy) or last (the "
        "official code's)",
        choices=KEEPS,
    )
    optimizer: str = option(
        "adam",
        "adam: weight decay added to the gradient (L2); adamw: decoupled weight decay "
        "(Loshchilov & Hutter), the final paper's optimiser",
        choices=tuple(OPTIMIZERS),
    )
    weight_decay: float = option(
        0.0, "weight decay, 0 unless given (torch's AdamW defaults to 0.01: give it here)", min=0
    )
    warmup_steps: int = 200
    shift: int = option(2, "random translation augmentation in pixels", min=0)
    val_size: int = 2000  # mnist: held out from the 10k test split
    seed: int = option(0, "seed of the split and of training")
    image_size: int = 28
    patch_size: int = 2
    hidden_size: int = 48
    num_layers: int = 4
    num_heads: int = 4
    mlp_size: int = 192
    device: str = "cpu"
    limit: int | None = option(None, "train on the first N images only (smoke runs)", min=1)
    threads: int | None = option(None, min=1)


def paper_vit_config(cfg: ViTTrainConfig, classes: list[str]) -> Any:
    from transformers import ViTConfig

    # generic PretrainedConfig options (num_labels, attn_implementation) go through **kwargs,
    # which transformers' type stubs of ViTConfig do not list
    options: dict[str, Any] = dict(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        num_channels=1,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.mlp_size,
        num_labels=len(classes),
        id2label={i: c for i, c in enumerate(classes)},
        label2id={c: i for i, c in enumerate(classes)},
        attn_implementation="sdpa",
    )
    return ViTConfig(**options)


def lr_factor(cfg: ViTTrainConfig, total: int) -> Callable[[int], float]:
    """The learning rate at each optimiser step as a factor of ``cfg.lr`` (for ``LambdaLR``):
    ``warmup-cosine`` rises linearly over ``cfg.warmup_steps`` steps, then decays as a cosine to
    0 at step ``total``; ``constant`` is 1 throughout."""
    check_choices(cfg, "schedule")
    if cfg.schedule == "constant":
        return lambda step: 1.0

    def warmup_cosine(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return warmup_cosine


def make_optimizer(params: Any, cfg: ViTTrainConfig) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over ``params`` with ``cfg.lr`` and ``cfg.weight_decay``: Adam adds
    weight_decay * p to the gradient (so the decay is rescaled by Adam's step), AdamW shrinks p
    by lr * weight_decay * p apart from the gradient step (decoupled weight decay)."""
    check_choices(cfg, "optimizer")
    return OPTIMIZERS[cfg.optimizer](params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _seeded_split(
    full: ImageDataset, n_val: int, seed: int, source: str
) -> tuple[ImageDataset, ImageDataset, dict[str, Any]]:
    """A seeded random train/validation split whose indices are recorded with the model."""
    order = np.random.default_rng(seed).permutation(len(full))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    split = {
        "source": source,
        "seed": seed,
        "train_indices": train_idx.tolist(),
        "validation_indices": val_idx.tolist(),
    }
    return full.subset(train_idx), full.subset(val_idx), split


def _splits(cfg: ViTTrainConfig) -> tuple[ImageDataset, ImageDataset, dict[str, Any]]:
    if cfg.dataset == "mnist":
        if not cfg.data_dir:
            raise InputError("--data is required for mnist (e.g. ../shared/data/mnist)")
        full = load_idx_dataset(cfg.data_dir, split="test", kind="mnist")
        source = "MNIST test split (t10k), the only MNIST split available offline"
        return _seeded_split(full, min(cfg.val_size, len(full) // 5), cfg.seed, source)
    if cfg.dataset == "fashion-mnist":
        root = cfg.data_dir or "/usr/share/datasets/fashion-mnist"
        train = load_idx_dataset(root, split="train", kind="fashion-mnist")
        test = load_idx_dataset(root, split="test", kind="fashion-mnist")
        return train, test, {"source": "Fashion-MNIST train 60k / test 10k", "seed": cfg.seed}
    if cfg.dataset == "digits":
        full = load_digits()
        return _seeded_split(full, len(full) // 5, cfg.seed, "scikit-learn digits")
    raise InputError(f"unknown dataset {cfg.dataset!r}: mnist, fashion-mnist or digits")


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) -> normalised float (N, 1, H, W) as the shipped preprocessor does."""
    x = torch.from_numpy(images).float().div_(255.0).unsqueeze(1)
    return (x - IMAGE_MEAN[0]) / IMAGE_STD[0]


def _shift(batch: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to +-max_shift pixels, filling with the background value."""
    if max_shift <= 0:
        return batch
    n, _, h, w = batch.shape
    background = -IMAGE_MEAN[0] / IMAGE_STD[0]
    pad = torch.nn.functional.pad(batch, (max_shift,) * 4, value=background)
    dy = torch.randint(0, 2 * max_shift + 1, (n, 1), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n, 1), generator=gen)
    rows = (dy + torch.arange(h)).unsqueeze(2)  # (n, h, 1)
    cols = (dx + torch.arange(w)).unsqueeze(1)  # (n, 1, w)
    return pad[torch.arange(n).view(n, 1, 1), 0, rows, cols].unsqueeze(1)


@torch.no_grad()
def evaluate(
    model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, batch: int = 500
) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(labels), batch):
        logits = model(pixel_values=pixels[i : i + batch]).logits
        correct += int((logits.argmax(-1) == labels[i : i + batch]).sum())
    return correct / max(1, len(labels))


def _preprocessor(image_size: int) -> dict[str, Any]:
    """``preprocessor_config.json``: the normalisation ``to_pixels`` applies."""
    return {
        "do_normalize": True,
        "do_rescale": True,
        "image_mean": IMAGE_MEAN,
        "image_std": IMAGE_STD,
        "size": {"height": image_size, "width": image_size},
    }


def train_vit(cfg: ViTTrainConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train, keep the best validation epoch (with ``keep="last"`` the last) in ``cfg.out``,
    return the metrics. An unknown ``schedule``, ``keep`` or ``optimizer`` is an ``InputError``
    before any data is read.

    ``cfg`` is not changed; the configuration recorded with the model has the data's
    ``image_size`` (28 for (Fashion-)MNIST, 8 for digits).
    """
    from transformers import ViTForImageClassification

    check_choices(cfg, "schedule", "keep", "optimizer")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train, val, split = _splits(cfg)
    cfg = replace(cfg, image_size=int(train.images.shape[1]))
    if cfg.limit:
        train = train.subset(np.arange(min(cfg.limit, len(train))))
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model = ViTForImageClassification(paper_vit_config(cfg, train.classes))
    model.to(device)  # type: ignore[arg-type]  # transformers' stubs type .to() oddly
    x_train, y_train = to_pixels(train.images), torch.from_numpy(train.labels)
    x_val, y_val = to_pixels(val.images).to(device), torch.from_numpy(val.labels).to(device)
    opt = make_optimizer(model.parameters(), cfg)
    total = cfg.epochs * math.ceil(len(y_train) / cfg.batch_size)
    lr_at = lr_factor(cfg, total)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        xb = _shift(x_train[idx], cfg.shift, gen).to(device)
        return nn.functional.cross_entropy(model(pixel_values=xb).logits, y_train[idx].to(device))

    out = Path(cfg.out)

    def save_epoch(history: list[dict[str, Any]]) -> None:
        earlier = max((h["val_accuracy"] for h in history[:-1]), default=-1.0)
        if cfg.keep == "last" or history[-1]["val_accuracy"] > earlier:
            files = {"preprocessor_config.json": _preprocessor(cfg.image_size)}
            save_model(out, model, files=files)
        atomic_write_json(out / "training_log.json", training_log(cfg, history))

    history = fit(
        loss_of,
        size=len(y_train),
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        optimizer=opt,
        scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lr_at),
        generator=gen,
        model=model,
        validate=lambda: {"val_accuracy": evaluate(model, x_val, y_val)},
        on_epoch=save_epoch,
        desc=f"train vit on {cfg.dataset}",
        progress=progress,
    )
    best = max((h["val_accuracy"] for h in history), default=-1.0)
    metrics = {
        "dataset": cfg.dataset,
        "best_val_accuracy": best,
        # the accuracy of the weights saved: the best epoch's, or with --keep last the last one's
        "saved_val_accuracy": (
            history[-1]["val_accuracy"] if cfg.keep == "last" and history else best
        ),
        "evaluated_on": "validation split" if cfg.dataset != "fashion-mnist" else "test split",
        "train_size": len(y_train),
        "val_size": len(y_val),
        "epochs": cfg.epochs,
        "train_seconds": history[-1]["seconds"] if history else 0.0,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    save_model(
        out,
        files={
            "split.json": split,
            "training_log.json": training_log(cfg, history, metrics=metrics),
            "README.md": _model_card(cfg, metrics, split),
        },
    )
    return metrics


def _model_card(cfg: ViTTrainConfig, metrics: dict[str, Any], split: dict[str, Any]) -> str:
    evaluated = metrics["evaluated_on"]
    schedule = (
        f"{cfg.warmup_steps} warmup steps then cosine decay"
        if cfg.schedule == "warmup-cosine"
        else "constant learning rate"
    )
    recorded = "train_indices" in split
    lines = [
        f"# ViT ({cfg.dataset}), SiMEC paper shape",
        "",
        f"- Architecture: ViTForImageClassification, {cfg.image_size}x{cfg.image_size}x1, patch "
        f"{cfg.patch_size}, hidden {cfg.hidden_size}, {cfg.num_layers} layers, {cfg.num_heads} "
        f"heads, MLP {cfg.mlp_size}; {metrics['parameters']:,} parameters.",
        f"- Data: {split['source']}; train {metrics['train_size']:,}, {evaluated} "
        f"{metrics['val_size']:,} "
        + (
            f"(split seed {cfg.seed}; indices in split.json)."
            if recorded
            else "(the dataset's own split)."
        ),
        f"- Training: {OPTIMIZERS[cfg.optimizer].__name__} lr {cfg.lr}, weight decay "
        f"{cfg.weight_decay:g}, batch {cfg.batch_size}, {cfg.epochs} epochs, {schedule}, "
        f"+-{cfg.shift} px shifts; {cfg.keep} epoch kept.",
        f"- Accuracy on the {evaluated}: **{100 * metrics['saved_val_accuracy']:.2f}%**"
        + (
            f" (the last epoch; the best was {100 * metrics['best_val_accuracy']:.2f}%)."
            if cfg.keep == "last"
            else "."
        ),
    ]
    if not recorded:
        lines.append(
            f"- The best epoch was chosen on the {evaluated} itself (no separate validation "
            "split), so this accuracy is slightly optimistic."
        )
    lines += [
        f"- Training time: {metrics['train_seconds'] / 60:.1f} min on {cfg.device} "
        f"({torch.get_num_threads()} thread(s)).",
        "- Pixels are scaled to [0, 1] then normalised with mean 0.5, std 0.5 "
        "(preprocessor_config.json).",
    ]
    return "\n".join(lines) + "\n"
