"""``logits_many``: B explored tensors of one input in one batch give each tensor's ``logits``."""

from __future__ import annotations

import pytest
import torch

from simec import TorchAdapter, from_model
from simec.explore.model_function import model_function
from simec.explore.segments import Segments
from simec.geometry.metrics import get_output_metric
from simec.models import HFSequenceClassifierAdapter
from simec.models.hf_text import HFMaskedLMAdapter
from tests.conftest import TEXT, tiny_bert, tiny_vit

pytestmark = pytest.mark.usefixtures("one_thread")


def _points(prepared, count=3, scale=0.2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x0 = prepared.embeddings
    noise = torch.randn((count, *x0.shape), generator=gen, dtype=x0.dtype)
    return x0 + scale * noise * x0.std()


def _check(adapter, prepared, atol):
    xs = _points(prepared)
    with torch.no_grad():
        batch = adapter.logits_many(xs, prepared)
        one = torch.stack([adapter.logits(x, prepared) for x in xs])
    assert batch.shape == one.shape == (len(xs), len(one[0]))
    torch.testing.assert_close(batch, one, rtol=0, atol=atol)
    assert not torch.allclose(one[0], one[1])  # the points differ, and so do their logits


@pytest.mark.parametrize("space", ["embeddings", "pixels"])
def test_vision(image, space):
    adapter = from_model(tiny_vit(), dtype="float64", space=space)
    _check(adapter, adapter.prepare(image), 1e-12)


def test_sequence_classifier(tokenizer):
    adapter = HFSequenceClassifierAdapter(tiny_bert(), tokenizer, dtype="float64")
    _check(adapter, adapter.prepare(TEXT), 1e-12)


def test_masked_lm(tokenizer):
    from tests.interpret.test_decode_text import tiny_mlm

    adapter = HFMaskedLMAdapter(tiny_mlm(), tokenizer, top_k=3, dtype="float64")
    _check(adapter, adapter.prepare("we love the [MASK] ."), 1e-12)


def test_torch_adapter_default_is_vmapped(linear_model):
    model, x0 = linear_model
    adapter = TorchAdapter(model, dtype="float64")
    _check(adapter, adapter.prepare(x0), 1e-12)


def test_the_model_function_of_a_subset_of_segments(image):
    """``ModelFunction.many`` writes the explored rows into x0 for each point: the same as
    calling it point by point."""
    adapter = from_model(tiny_vit(), dtype="float64")
    prepared = adapter.prepare(image)
    segments = Segments.select(prepared.embeddings, (0, 3, 4))
    fn = model_function(adapter, prepared, segments, get_output_metric("fisher-rao"))
    xs = _points(prepared)[:, segments.rows]
    (ys, logits), calls = fn.many(xs)
    assert calls == 1
    with torch.no_grad():
        one = [fn(x) for x in xs]
    torch.testing.assert_close(ys, torch.stack([o[0] for o in one]), rtol=0, atol=1e-12)
    torch.testing.assert_close(logits, torch.stack([o[1] for o in one]), rtol=0, atol=1e-12)
