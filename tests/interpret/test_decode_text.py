"""Text decoding (Algorithm 5 for BERT): nearest token, masked-LM top-k, alternative prompts."""

from __future__ import annotations

import pytest
import torch

from simec.errors import InputError
from simec.interpret.decode_text import MLMDecoder, NearestTokenDecoder, alternative_prompts
from simec.models import HFSequenceClassifierAdapter
from simec.models.hf_text import HFMaskedLMAdapter
from tests.conftest import TEXT, VOCAB, tiny_bert_config


def tiny_mlm(*, seed: int = 0):
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    config = tiny_bert_config(initializer_range=0.3, attn_implementation="sdpa")
    return BertForMaskedLM(config).eval()


def copying_mlm():
    """A tiny masked LM trained (here, in ~1 s) to predict its own input tokens."""
    model = tiny_mlm(seed=1).train()
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        ids = torch.randint(5, len(VOCAB), (32, 12), generator=gen)
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _words(prepared):
    return [i for i, t in enumerate(prepared.segment_names) if not t.startswith("[")]


@pytest.mark.parametrize("fast", [True, False])
def test_nearest_token_decodes_unmodified_embeddings_to_the_original_tokens(bert, tokenizer, fast):
    adapter = HFSequenceClassifierAdapter(bert, tokenizer)
    prepared = adapter.prepare(TEXT)
    decoder = NearestTokenDecoder(adapter)
    decoder._fast = fast  # the generic path substitutes tokens into the real sequence
    decoded = decoder.decode(prepared.embeddings, prepared)
    original = prepared.model_inputs["input_ids"][0]
    assert decoded.positions == _words(prepared)
    assert torch.equal(decoded.ids[0, 0], original)
    assert decoded.scores.abs().max() < 1e-5  # distance to its own embedding


def test_nearest_token_table_is_the_embeddings_module_output_at_that_position(bert, tokenizer):
    adapter = HFSequenceClassifierAdapter(bert, tokenizer)
    prepared = adapter.prepare(TEXT)
    fast, slow = NearestTokenDecoder(adapter), NearestTokenDecoder(adapter)
    slow._fast = False
    for i in _words(prepared):
        torch.testing.assert_close(fast.table(prepared, i), slow.table(prepared, i))


def test_nearest_token_finds_a_planted_token_and_keeps_other_positions(bert, tokenizer):
    adapter = HFSequenceClassifierAdapter(bert, tokenizer, dtype="float64")
    prepared = adapter.prepare(TEXT)
    decoder = NearestTokenDecoder(adapter)
    i, j = _words(prepared)[1], _words(prepared)[2]  # "cat", "sat"
    dog = tokenizer.convert_tokens_to_ids("dog")
    x = prepared.embeddings.clone()
    row = int((decoder.candidates == dog).nonzero())
    x[i] = decoder.table(prepared, i)[row] + 1e-4 * torch.randn(x.shape[1], dtype=x.dtype)
    x[j] = x[j] + 50.0  # far from everything, but position j is not decoded
    decoded = decoder.decode(x, prepared, segments=[i])
    ids = decoded.ids[0, 0]
    assert int(ids[i]) == dog
    expected = prepared.model_inputs["input_ids"][0].clone()
    expected[i] = dog
    assert torch.equal(ids, expected)


def test_nearest_token_skips_special_tokens_unless_asked(bert, tokenizer):
    adapter = HFSequenceClassifierAdapter(bert, tokenizer)
    specials = set(tokenizer.all_special_ids)
    assert not specials & set(NearestTokenDecoder(adapter).candidates.tolist())
    assert specials <= set(NearestTokenDecoder(adapter, allow_special=True).candidates.tolist())


def test_mlm_decoding_of_unmodified_embeddings_returns_the_original_tokens(tokenizer):
    model = copying_mlm()
    adapter = HFMaskedLMAdapter(model, tokenizer, top_k=3)
    prepared = adapter.prepare("the cat [MASK] on the mat .")
    decoder = MLMDecoder(adapter)
    decoded = decoder.decode(prepared.embeddings, prepared, k=5)
    original = prepared.model_inputs["input_ids"][0]
    words = [i for i in _words(prepared)]
    assert decoded.ids.shape == (1, 5, len(original))
    assert torch.equal(decoded.ids[0, 0, words], original[words])
    # the other positions (specials) are untouched in every alternative
    others = [i for i in range(len(original)) if i not in words]
    assert (decoded.ids[0, :, others] == original[others]).all()
    assert decoder.embedding_mismatch(prepared) == 0.0


def test_mlm_decoding_matches_a_direct_forward_pass_at_explored_points(tokenizer):
    model = tiny_mlm()
    adapter = HFMaskedLMAdapter(model, tokenizer, top_k=3)
    prepared = adapter.prepare("we love the [MASK] .")
    gen = torch.Generator().manual_seed(0)
    points = prepared.embeddings + 0.3 * torch.randn((4, *prepared.embeddings.shape), generator=gen)
    decoded = MLMDecoder(adapter, batch_size=3).decode(points, prepared, k=2)
    for m in range(4):
        emb = model.bert.embeddings
        handle = emb.register_forward_hook(lambda *_a, p=points[m]: p.unsqueeze(0))
        try:
            with torch.no_grad():
                logits = model(**prepared.model_inputs).logits[0]
        finally:
            handle.remove()
        top = logits.topk(2, -1).indices  # (n, 2)
        for i in decoded.positions:
            assert decoded.ids[m, :, i].tolist() == top[i].tolist()


def test_alternative_prompts_are_classified_like_single_texts(bert, tokenizer):
    adapter = HFSequenceClassifierAdapter(bert, tokenizer)
    prepared = adapter.prepare(TEXT)
    decoder = MLMDecoder(HFMaskedLMAdapter(tiny_mlm(), tokenizer, top_k=2))
    decoded = decoder.decode(prepared.embeddings, prepared, k=3)
    probs = alternative_prompts(adapter, decoded)
    assert probs.shape == (1, 3, 3)
    for j in range(3):
        with torch.no_grad():
            ref = torch.softmax(bert(input_ids=decoded.ids[0, j : j + 1]).logits[0], -1)
        torch.testing.assert_close(probs[0, j], ref, atol=1e-5, rtol=1e-5)


def test_decoders_reject_points_of_the_wrong_shape(bert, tokenizer):
    adapter = HFSequenceClassifierAdapter(bert, tokenizer)
    prepared = adapter.prepare(TEXT)
    with pytest.raises(InputError, match="explored points"):
        NearestTokenDecoder(adapter).decode(prepared.embeddings[:-1], prepared)
    with pytest.raises(InputError, match="out of range"):
        NearestTokenDecoder(adapter).decode(prepared.embeddings, prepared, segments=[99])
    with pytest.raises(InputError, match="masked-LM adapter"):
        MLMDecoder(adapter)  # type: ignore[arg-type]
