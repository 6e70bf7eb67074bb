import pytest
import torch

from simec import InputError
from simec.explainers import attention_rollout


def test_two_layer_rollout_matches_hand_computation():
    # layer 1: two heads over 2 tokens; layer 2: one matrix
    l1 = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]], dtype=torch.float64)
    l2 = torch.tensor([[0.2, 0.8], [1.0, 0.0]], dtype=torch.float64)
    # by hand: mean of l1 heads = [[.5,.5],[.5,.5]]; + I, / 2 -> [[.75,.25],[.25,.75]]
    # l2: + I, / 2 -> [[.6,.4],[.5,.5]]; rollout = A2 @ A1
    a1 = torch.tensor([[0.75, 0.25], [0.25, 0.75]], dtype=torch.float64)
    a2 = torch.tensor([[0.6, 0.4], [0.5, 0.5]], dtype=torch.float64)
    expected = torch.tensor([[0.55, 0.45], [0.5, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(a2 @ a1, expected)
    torch.testing.assert_close(attention_rollout([l1, l2]), expected)
    # rows stay distributions
    torch.testing.assert_close(
        attention_rollout([l1, l2]).sum(-1), torch.ones(2, dtype=torch.float64)
    )


def test_without_residual_and_with_max_fusion():
    l1 = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])
    out = attention_rollout([l1], residual=False, head_fusion="max")
    torch.testing.assert_close(out, torch.full((2, 2), 0.5))


def test_bad_inputs():
    with pytest.raises(InputError):
        attention_rollout([])
    with pytest.raises(InputError, match="head_fusion"):
        attention_rollout([torch.eye(2)], head_fusion="sum")
    with pytest.raises(InputError, match="layer 0"):
        attention_rollout([torch.ones(2, 3)])


def test_chefer_relevancy_matches_hand_computation():
    from simec.explainers import chefer_relevancy

    a1 = torch.tensor([[[0.5, 0.5], [0.0, 1.0]]], dtype=torch.float64)
    g1 = torch.tensor([[[2.0, -1.0], [1.0, 1.0]]], dtype=torch.float64)
    a2 = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]], dtype=torch.float64)
    g2 = torch.tensor([[[1.0, 3.0], [-2.0, 2.0]]], dtype=torch.float64)
    # layer 1: (g*a)^+ = [[1, 0], [0, 1]] -> R1 = I + I = 2I
    # layer 2: (g*a)^+ = [[1, 0], [0, 1]] -> R2 = R1 + Abar R1 = 2I + 2I = 4I
    expected = 4 * torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(chefer_relevancy([a1, a2], [g1, g2]), expected)
    g2b = torch.tensor([[[1.0, 3.0], [2.0, 2.0]]], dtype=torch.float64)
    # (g*a)^+ = [[1, 0], [1, 1]] -> R2 = 2I + [[2, 0], [2, 2]] = [[4, 0], [2, 4]]
    torch.testing.assert_close(
        chefer_relevancy([a1, a2], [g1, g2b]),
        torch.tensor([[4.0, 0.0], [2.0, 4.0]], dtype=torch.float64),
    )
