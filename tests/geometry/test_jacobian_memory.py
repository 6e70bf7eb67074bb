"""Memory-bounded Jacobians (``max_memory``): the same J in chunks; bad budgets are one-line
errors."""

import pytest
import torch

from simec import ExploreConfig, InputError
from simec.geometry.jacobian import (
    activation_bytes,
    batched_jacobian,
    jacobian,
    memory_chunks,
    parse_memory,
)
from simec.models import from_model
from tests.conftest import tiny_vit


def _vit_fn(dtype, num_labels=10):
    """(x -> (probabilities, logits)) of a tiny ViT from its embeddings, and the embeddings."""
    adapter = from_model(tiny_vit(num_labels=num_labels), dtype=str(dtype).replace("torch.", ""))
    image = torch.rand(8, 8, generator=torch.Generator().manual_seed(0)).numpy()
    prepared = adapter.prepare(image)

    def fn(x):
        logits = adapter.logits(x, prepared)
        return torch.softmax(logits, -1), logits

    return fn, prepared.embeddings


def _budget_for_rows(fn, x, rows):
    """A budget whose estimate allows exactly ``rows`` rows at once."""
    activations, q = activation_bytes(fn, x)
    row = x.numel() * x.element_size()
    budget = activations + 2 * q * row + rows * (activations + row)
    assert memory_chunks(budget, activations, q, row) == (1, rows)
    return budget


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_chunked_jacobian_equals_the_unchunked_one(dtype, tol):
    fn, x = _vit_fn(dtype)
    y, jac, logits = jacobian(fn, x, has_aux=True)
    for rows in (1, 3, 7):
        budget = _budget_for_rows(fn, x, rows)
        y2, jac2, logits2 = jacobian(fn, x, has_aux=True, max_memory=budget)
        torch.testing.assert_close(jac2, jac, rtol=0, atol=tol * float(jac.abs().max()))
        torch.testing.assert_close(y2, y, rtol=0, atol=0)
        torch.testing.assert_close(logits2, logits, rtol=0, atol=0)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_batched_jacobian_split_over_the_batch_equals_the_whole_batch(dtype, tol):
    fn, x = _vit_fn(dtype)
    gen = torch.Generator().manual_seed(1)
    xs = x + 0.1 * torch.randn(5, *x.shape, generator=gen, dtype=dtype)
    scale = torch.arange(5, dtype=dtype) + 1.0

    def fn2(z, s):
        out, logits = fn(z * s)
        return out, logits

    y, jac, logits = batched_jacobian(fn2, xs, scale, has_aux=True)
    activations, q = activation_bytes(fn2, xs[0], scale[0])
    row = x.numel() * x.element_size()
    fixed, per_row = activations + 2 * q * row, activations + row
    budget = 2 * (fixed + per_row) + per_row  # two items per part, one row at a time
    assert memory_chunks(budget, activations, q, row, batch=5) == (2, 1)
    y2, jac2, logits2 = batched_jacobian(fn2, xs, scale, has_aux=True, max_memory=budget)
    torch.testing.assert_close(jac2, jac, rtol=0, atol=tol * float(jac.abs().max()))
    torch.testing.assert_close(y2, y, rtol=0, atol=tol)
    torch.testing.assert_close(logits2, logits, rtol=0, atol=tol * float(logits.abs().max()))


def test_activation_estimate_counts_activations_not_weights():
    fn, x = _vit_fn(torch.float32)
    activations, q = activation_bytes(fn, x)
    assert q == 10
    # more than the input, far less than a copy per weight matrix would suggest for 16-wide
    # layers, and it grows with the input length (activations, not weights)
    assert activations > x.numel() * 4
    longer = torch.cat([x, x])
    assert activation_bytes(fn, longer)[0] > 1.5 * activations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2GB", 2 * 10**9),
        ("512MiB", 512 * 2**20),
        ("1.5GiB", int(1.5 * 2**30)),
        ("100k", 100_000),
        ("4096", 4096),
        (4096, 4096),
        ("none", None),
        (None, None),
    ],
)
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["2XB", "-1GB", "0", "GB", "lots", "0.1"])
def test_bad_memory_sizes_are_one_line_errors(text):
    with pytest.raises(ValueError):
        parse_memory(text)
    with pytest.raises(InputError) as info:
        ExploreConfig(max_memory=text).validate()
    assert "\n" not in str(info.value) and "max_memory" in str(info.value)


def test_a_budget_below_one_row_is_a_one_line_error():
    fn, x = _vit_fn(torch.float32)
    with pytest.raises(InputError) as info:
        jacobian(fn, x, has_aux=True, max_memory=1000)
    message = str(info.value)
    assert "\n" not in message and "max_memory" in message and "10 rows" in message
    with pytest.raises(InputError):
        jacobian(fn, x, has_aux=True, max_memory=0)
