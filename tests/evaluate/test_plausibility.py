import math

import numpy as np
import pytest

from simec import InputError
from simec.evaluate import METRICS, auprc, cosine, iou_f1, token_f1


def test_cosine_as_in_the_paper_hand_worked():
    scores = np.array([2.0, 4.0, 6.0])  # min-max -> [0, .5, 1]
    rationale = np.array([0.0, 1.0, 1.0])
    assert cosine(scores, rationale) == pytest.approx(1.5 / (math.sqrt(1.25) * math.sqrt(2)))


def test_cosine_edge_cases_all_zero_and_all_one():
    assert cosine(np.array([3.0, 3.0]), np.array([0.0, 0.0])) == 1.0  # nothing vs nothing
    assert cosine(np.array([3.0, 3.0]), np.array([1.0, 1.0])) == 0.0  # constant scores
    assert cosine(np.array([1.0, 2.0]), np.array([0.0, 0.0])) == 0.0
    assert cosine(np.array([0.0, 5.0]), np.array([1.0, 1.0])) == pytest.approx(1 / math.sqrt(2))


def test_token_f1_and_iou_f1_hand_worked():
    scores = np.array([0.9, 0.1, 0.8, 0.3, 0.2])
    rationale = np.array([1.0, 2 / 3, 0.0, 1 / 3, 0.0])  # majority marks: words 0 and 1
    # top-2 by score: words 0 and 2 -> tp 1, precision 1/2, recall 1/2
    assert token_f1(scores, rationale) == pytest.approx(0.5)
    # IOU = |{0}| / |{0, 1, 2}| = 1/3 < 0.5
    assert iou_f1(scores, rationale) == 0.0
    assert iou_f1(np.array([0.9, 0.8, 0.1, 0.0, 0.0]), rationale) == 1.0


def test_auprc_hand_worked():
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    rationale = np.array([1.0, 0.0, 1.0, 0.0])
    # ranks: hit at 1 (precision 1), miss, hit at 3 (precision 2/3) -> (1 + 2/3) / 2
    assert auprc(scores, rationale) == pytest.approx((1 + 2 / 3) / 2)


def test_all_zero_and_all_one_rationales():
    scores = np.array([0.5, 0.2, 0.9])
    zero = np.zeros(3)
    for fn in (token_f1, iou_f1, auprc):
        assert math.isnan(fn(scores, zero))  # no marked word: undefined, excluded from means
    one = np.ones(3)
    assert token_f1(scores, one) == 1.0 and iou_f1(scores, one) == 1.0 and auprc(scores, one) == 1.0


def test_metrics_declare_range_and_direction_and_validate():
    for metric in METRICS.values():
        assert metric.lower == 0.0 and metric.upper == 1.0 and metric.higher_is_better
    with pytest.raises(InputError):
        METRICS["cosine"](np.ones(2), np.ones(3))
    with pytest.raises(InputError):
        METRICS["auprc"](np.ones(2), np.array([0.0, 2.0]))
