"""The public adapter protocol: what other layers use instead of an adapter's private members."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

from simec import InputError, ModelError, TorchAdapter
from simec.models import HFMaskedLMAdapter, from_model, load_adapter
from tests.conftest import TEXT, tiny_vit
from tests.interpret.test_decode_text import tiny_mlm

MASKED = ["the cat sat on the [MASK] .", "i [MASK] you", "the dog is [MASK] !"]


def test_masked_lm_classify_is_the_explored_top_k_distribution(tokenizer):
    adapter = HFMaskedLMAdapter(tiny_mlm(), tokenizer, top_k=4, dtype="float64")
    probs = adapter.classify(MASKED, batch_size=2)  # padded batches of different lengths
    vocab = adapter.model.config.vocab_size
    assert probs.shape == (3, 4) and vocab > 4  # not vocabulary-sized
    for text, row in zip(MASKED, probs, strict=True):
        prepared = adapter.prepare(text)
        start = torch.softmax(adapter.logits(prepared.embeddings, prepared), -1)
        torch.testing.assert_close(row, start, rtol=0, atol=1e-10)
        assert bool((row[:-1] >= row[1:]).all())  # most likely token first
    ids = tokenizer(MASKED[:1], return_tensors="pt")["input_ids"]
    torch.testing.assert_close(adapter.classify_ids(ids)[0], probs[0], rtol=0, atol=1e-10)
    with pytest.raises(InputError, match="exactly one"):
        adapter.classify([TEXT])
    with pytest.raises(InputError, match="found 2"):
        adapter.classify(["the [MASK] sat on the [MASK]"])


def test_vision_run_classify_and_image_logits_agree_with_the_model(image):
    model = tiny_vit()
    adapter = from_model(model, image_mean=[0.5], image_std=[0.25])
    pixels = (torch.from_numpy(image) - 0.5) / 0.25
    with torch.no_grad():
        expected = model(pixel_values=pixels[None, None]).logits[0]
    torch.testing.assert_close(adapter.run({"pixel_values": pixels[None, None]})[0], expected)
    torch.testing.assert_close(adapter.image_logits(torch.from_numpy(image)[None]), expected)
    other = np.flipud(image).copy()
    probs = adapter.classify([image, other], batch_size=1)
    torch.testing.assert_close(probs[0], torch.softmax(expected, -1))
    prepared = adapter.prepare(other)
    at_x0 = torch.softmax(adapter.logits(prepared.embeddings, prepared), -1)
    torch.testing.assert_close(probs[1], at_x0)


def test_pixel_space_twin_shares_model_and_normalisation(vit_dir, image):
    adapter = load_adapter(vit_dir, dtype="float64")
    twin = adapter.with_space("pixels")
    assert adapter.with_space("embeddings") is adapter
    assert twin.space == "pixels" and twin.model is adapter.model
    assert twin.image_mean == adapter.image_mean == (0.5,)
    assert twin.image_std == adapter.image_std == (0.5,)
    assert (twin.device, twin.dtype) == (adapter.device, adapter.dtype)
    a, b = adapter.prepare(image), twin.prepare(image)
    torch.testing.assert_close(twin.unpatchify(b.embeddings)[None], a.model_inputs["pixel_values"])
    torch.testing.assert_close(
        twin.logits(b.embeddings, b), adapter.logits(a.embeddings, a), rtol=1e-12, atol=1e-12
    )
    # both spaces give the model its own inputs back, and run reproduces the logits from them
    for ad, prep in ((adapter, a), (twin, b)):
        inputs = ad.model_inputs(prep)
        torch.testing.assert_close(inputs["pixel_values"], a.model_inputs["pixel_values"])
        torch.testing.assert_close(
            ad.run(inputs)[0], ad.logits(prep.embeddings, prep), rtol=1e-12, atol=1e-12
        )


def test_patch_geometry():
    adapter = from_model(tiny_vit(image_size=8, patch_size=2))
    assert adapter.patch_grid == (4, 4) and adapter.num_patches == 16
    names = adapter.patch_names()
    assert len(names) == 16 and names[0] == "patch (0,0)" and names[5] == "patch (1,1)"
    assert adapter.prepare(np.full((8, 8), 0.3)).segment_names[1:] == names


def test_eager_copy_is_cached_and_leaves_the_users_model_alone(image):
    model = tiny_vit(attn="sdpa")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapter = from_model(model)
    copy = adapter.eager_copy()
    assert adapter.eager_copy() is copy and copy is not model
    assert copy.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    pixels = torch.from_numpy(image)[None, None]
    with torch.no_grad():
        out = copy(pixel_values=pixels, output_attentions=True)
        expected = model(pixel_values=pixels).logits
    assert len(out.attentions) == model.config.num_hidden_layers
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-6)


def test_weights_and_submodule_weights(bert, tokenizer):
    adapter = from_model(bert, tokenizer, dtype="float64")
    with pytest.raises(TypeError):
        adapter.weights["x"] = torch.zeros(1)  # type: ignore[index]
    module = adapter.embedding_module
    sub = adapter.submodule_weights(module)
    names = {n for n, _ in module.named_parameters()} | {n for n, _ in module.named_buffers()}
    assert set(sub) == names
    assert all(v.dtype == torch.float64 for v in sub.values() if v.is_floating_point())
    prepared = adapter.prepare(TEXT)
    ids = prepared.model_inputs["input_ids"]
    with torch.no_grad():
        x0 = functional_call(module.eval(), sub, (), {"input_ids": ids})[0]
    torch.testing.assert_close(x0, prepared.embeddings, rtol=0, atol=1e-12)
    with pytest.raises(ModelError, match="not a submodule"):
        adapter.submodule_weights(torch.nn.Linear(2, 2))


def test_plain_torch_adapter_protocol(linear_model):
    model, x0 = linear_model
    adapter = TorchAdapter(model, dtype="float64")
    probs = adapter.classify([x0, 2 * x0])
    for row, x in zip(probs, (x0, 2 * x0), strict=True):
        logits = model.weight.detach() @ x.reshape(-1) + model.bias.detach()
        torch.testing.assert_close(row, torch.softmax(logits, -1), rtol=1e-12, atol=1e-12)
    with pytest.raises(ModelError, match="explored tensor"):
        adapter.run({"x": x0})
    with pytest.raises(InputError, match="Hugging Face"):
        adapter.eager_copy()
    with pytest.raises(InputError, match="non-empty"):
        adapter.classify([])
