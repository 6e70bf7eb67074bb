import pytest
import torch

from simec import InputError, jacobian
from tests.conftest import tiny_vit


def test_linear_model_jacobian_is_its_matrix(linear_model):
    model, x0 = linear_model
    y, jac = jacobian(model, x0)
    assert jac.shape == (3, 4, 5)
    torch.testing.assert_close(jac.reshape(3, -1), model.weight.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(y, model(x0).detach())


def test_softmax_of_linear_matches_closed_form(linear_model):
    model, x0 = linear_model
    y, jac = jacobian(lambda x: torch.softmax(model(x), -1), x0)
    p = y
    expected = (torch.diag(p) - torch.outer(p, p)) @ model.weight.detach()
    torch.testing.assert_close(jac.reshape(3, -1), expected, rtol=1e-12, atol=1e-14)


def test_vit_jacobian_matches_autograd_reference_in_float64():
    model = tiny_vit().double()
    pixels = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    emb = model.vit.embeddings(pixels).detach()

    def fn(x):
        handle = model.vit.embeddings.register_forward_hook(lambda m, i, o: x)
        try:
            return torch.softmax(model(pixel_values=pixels).logits[0], -1)
        finally:
            handle.remove()

    _, jac = jacobian(lambda x: fn(x.unsqueeze(0)), emb[0])
    ref = torch.autograd.functional.jacobian(lambda x: fn(x.unsqueeze(0)), emb[0])
    torch.testing.assert_close(jac, ref, rtol=1e-10, atol=1e-12)


def test_chunking_gives_the_same_jacobian(linear_model):
    model, x0 = linear_model
    _, full = jacobian(model, x0)
    for chunk in (1, 2, 5):
        _, chunked = jacobian(model, x0, chunk_size=chunk)
        torch.testing.assert_close(chunked, full)


def test_rejects_non_vector_outputs_and_bad_chunks(linear_model):
    model, x0 = linear_model
    with pytest.raises(InputError, match="vector"):
        jacobian(lambda x: x * 2, x0)
    with pytest.raises(InputError, match="chunk_size"):
        jacobian(model, x0, chunk_size=0)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("1", True),
        (" ON ", True),
        ("yes", True),
        ("0", False),
        ("off", False),
        ("", None),
        ("x", None),
    ],
)
def test_simec_compile_is_read_in_one_place_by_jacobian_and_the_config(monkeypatch, value, parsed):
    import sys

    from simec.explore.config import ExploreConfig
    from simec.geometry.jacobian import compile_from_environment

    monkeypatch.setenv("SIMEC_COMPILE", value)
    assert compile_from_environment() is parsed
    # the explore config: the environment decides unless the run is long (auto)
    assert ExploreConfig(steps=1).use_compile() is bool(parsed)
    assert ExploreConfig(steps=10**6).use_compile() is (parsed is not False)
    # jacobian(compile=None): compiled only when the variable enables it
    tried = []
    jac_module = sys.modules["simec.geometry.jacobian"]  # the package exports a function
    monkeypatch.setattr(jac_module, "_compiled_jacobian", lambda *a: tried.append(1))
    x = torch.tensor([0.5, -1.5], dtype=torch.float64)
    y, j = jacobian(lambda z: torch.stack([z[0] * z[1], z[0] ** 2]), x)
    torch.testing.assert_close(j, torch.tensor([[-1.5, 0.5], [1.0, 0.0]], dtype=torch.float64))
    assert len(tried) == (1 if parsed else 0)
