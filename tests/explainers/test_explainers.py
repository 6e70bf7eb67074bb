import pytest
import torch

from simec import InputError, TorchAdapter
from simec.explainers import aggregate_word_pieces, explain, explainer_names
from simec.models import from_model
from tests.conftest import TEXT, tiny_bert


def one_token_reader():
    """A classifier whose logits depend only on segment 2 (the answer is known)."""
    torch.manual_seed(0)
    head = torch.nn.Linear(6, 3).double()
    adapter = TorchAdapter(lambda x: head(x[2]), dtype="float64")
    x0 = torch.randn(5, 6, dtype=torch.float64) + 1.0
    return adapter, x0


@pytest.mark.parametrize("method", ["simec", "grad_x_input", "integrated_gradients"])
def test_explainers_agree_on_a_model_that_reads_one_token(method):
    adapter, x0 = one_token_reader()
    exp = explain(adapter, x0, method)
    others = exp.scores[[0, 1, 3, 4]]
    assert (others == 0).all()
    assert exp.scores[2].abs() > 0
    assert exp.segment_names[2] == "segment 2"


def test_integrated_gradients_is_exact_on_a_linear_model(linear_model):
    model, x0 = linear_model
    adapter = TorchAdapter(model, dtype="float64")
    exp = explain(adapter, x0, "integrated_gradients", target=1, steps=4)
    # completeness: for a linear logit, IG per element is w * x, so scores sum to w.x
    w = model.weight.detach()[1].reshape(4, 5)
    torch.testing.assert_close(exp.scores, (w * x0).sum(-1))
    grad_x = explain(adapter, x0, "grad_x_input", target=1)
    torch.testing.assert_close(grad_x.scores, exp.scores)


def test_registry_and_random_floor(tokenizer):
    assert {"simec", "grad_x_input", "integrated_gradients", "random"} <= set(explainer_names())
    adapter = from_model(tiny_bert(), tokenizer, dtype="float64")
    a = explain(adapter, TEXT, "random", seed=1)
    b = explain(adapter, TEXT, "random", seed=1)
    assert torch.equal(a.scores, b.scores) and len(a.scores) == len(a.segment_names)
    with pytest.raises(InputError, match="unknown explainer"):
        explain(adapter, TEXT, "lime")


def test_word_piece_aggregation():
    tokens = ["[CLS]", "de", "##cei", "##tful", "people", "[SEP]"]
    scores = torch.tensor([9.0, 0.1, 0.5, 0.2, 0.3, 9.0])
    words, values = aggregate_word_pieces(tokens, scores)
    assert words == ["deceitful", "people"]
    torch.testing.assert_close(values, torch.tensor([0.5, 0.3], dtype=torch.float64))
    _, summed = aggregate_word_pieces(tokens, scores, rule="sum")
    torch.testing.assert_close(summed, torch.tensor([0.8, 0.3], dtype=torch.float64))


@pytest.mark.parametrize("method", ["rollout", "relevancy"])
def test_attention_explainers_on_hf_models_leave_the_model_alone(method, tokenizer, image):
    from tests.conftest import tiny_vit

    for model, raw, tok in ((tiny_vit(), image, None), (tiny_bert(), TEXT, tokenizer)):
        before = model.config._attn_implementation
        adapter = from_model(model, tok) if tok else from_model(model)
        exp = explain(adapter, raw, method)
        assert len(exp.scores) == len(exp.segment_names)
        assert torch.isfinite(exp.scores).all() and exp.scores.abs().sum() > 0
        assert model.config._attn_implementation == before  # the user's model is untouched
    pixels = from_model(tiny_vit(), space="pixels")
    assert len(explain(pixels, image, method).scores) == 16  # patches only, CLS dropped


def test_an_explanation_saves_and_loads_back_bit_for_bit(tmp_path):
    from simec.explainers import Explanation

    adapter, x0 = one_token_reader()
    exp = explain(adapter, x0, "integrated_gradients", target=1, steps=3)
    back = Explanation.load(exp.save(tmp_path / "exp"))
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == sorted(Explanation.FILES)
    assert back.scores.dtype == torch.float64 and torch.equal(back.scores, exp.scores)
    assert (back.segment_names, back.target, back.method) == (
        exp.segment_names,
        1,
        "integrated_gradients",
    )
    neg = Explanation(torch.tensor([-1.5, 2.0], dtype=torch.float32), ["[CLS]", "ü"], 0, "x")
    back = Explanation.load(neg.save(tmp_path / "exp"))  # over the first one
    assert back.scores.dtype == torch.float32 and torch.equal(back.scores, neg.scores)
    assert back.segment_names == ["[CLS]", "ü"] and back.target == 0


def test_loading_an_explanation_from_elsewhere_is_a_clear_error(tmp_path):
    from simec.explainers import Explanation

    with pytest.raises(InputError, match="not a saved explanation .no explanation.json"):
        Explanation.load(tmp_path)
    (tmp_path / "explanation.json").write_text("[1, 2]")
    Explanation(torch.ones(1), ["a"], 0, "x").save(tmp_path / "other")
    (tmp_path / "other" / "explanation.safetensors").rename(tmp_path / "explanation.safetensors")
    with pytest.raises(InputError, match="not a JSON object"):
        Explanation.load(tmp_path)
    (tmp_path / "explanation.json").write_text("{}")
    with pytest.raises(InputError, match="lacks 'segment_names'"):
        Explanation.load(tmp_path)
