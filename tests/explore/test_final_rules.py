"""The final version's step rule (``step_rule="paper-final"``) and box
(``box="embedding-bounds"``) on models whose answers are known by hand."""

from __future__ import annotations

import math

import pytest
import torch

from simec import TorchAdapter
from simec.errors import InputError, ModelError
from simec.explore import explore
from simec.explore.box import affine_bounds, embedding_bounds
from simec.explore.config import ExploreConfig
from simec.geometry import steps
from simec.models.hf_text import HFSequenceClassifierAdapter
from simec.models.hf_vision import HFImageClassifierAdapter
from tests.conftest import LinearLogits, make_tokenizer, tiny_bert

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- the step rules ---------------------------------------------------------------------------


def test_final_step_size_by_hand():
    assert steps.final_step_size(9.0, 1.0, 1.0) == pytest.approx(1 / 3)
    assert steps.final_step_size(16.0, 4.0, 10.0) == pytest.approx(5.0)
    assert steps.final_step_size(16.0, 4.0, 10.0, cap=2.0) == 2.0
    assert steps.rule_step_size("paper-v1", 4.0, None, scale=2.0, eta=7.0) == 1.0
    assert steps.rule_step_size("paper-final", 4.0, 1.0, scale=2.0, eta=7.0) == 3.5
    with pytest.raises(ValueError):
        steps.final_step_size(1.0, 0.0, 1.0)
    with pytest.raises(ValueError):
        steps.rule_step_size("paper-final", 1.0, None, scale=1.0, eta=1.0)


def _linear_adapter():
    """logits = W x with W = diag-like (3, 1) on a width-4 input: g = W^T W has the
    eigenvalues 9, 1, 0, 0 everywhere (a linear model: the same at every point)."""
    weight = torch.zeros(2, 4, dtype=torch.float64)
    weight[0, 0], weight[1, 1] = 3.0, 1.0
    model = LinearLogits(weight, torch.tensor([0.3, -0.2], dtype=torch.float64), (1, 4))
    x0 = torch.tensor([[0.4, -0.7, 1.1, 0.5]], dtype=torch.float64)
    return TorchAdapter(model, dtype="float64"), x0


@pytest.mark.parametrize("method", ["lowrank", "exact"])
@pytest.mark.parametrize(
    ("algorithm", "rule", "eta", "multiplier", "expected"),
    [
        ("simec", "paper-v1", 1.0, 1.0, 1 / 3),  # 1 / sqrt(9)
        ("simexp", "paper-v1", 1.0, 1.0, 2 / 3),  # 2 / sqrt(9)
        ("simec", "paper-final", 1.0, 1.0, 1 / 3),  # sqrt(1 / 9)
        ("simexp", "paper-final", 10.0, 1.0, 10 / 3),  # 10 sqrt(1 / 9), the same for both
        ("simexp", "paper-final", 10.0, 0.5, 5 / 3),
    ],
)
def test_step_rules_on_a_linear_model(method, algorithm, rule, eta, multiplier, expected):
    adapter, x0 = _linear_adapter()
    result = explore(
        adapter,
        x0,
        algorithm=algorithm,
        steps=4,
        method=method,
        output_metric="euclidean-logits",
        step_rule=rule,
        eta=eta,
        step_multiplier=multiplier,
        max_step=None,
        projection="none",
    )
    assert result.lambda_max == pytest.approx([9.0] * 4)
    assert result.step_sizes == pytest.approx([expected] * 4, rel=1e-12)
    moved = torch.linalg.vector_norm(result.trajectory[1] - result.trajectory[0])
    assert float(moved) == pytest.approx(expected, rel=1e-9)


def test_final_rule_with_jacobian_reuse_uses_the_kept_spectrum():
    adapter, x0 = _linear_adapter()
    result = explore(
        adapter,
        x0,
        steps=5,
        output_metric="euclidean-logits",
        step_rule="paper-final",
        eta=3.0,
        max_step=None,
        projection="none",
        jacobian_reuse="3",
    )
    assert result.step_sizes == pytest.approx([1.0] * 5, rel=1e-12)  # 3 sqrt(1 / 9)


def test_final_rule_keeps_the_cap_and_rtol_moves_lambda_min():
    adapter, x0 = _linear_adapter()
    common = dict(output_metric="euclidean-logits", step_rule="paper-final", projection="none")
    capped = explore(adapter, x0, steps=2, eta=10.0, max_step=0.01, **common)
    cap = 0.01 * float(torch.linalg.vector_norm(x0))
    assert capped.step_sizes == pytest.approx([cap, cap])
    # rtol = 0.2: the eigenvalue 1 (1/9 of lambda_max) counts as null, lambda_min = 9
    ranked = explore(adapter, x0, steps=2, rtol=0.2, max_step=None, **common)
    assert ranked.ranks == [1, 1] and ranked.step_sizes == pytest.approx([1.0, 1.0])


def test_defaults_and_bad_values():
    cfg = ExploreConfig()
    assert (cfg.step_rule, cfg.eta, cfg.box) == ("paper-v1", 1.0, "input")
    with pytest.raises(InputError, match="step_rule"):
        ExploreConfig(step_rule="paper-v2").validate()
    with pytest.raises(InputError, match="eta"):
        ExploreConfig(eta=0.0).validate()
    with pytest.raises(InputError, match="box"):
        ExploreConfig(box="pixels").validate()


# ---- the embedding-bounds box -----------------------------------------------------------------


def _pixel_patch_vit(width: int, intermediate: int, **config: float):
    """A one-layer ViT on 2x2 gray images with 1x1 patches (seed 0), of the given width."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    vit_config = ViTConfig(
        image_size=2,
        patch_size=1,
        num_channels=1,
        hidden_size=width,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=intermediate,
        num_labels=2,
        **config,
    )
    return ViTForImageClassification(vit_config).eval()


def _hand_vit():
    """A ViT on 2x2 gray images with 1x1 patches and width 2, weights set by hand."""
    model = _pixel_patch_vit(2, 4)
    emb = model.vit.embeddings
    with torch.no_grad():
        emb.patch_embeddings.projection.weight.copy_(torch.tensor([2.0, -3.0]).view(2, 1, 1, 1))
        emb.patch_embeddings.projection.bias.copy_(torch.tensor([0.5, 0.0]))
        pos = [[0.0, 0.0], [0.1, -0.2], [0.3, 0.0], [-0.4, 0.5], [0.2, 0.1]]
        emb.position_embeddings.copy_(torch.tensor([pos]))
        emb.cls_token.copy_(torch.tensor([[[5.0, -7.0]]]))
    return model


def test_vit_embedding_bounds_by_hand():
    adapter = HFImageClassifierAdapter(
        _hand_vit(), image_mean=[0.5], image_std=[0.5], dtype="float64"
    )
    lower, upper = embedding_bounds(adapter)
    # pixels in [0, 1] -> normalised z in [-1, 1]; 2z + 0.5 in [-1.5, 2.5], -3z in [-3, 3];
    # plus the patch positions' min (-0.4, -0.2) / max (0.3, 0.5); then the CLS row (5, -7)
    assert lower.tolist() == pytest.approx([-1.9, -7.0])
    assert upper.tolist() == pytest.approx([5.0, 3.5])
    for image in ([[0.0, 1.0], [1.0, 0.0]], [[0.3, 0.9], [0.6, 0.1]]):
        x0 = adapter.prepare(torch.tensor([image])).embeddings
        assert bool((x0 >= lower - 1e-12).all() and (x0 <= upper + 1e-12).all())
    # the bound is reached: a black pixel at the position with the largest first coordinate
    x0 = adapter.prepare(torch.tensor([[[1.0, 1.0], [1.0, 1.0]]])).embeddings
    assert float(x0[1:, 0].max()) == pytest.approx(2.5 + 0.3)
    pixels = adapter.with_space("pixels")
    lo, hi = embedding_bounds(pixels)
    assert lo.tolist() == [-1.0] and hi.tolist() == [1.0]


def _walking_vit():
    """A ViT of width 4 on 2x2 gray images (1x1 patches), random weights large enough that
    SiMExp moves: width 2 does not do, since a LayerNorm over two coordinates is +-1 whatever
    its input, so ``_hand_vit``'s output is constant up to round-off (lambda_max ~ 1e-35) and
    a walk on it only follows rounding noise."""
    return _pixel_patch_vit(4, 8, initializer_range=0.5)


def _outside(points, lower, upper) -> float:
    """How far the farthest coordinate of ``points`` lies outside [lower, upper] (0: inside)."""
    return float(torch.maximum(lower - points, points - upper).clamp(min=0).max())


def test_explore_with_the_embedding_bounds_box_stays_inside():
    adapter = HFImageClassifierAdapter(
        _walking_vit(), image_mean=[0.5], image_std=[0.5], dtype="float64"
    )
    lower, upper = embedding_bounds(adapter)
    image = torch.tensor([[[0.2, 0.7], [0.9, 0.4]]])
    x0 = adapter.prepare(image).embeddings
    # the default box, computed here independently: the range of the input's own rows
    input_lower, input_upper = x0.amin(0), x0.amax(0)
    options = dict(
        algorithm="simexp",
        steps=6,
        projection="step",
        step_rule="paper-final",
        eta=10.0,
        max_step=None,
    )
    result = explore(adapter, image, box="embedding-bounds", **options)
    default = explore(adapter, image, **options)
    for run in (result, default):  # both walks really move (steps of eta = 10, clamped)
        assert float((run.trajectory[-1] - x0).abs().max()) > 0.5
    assert _outside(result.trajectory, lower, upper) <= 1e-12
    assert _outside(default.trajectory, input_lower, input_upper) <= 1e-12
    # the embedding-bounds box is the wider one and the walk uses it: it leaves the input's
    # range by far more than round-off (0.72 here)
    assert _outside(result.trajectory, input_lower, input_upper) > 0.1
    config = ExploreConfig(box="embedding-bounds")
    with pytest.raises(InputError, match="either"):
        explore(adapter, image, config, steps=1, box=(lower, upper))


def test_text_embedding_bounds_are_the_layernorm_reach(tmp_path):
    model = tiny_bert()
    adapter = HFSequenceClassifierAdapter(model, make_tokenizer(tmp_path), dtype="float64")
    norm = model.bert.embeddings.LayerNorm
    gamma, beta = norm.weight.detach().double(), norm.bias.detach().double()
    lower, upper = embedding_bounds(adapter)
    reach = gamma.abs() * math.sqrt(15)  # width 16
    assert torch.allclose(lower, beta - reach) and torch.allclose(upper, beta + reach)
    x0 = adapter.prepare("the cat sat on the mat.").embeddings
    assert bool((x0 >= lower).all() and (x0 <= upper).all())
    # one dominant coordinate: LayerNorm output reaches the bound at that coordinate
    z = torch.zeros(16, dtype=torch.float64)
    z[3] = 1e6
    y = torch.nn.functional.layer_norm(z, (16,), gamma, beta, eps=norm.eps)
    target = upper[3] if gamma[3] > 0 else lower[3]
    assert float(y[3]) == pytest.approx(float(target), rel=1e-6)


def test_affine_bounds_by_hand():
    w = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    lo, hi = affine_bounds(w, torch.tensor([0.0, -1.0]), torch.tensor([1.0, 2.0]))
    # row 0: x in [0,1], -2y with y in [-1,2] -> [-4, 2]: [-4, 3]; row 1: 3y in [-3, 6]
    assert lo.tolist() == [-4.0, -3.0] and hi.tolist() == [3.0, 6.0]


def test_embedding_bounds_refuse_a_plain_torch_model():
    adapter, _ = _linear_adapter()
    with pytest.raises(ModelError, match="box"):
        embedding_bounds(adapter)
