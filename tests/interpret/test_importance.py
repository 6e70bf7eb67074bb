import pytest
import torch

from simec import TorchAdapter
from simec.interpret import importance_from_jacobian, segment_importance
from simec.interpret.importance import SegmentImportance
from simec.models import from_model
from tests.conftest import TEXT, tiny_bert, tiny_vit


def test_linear_model_importance_is_top_singular_value_of_each_block(linear_model):
    model, x0 = linear_model
    adapter = TorchAdapter(model, dtype="float64")
    imp = segment_importance(adapter, x0, output_metric="euclidean-logits")
    w = model.weight.detach().reshape(3, 4, 5)
    expected = torch.stack([torch.linalg.svdvals(w[:, s, :])[0] ** 2 for s in range(4)])
    torch.testing.assert_close(imp.scores, expected, rtol=1e-12, atol=0)
    assert imp.ranking()[0][1] == pytest.approx(float(expected.max()))


@pytest.mark.parametrize("which", ["vit", "bert"])
@pytest.mark.parametrize("metric", ["euclidean-probs", "fisher-rao"])
def test_both_backends_give_the_same_importance(which, metric, tokenizer, image):
    if which == "vit":
        adapter, raw = from_model(tiny_vit(), dtype="float64"), image
    else:
        adapter, raw = from_model(tiny_bert(), tokenizer, dtype="float64"), TEXT
    low = segment_importance(adapter, raw, method="lowrank", output_metric=metric)
    ex = segment_importance(adapter, raw, method="exact", output_metric=metric)
    torch.testing.assert_close(low.scores, ex.scores, rtol=1e-9, atol=1e-15)
    assert (low.scores > 0).all()
    assert len(low.segment_names) == len(low.scores)


def test_importance_reflects_what_the_model_reads():
    # a model that only reads segment 2: every other segment has zero importance
    torch.manual_seed(0)
    head = torch.nn.Linear(6, 3).double()
    adapter = TorchAdapter(lambda x: head(x[2]), dtype="float64")
    x0 = torch.randn(5, 6, dtype=torch.float64)
    imp = segment_importance(adapter, x0)
    assert imp.ranking()[0][0] == "segment 2"
    assert (imp.scores[[0, 1, 3, 4]] == 0).all()
    torch.testing.assert_close(imp.normalized()[2], torch.tensor(1.0, dtype=torch.float64))


def test_rejects_bad_jacobians():
    with pytest.raises(Exception, match="segments, width"):
        importance_from_jacobian(torch.ones(3, 4), torch.ones(3))


def test_segment_importance_saves_and_loads_back_bit_for_bit(tokenizer, tmp_path):
    adapter = from_model(tiny_bert(), tokenizer, dtype="float64")
    imp = segment_importance(adapter, TEXT, output_metric="fisher-rao", method="exact")
    out = imp.save(tmp_path / "imp")
    assert out == tmp_path / "imp"
    assert sorted(p.name for p in out.iterdir()) == sorted(imp.FILES)
    back = SegmentImportance.load(out)
    assert back.scores.dtype == torch.float64 and torch.equal(back.scores, imp.scores)
    assert torch.equal(back.probabilities, imp.probabilities)
    assert (back.segment_names, back.labels) == (imp.segment_names, imp.labels)
    assert (back.method, back.output_metric) == ("exact", "fisher-rao")
    assert back.ranking() == imp.ranking() and back.predicted == imp.predicted
    # float32, a name with a quote and non-ASCII, saved over the first one
    small = SegmentImportance(
        torch.tensor([0.5, 0.0], dtype=torch.float32),
        ['"é"', "##x"],
        torch.tensor([0.25, 0.75], dtype=torch.float32),
        ["no", "yes"],
        "lowrank",
        "euclidean-probs",
    )
    back = SegmentImportance.load(small.save(out))
    assert back.scores.dtype == torch.float32 and torch.equal(back.scores, small.scores)
    assert back.segment_names == ['"é"', "##x"] and back.predicted == 1


def test_loading_segment_importance_from_elsewhere_is_a_clear_error(tmp_path):
    from simec.errors import InputError, OutputError

    with pytest.raises(InputError, match="not a saved segment importance"):
        SegmentImportance.load(tmp_path)
    (tmp_path / "segment_importance.json").write_text("{not json")
    (tmp_path / "segment_importance.safetensors").write_bytes(b"nope")
    with pytest.raises(InputError, match="cannot be read"):
        SegmentImportance.load(tmp_path)
    (tmp_path / "file").write_text("x")
    imp = SegmentImportance(torch.ones(1), ["a"], torch.ones(1), ["c"], "exact", "m")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        imp.save(tmp_path / "file")
