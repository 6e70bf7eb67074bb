"""`simec train mlm`: a masked LM on the frozen embeddings module that gives text back."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from simec.errors import InputError
from simec.train.mlm import MLMTrainConfig, evaluate_mlm, mask_tokens, train_mlm
from tests.conftest import VOCAB, make_tokenizer, tiny_bert_config

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture
def encoder_dir(tmp_path):
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    path = tmp_path / "encoder"
    BertForMaskedLM(tiny_bert_config(initializer_range=0.3)).save_pretrained(path)
    make_tokenizer(tmp_path).save_pretrained(path)
    return path


@pytest.fixture
def texts_file(tmp_path):
    rng = np.random.default_rng(0)
    words = [w for w in VOCAB[5:] if not w.startswith("##") and w not in ".,!"]
    lines = [" ".join(rng.choice(words, size=rng.integers(3, 8))) for _ in range(120)]
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_mask_tokens_follows_bert_corruption():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 27, (400, 30), generator=gen)
    real = torch.ones_like(ids, dtype=torch.bool)
    real[:, 25:] = False  # padding is never chosen
    real[0] = False  # a row with nothing to choose stays untouched
    corrupted, chosen, masked = mask_tokens(
        ids, real, mask_id=4, vocab_size=27, mask_prob=0.15, generator=gen
    )
    assert not chosen[:, 25:].any() and not chosen[0].any()
    assert chosen[1:].any(1).all()  # every other row has at least one chosen position
    frac = chosen[1:, :25].float().mean()
    assert 0.13 < float(frac) < 0.17
    assert (corrupted[masked] == 4).all() and not masked[~chosen].any()
    share = float(masked.sum() / chosen.sum())
    assert 0.75 < share < 0.85  # 80% [MASK]
    assert torch.equal(corrupted[~chosen], ids[~chosen])  # unchosen positions unchanged


def test_training_keeps_the_embeddings_and_learns_to_give_text_back(
    encoder_dir, texts_file, tmp_path
):
    from transformers import BertForMaskedLM

    from tests.conftest import make_tokenizer

    out = tmp_path / "mlm"
    before = BertForMaskedLM.from_pretrained(encoder_dir).bert.embeddings.state_dict()
    tok = make_tokenizer(tmp_path)
    texts = texts_file.read_text().splitlines()
    untrained = evaluate_mlm(BertForMaskedLM.from_pretrained(encoder_dir), tok, texts[:20])
    cfg = MLMTrainConfig(
        data=str(texts_file),
        encoder=str(encoder_dir),
        out=str(out),
        epochs=60,
        batch_size=16,
        lr=5e-3,
        head_lr=5e-3,
        test_fraction=0.1,
        seed=0,
    )
    metrics = train_mlm(cfg, progress=False)
    model = BertForMaskedLM.from_pretrained(out)
    after = model.bert.embeddings.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the input space is shared
    # a random tiny encoder gives back ~4% of the tokens; ~400 steps teach it most of them
    assert metrics["reconstruction_top1"] > max(0.75, untrained["reconstruction_top1"] + 0.5)
    card = (out / "README.md").read_text()
    assert f"{100 * metrics['reconstruction_top1']:.1f}%" in card
    split = json.loads((out / "split.json").read_text())
    assert len(split["held_out_text_indices"]) == metrics["held_out_texts"] == 12
    log = json.loads((out / "training_log.json").read_text())
    assert log["config"]["epochs"] == 60 and log["metrics"]["steps"] == metrics["steps"]


def test_bad_options_are_clear(texts_file):
    with pytest.raises(InputError, match="mask_prob"):
        train_mlm(MLMTrainConfig(data=str(texts_file), mask_prob=1.5), progress=False)
    with pytest.raises(InputError, match="does not exist"):
        train_mlm(MLMTrainConfig(data="nope.txt"), progress=False)


def _cached(name):
    from simec.models.cache import cache_dir

    path = cache_dir() / "models" / name
    return path if (path / "config.json").is_file() else None


@pytest.mark.slow
@pytest.mark.skipif(
    _cached("minilm-mlm-full") is None or not (SHARED / "davidson").is_dir(),
    reason="minilm-mlm-full is not in the cache (simec train mlm --data .../davidson)",
)
def test_cached_model_meets_the_targets_on_its_held_out_texts():
    """Re-measured: unmasked tokens given back top-1 >= 97%, [MASK] top-1 >= 25%."""
    from transformers import AutoTokenizer, BertForMaskedLM

    from simec.data import load_davidson

    path = _cached("minilm-mlm-full")
    split = json.loads((path / "split.json").read_text())
    texts = load_davidson(SHARED / "davidson").texts
    held = [texts[i] for i in split["held_out_text_indices"][:300]]
    model = BertForMaskedLM.from_pretrained(path, attn_implementation="sdpa").eval()
    tok = AutoTokenizer.from_pretrained(path)
    m = evaluate_mlm(model, tok, held, seed=1)
    assert m["reconstruction_top1"] >= 0.97, m
    assert m["masked_top1"] >= 0.25, m


@pytest.mark.slow
@pytest.mark.skipif(
    _cached("minilm-mlm-full") is None
    or _cached("minilm-hate") is None
    or not (SHARED / "hatexplain").is_dir(),
    reason="needs minilm-mlm-full and minilm-hate in the cache and the HateXplain posts",
)
@pytest.mark.xfail(
    strict=True,
    reason="issue 14 target not met yet: 95.9% of the 31,738 explored tokens of all 1,141 "
    "hate/offensive HateXplain posts come back (Davidson held-out: 99.1%); HateXplain is out "
    "of the MLM's training domain",
)
def test_iteration_zero_decodes_to_the_post():
    """Decoding the classifier's unmodified embeddings of hate/offensive HateXplain posts with
    the new masked LM gives back >= 97% of the explored tokens (Algorithm 5, iteration 0)."""
    from simec.data import load_hatexplain_posts
    from simec.interpret.decode_text import MLMDecoder
    from simec.models import load_adapter

    classifier = load_adapter("minilm-hate")
    decoder = MLMDecoder(load_adapter("minilm-mlm-full", top_k=5))
    posts = load_hatexplain_posts(SHARED / "hatexplain" / "validation.jsonl")
    hits = total = 0
    for text, label in zip(posts.texts, posts.labels):
        if label == 2 or total > 600:  # normal posts are not explored
            continue
        prepared = classifier.prepare(text)
        ids = prepared.model_inputs["input_ids"][0]
        words = [i for i, t in enumerate(prepared.segment_names) if t not in ("[CLS]", "[SEP]")]
        decoded = decoder.decode(prepared.embeddings[None], prepared, segments=words, k=1)
        hits += int((decoded.ids[0, 0, words] == ids[words]).sum())
        total += len(words)
    assert hits / total >= 0.97, hits / total
