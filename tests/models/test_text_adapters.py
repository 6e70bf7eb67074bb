"""Masked-LM adapter, padded-batch classification, the model cache, text data loaders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simec import explore
from simec.data import HATE_LABELS, load_davidson, load_hatexplain_posts
from simec.errors import InputError, ModelError
from simec.interpret import segment_importance
from simec.models import HFSequenceClassifierAdapter, load_adapter
from simec.models.cache import resolve_model_path
from simec.models.hf_text import HFMaskedLMAdapter
from tests.conftest import TEXT, make_tokenizer
from tests.interpret.test_decode_text import tiny_mlm

MASKED = "the cat sat on the [MASK] ."


def test_masked_lm_output_is_the_mask_distribution_restricted_to_its_top_k(tokenizer):
    model = tiny_mlm()
    adapter = HFMaskedLMAdapter(model, tokenizer, top_k=4)
    prepared = adapter.prepare(MASKED)
    mask = prepared.segment_names.index("[MASK]")
    with torch.no_grad():
        full = model(**prepared.model_inputs).logits[0, mask]
        got = adapter.logits(prepared.embeddings, prepared)
    top = full.topk(4).indices
    torch.testing.assert_close(got, full[top])
    assert prepared.labels == tokenizer.convert_ids_to_tokens(top.tolist())
    assert got.argmax() == 0  # most likely token first


def test_masked_lm_input_needs_exactly_one_mask(tokenizer):
    adapter = HFMaskedLMAdapter(tiny_mlm(), tokenizer)
    with pytest.raises(InputError, match="exactly one"):
        adapter.prepare(TEXT)
    with pytest.raises(InputError, match="found 2"):
        adapter.prepare("the [MASK] sat on the [MASK]")
    with pytest.raises(InputError, match="empty"):
        adapter.prepare("   ")
    with pytest.raises(InputError, match="top_k"):
        HFMaskedLMAdapter(tiny_mlm(), tokenizer, top_k=1)


@pytest.mark.parametrize("kind", ["classifier", "mlm"])
def test_token_importance_is_identical_for_both_spectral_back_ends(bert, tokenizer, kind):
    if kind == "mlm":
        adapter = HFMaskedLMAdapter(tiny_mlm(), tokenizer, top_k=5, dtype="float64")
        text = MASKED
    else:
        adapter = HFSequenceClassifierAdapter(bert, tokenizer, dtype="float64")
        text = TEXT
    exact = segment_importance(adapter, text, method="exact")
    low = segment_importance(adapter, text, method="lowrank")
    torch.testing.assert_close(exact.scores, low.scores, rtol=1e-8, atol=1e-12)
    assert exact.scores.min() > 0 and len(set(exact.scores.tolist())) > 1
    if kind == "mlm":
        assert exact.labels == adapter.prepare(text).labels


def test_exploring_a_masked_lm_records_its_token_labels(tokenizer):
    adapter = HFMaskedLMAdapter(tiny_mlm(), tokenizer, top_k=3)
    result = explore(adapter, MASKED, steps=3, seed=0)
    assert result.labels == adapter.prepare(MASKED).labels
    assert result.probabilities.shape == (4, 3)


def test_padded_batches_respect_the_attention_mask(bert, tokenizer):
    adapter = HFSequenceClassifierAdapter(bert, tokenizer)
    texts = ["the cat sat on the mat .", "we hate you", "good dog !", "i love the mat , they sat"]
    batched = adapter.classify(texts, batch_size=3)  # mixes lengths inside a batch
    for text, probs in zip(texts, batched):
        prepared = adapter.prepare(text)
        with torch.no_grad():
            single = torch.softmax(adapter.logits(prepared.embeddings, prepared), -1)
        torch.testing.assert_close(probs, single, atol=1e-5, rtol=1e-5)
    # without the mask the padded rows would differ: the check above can fail
    enc = tokenizer(texts[:2], return_tensors="pt", padding=True)
    assert enc["attention_mask"][1].sum() < enc["attention_mask"].shape[1]  # "we hate you" padded
    with torch.no_grad():
        unmasked = torch.softmax(bert(input_ids=enc["input_ids"]).logits, -1)
    assert not torch.allclose(unmasked[1], batched[1], atol=1e-4)


def test_classify_rejects_empty_and_over_long_texts(bert, tokenizer):
    adapter = HFSequenceClassifierAdapter(bert, tokenizer)
    with pytest.raises(InputError, match="empty"):
        adapter.classify(["the cat", " "])
    with pytest.raises(InputError, match="list of texts"):
        adapter.classify("the cat")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="tokens"):
        adapter.classify(["the cat " * 30])
    long = HFSequenceClassifierAdapter(bert, tokenizer, truncation=True).classify(["the cat " * 30])
    assert long.shape == (1, 3)


def test_load_adapter_reads_masked_lm_directories(tmp_path):
    path = tmp_path / "mlm"
    tiny_mlm().save_pretrained(path)
    make_tokenizer(tmp_path).save_pretrained(path)
    adapter = load_adapter(path, top_k=3)
    assert isinstance(adapter, HFMaskedLMAdapter)
    assert len(adapter.prepare(MASKED).labels) == 3


def test_cached_model_names_say_how_to_train_them(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMEC_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelError, match="simec train text-classifier"):
        load_adapter("minilm-hate")
    target = tmp_path / "cache" / "models" / "minilm-mlm"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    assert resolve_model_path("minilm-mlm") == target
    assert resolve_model_path(tmp_path) == tmp_path  # paths pass through


def test_davidson_loader_maps_classes_and_skips_empty_tweets(tmp_path):
    csv = tmp_path / "labeled_data.csv"
    csv.write_text(
        ",count,hate_speech,offensive_language,neither,class,tweet\n"
        '0,3,0,0,3,2,"a  nice\nday"\n'
        "1,3,3,0,0,0,you are awful\n"
        "2,3,0,3,0,1,   \n"
        "3,3,0,3,0,1,damn it\n"
    )
    data = load_davidson(tmp_path)
    assert data.texts == ["a nice day", "you are awful", "damn it"]
    assert [HATE_LABELS[i] for i in data.labels] == ["normal", "hate speech", "offensive"]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="'class' and 'tweet'"):
        load_davidson(bad)
    with pytest.raises(InputError, match="does not exist"):
        load_davidson(tmp_path / "missing.csv")


def test_hatexplain_posts_take_the_majority_label(tmp_path):
    rows = [
        {"id": "a", "annotators": {"label": [0, 0, 1]}, "post_tokens": ["x", "y"]},
        {"id": "b", "annotators": {"label": [1, 1, 2]}, "post_tokens": ["z"]},
        {"id": "c", "annotators": {"label": [0, 1, 2]}, "post_tokens": ["no", "majority"]},
        {"id": "d", "annotators": {"label": [2, 2, 0]}, "post_tokens": ["w"]},
    ]
    path = tmp_path / "validation.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_hatexplain_posts(path)
    assert data.ids == ["a", "b", "d"]
    assert [HATE_LABELS[i] for i in data.labels] == ["hate speech", "normal", "offensive"]
    hateful = load_hatexplain_posts(tmp_path, labels=("hate speech", "offensive"))
    assert hateful.texts == ["x y", "w"]
    assert np.array_equal(hateful.labels, [0, 1])
