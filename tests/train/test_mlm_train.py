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


def test_random_rows_draw_every_piece_but_the_special_ones_uniformly(tmp_path):
    from simec.train.mlm import _candidates, random_rows

    tok = make_tokenizer(tmp_path)
    cands = _candidates(tok, len(VOCAB))
    special = set(tok.all_special_ids)
    assert set(cands.tolist()) == set(range(len(VOCAB))) - special and len(special) == 5
    gen = torch.Generator().manual_seed(0)
    ids = random_rows(cands, 500, 30, cls_id=2, sep_id=3, generator=gen)
    assert ids.shape == (500, 32)
    assert (ids[:, 0] == 2).all() and (ids[:, -1] == 3).all()
    inner = ids[:, 1:-1]
    assert not torch.isin(inner, torch.tensor(sorted(special))).any()
    counts = torch.bincount(inner.flatten(), minlength=len(VOCAB))[cands]
    expected = inner.numel() / len(cands)  # 15,000 draws over 22 pieces: ~682 each
    assert (counts - expected).abs().max() < 5 * expected**0.5


class _Echo(torch.nn.Module):
    """Logits that pick the input id (``shift`` 0) or the next id (``shift`` 1)."""

    def __init__(self, vocab, shift):
        super().__init__()
        from types import SimpleNamespace

        self.w = torch.nn.Parameter(torch.zeros(1))
        self.shift = shift
        self.config = SimpleNamespace(vocab_size=vocab, max_position_embeddings=24)

    def forward(self, input_ids, attention_mask):
        from types import SimpleNamespace

        target = (input_ids + self.shift) % self.config.vocab_size
        logits = torch.nn.functional.one_hot(target, self.config.vocab_size).float()
        return SimpleNamespace(logits=logits)


def test_random_give_back_counts_every_piece(tmp_path):
    from simec.train.mlm import evaluate_random_give_back

    tok = make_tokenizer(tmp_path)
    echo = evaluate_random_give_back(_Echo(len(VOCAB), 0), tok, rows=8, max_length=64, seed=3)
    # lengths spread 1..22 (the model's 24 positions bound max_length): 8 rows
    lengths = np.linspace(1, 22, 8).round().astype(int)
    assert echo == {"random_top1": 1.0, "random_tokens": int(lengths.sum())}
    shifted = evaluate_random_give_back(_Echo(len(VOCAB), 1), tok, rows=8, seed=3)
    assert shifted["random_top1"] == 0.0


def _train(encoder_dir, texts_file, out, **options):
    cfg = MLMTrainConfig(
        data=str(texts_file),
        encoder=str(encoder_dir),
        out=str(out),
        batch_size=16,
        lr=5e-3,
        head_lr=5e-3,
        test_fraction=0.1,
        **{"seed": 0, **options},
    )
    return train_mlm(cfg, progress=False)


def test_random_rows_teach_the_identity_on_pieces_the_texts_lack(encoder_dir, texts_file, tmp_path):
    """The texts use 18 of the 22 ordinary pieces (no '.', ',', '!', no '##' pieces): the
    give-back of random rows over all 22 rises with ``random_rows``."""
    plain = _train(encoder_dir, texts_file, tmp_path / "plain", epochs=60)
    mixed = _train(encoder_dir, texts_file, tmp_path / "mixed", epochs=60, random_rows=8)
    # ~0.5 without random rows, ~0.8 with them (420 steps of a 2-layer, width-16 model)
    assert mixed["random_top1"] > max(0.7, plain["random_top1"] + 0.2), (plain, mixed)
    assert mixed["reconstruction_top1"] > 0.75
    card = (tmp_path / "mixed" / "README.md").read_text()
    assert "8 rows per batch of word pieces drawn uniformly" in card
    assert f"{100 * mixed['random_top1']:.1f}%" in card
    log = json.loads((tmp_path / "mixed" / "training_log.json").read_text())
    assert log["config"]["random_rows"] == 8 and log["config"]["random_weight"] == 1.0
    assert log["metrics"]["random_top1"] == mixed["random_top1"]


def test_init_continues_a_trained_model_and_checks_it(encoder_dir, texts_file, tmp_path):
    from transformers import BertForMaskedLM

    first = tmp_path / "first"
    m1 = _train(encoder_dir, texts_file, first, epochs=20)
    m2 = _train(encoder_dir, texts_file, tmp_path / "second", epochs=20, init=str(first))
    # continuing from the first model's weights, not from the encoder's: better than it
    assert m2["reconstruction_top1"] >= m1["reconstruction_top1"] and m2["init"] == str(first)
    enc = BertForMaskedLM.from_pretrained(encoder_dir).bert.embeddings.state_dict()
    got = BertForMaskedLM.from_pretrained(tmp_path / "second").bert.embeddings.state_dict()
    assert all(torch.equal(enc[k], got[k]) for k in enc)
    assert f"Continued from `{first}`" in (tmp_path / "second" / "README.md").read_text()
    with pytest.raises(InputError, match="held out other texts"):
        _train(encoder_dir, texts_file, tmp_path / "x", epochs=1, init=str(first), seed=1)
    other = BertForMaskedLM.from_pretrained(first)
    with torch.no_grad():
        other.bert.embeddings.word_embeddings.weight[7] += 1.0
    other.save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "split.json").write_text((first / "split.json").read_text())
    with pytest.raises(InputError, match="embeddings module"):
        _train(encoder_dir, texts_file, tmp_path / "x", epochs=1, init=str(tmp_path / "other"))
    with pytest.raises(InputError, match="no config.json"):
        _train(encoder_dir, texts_file, tmp_path / "x", epochs=1, init=str(tmp_path / "none"))


def test_out_may_name_a_cached_model(encoder_dir, texts_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMEC_CACHE", str(tmp_path / "cache"))
    cfg = MLMTrainConfig(
        data=str(texts_file), encoder=str(encoder_dir), out="minilm-mlm-hatexplain", epochs=1
    )
    m = train_mlm(cfg, progress=False)
    path = tmp_path / "cache" / "models" / "minilm-mlm-hatexplain"
    assert m["out"] == str(path) and (path / "config.json").is_file()


def test_bad_options_are_clear(texts_file):
    with pytest.raises(InputError, match="mask_prob"):
        train_mlm(MLMTrainConfig(data=str(texts_file), mask_prob=1.5), progress=False)
    with pytest.raises(InputError, match="random_rows"):
        train_mlm(MLMTrainConfig(data=str(texts_file), random_rows=-1), progress=False)
    with pytest.raises(InputError, match="does not exist"):
        train_mlm(MLMTrainConfig(data="nope.txt"), progress=False)


def _cached(name):
    from simec.models.cache import cache_dir

    path = cache_dir() / "models" / name
    return path if (path / "config.json").is_file() else None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["minilm-mlm-full", "minilm-mlm-hatexplain"])
def test_cached_model_meets_the_targets_on_its_held_out_texts(name):
    """Re-measured: unmasked tokens given back top-1 >= 97%, [MASK] top-1 >= 25%."""
    from transformers import AutoTokenizer, BertForMaskedLM

    from simec.data import load_davidson
    from simec.models.cache import CACHED_MODELS

    if _cached(name) is None or not (SHARED / "davidson").is_dir():
        pytest.skip(f"{name} is not in the cache ({CACHED_MODELS[name]})")
    path = _cached(name)
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
    _cached("minilm-mlm-hatexplain") is None
    or _cached("minilm-hate") is None
    or not (SHARED / "hatexplain").is_dir(),
    reason="needs minilm-mlm-hatexplain and minilm-hate in the cache and the HateXplain posts",
)
def test_iteration_zero_decodes_to_the_post():
    """Decoding the classifier's unmodified embeddings of hate/offensive HateXplain posts with
    the masked LM trained with random-piece give-back (never on HateXplain) gives back >= 97%
    of the explored tokens (Algorithm 5, iteration 0). Over all 1,141 such posts (31,738
    tokens) it gives back 98.0%, minilm-mlm-full 95.9%; this test measures the first ~600."""
    from simec.data import load_hatexplain_posts
    from simec.interpret.decode_text import MLMDecoder
    from simec.models import load_adapter

    classifier = load_adapter("minilm-hate")
    decoder = MLMDecoder(load_adapter("minilm-mlm-hatexplain", top_k=5))
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
