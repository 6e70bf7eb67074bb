"""Plausibility metrics against the reference.

T1-T5 are the issue's reference values, computed with ERASER's own ``rationale_benchmark/
metrics.py`` run as HateXplain's notebook runs it (marks per annotator, union gold, top 5).
The "own" cases were computed by hand and checked the same way (values in the comments).
"""

import math

import numpy as np
import pytest

from simec import InputError
from simec.evaluate import (
    PROTOCOLS,
    cosine,
    gold_spans,
    partial_match,
    pr_auc,
    token_prf,
    top_k,
    union_marks,
)

HX = PROTOCOLS.get("hatexplain")
FERRET = PROTOCOLS.get("ferret")


def hatexplain(*posts):
    """Aggregate over posts given as (marks per annotator, scores)."""
    rows = [HX.score_post(np.array(s, float), np.array(m)) for m, s in posts]
    return {k: v["value"] for k, v in HX.aggregate(rows).items()}


def test_t1_three_annotators_mark_the_first_three_tokens():
    got = hatexplain(([[1, 1, 1, 0, 0, 0]] * 3, [0.9, 0.8, 0.1, 0.7, 0.05, 0.0]))
    assert got["token_f1"] == pytest.approx(0.75)
    assert got["iou_f1"] == 0.0  # each 1-token span has IOU 1/3 with the 3-token gold span
    assert got["auprc"] == pytest.approx(0.9028, abs=5e-5)


def test_t2_auprc_includes_the_zero_precision_point():
    assert hatexplain(([[0, 1, 0]], [0.3, 0.2, 0.1]))["auprc"] == pytest.approx(0.25)


def test_t3_ties_are_grouped_so_position_does_not_matter():
    for marks in ([[1, 0, 0, 1]], [[0, 0, 1, 1]]):
        assert hatexplain((marks, [0, 0, 0, 1]))["auprc"] == pytest.approx(0.875)


def test_t4_gold_is_the_union_of_the_annotators():
    got = hatexplain(([[1, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0, 1, 1, 0, 0]], [0.1, 0.9, 0.8, 0.2, 0]))
    assert got["token_f1"] == pytest.approx(0.75)
    assert got["iou_f1"] == 0.0
    assert got["auprc"] == pytest.approx(0.9028, abs=5e-5)


def test_t5_top_five_and_partial_match_recall():
    marks = [[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]]
    got = hatexplain((marks, [0.1, 0.2, 0.9, 0.3, 0.4, 0.5, 0.6, 0.0, 0.05, 0.15]))
    assert got["token_f1"] == pytest.approx(1 / 3)
    assert got["iou_f1"] == pytest.approx(1 / 3)  # P = 1/5, R = 1/1
    assert got["auprc"] == 1.0


def test_own_case_iou_f1_is_the_f1_of_the_averages_and_recall_may_exceed_one():
    # A: gold span [0, 2); top 5 = tokens 0-4; tokens 0 and 1 each have IOU 1/2 -> 2 hits,
    #    P = 2/5, R = 2/1 = 2 (ERASER counts every predicted hit).
    # C: gold spans [0, 1) and [8, 9); top 5 = tokens 0-4 -> 1 hit, P = 1/5, R = 1/2.
    # macro: P = 0.3, R = 1.25, F1 = 2 * .3 * 1.25 / 1.55 = 0.48387 (mean of the F1s: 0.476)
    a = ([[1, 1, 0, 0, 0, 0]], [0.9, 0.8, 0.7, 0.6, 0.5, 0.0])
    c = ([[1, 0, 0, 0, 0, 0, 0, 0, 1, 0]], [0.9, 0.8, 0.7, 0.6, 0.5, 0, 0, 0, 0.1, 0])
    got = hatexplain(a, c)
    assert got["iou_f1"] == pytest.approx(2 * 0.3 * 1.25 / 1.55)
    # token F1: A 2/5 vs 2/2 -> 4/7; C 1/5 vs 1/2 -> 2/7; instance macro = 3/7
    assert got["token_f1"] == pytest.approx(3 / 7)
    # AUPRC: A 1; C: (0,1)-(.5,1) then (.5,.2)-(1,1/3): .5 + .5 * (.2 + 1/3) / 2 = 0.63333
    assert got["auprc"] == pytest.approx((1 + 0.5 + 0.25 * (0.2 + 1 / 3)) / 2)


def test_hatexplain_top_k_prefers_later_positions_among_ties():
    # HateXplain: sorted(range(n), key=score)[-k:] -> among equal scores the later ones
    np.testing.assert_array_equal(top_k(np.array([1.0, 1.0, 1.0, 0.0]), 2), [0, 1, 1, 0])
    np.testing.assert_array_equal(
        top_k(np.array([0.5, -1.0, 0.2]), 7, positive_only=True), [1, 0, 1]
    )
    with pytest.raises(InputError):
        top_k(np.array([1.0, np.nan]), 1)


def test_gold_spans_are_the_contiguous_runs():
    assert gold_spans(np.array([1, 1, 0, 1, 0, 0, 1], bool)) == [(0, 2), (3, 4), (6, 7)]
    assert gold_spans(np.zeros(3, bool)) == []
    assert partial_match([(0, 1), (1, 2), (5, 6)], [(0, 2)]) == (2, 3, 1)
    assert partial_match([(0, 1)], [(0, 3)]) == (0, 1, 1)  # IOU 1/3 < 0.5


def test_token_prf_conventions():
    assert token_prf(np.array([1, 1, 0], bool), np.array([1, 0, 0], bool)) == (0.5, 1.0, 2 / 3)
    assert token_prf(np.zeros(3, bool), np.array([1, 0, 0], bool)) == (0.0, 0.0, 0.0)


def test_union_marks():
    np.testing.assert_array_equal(union_marks(np.array([[1, 0, 0], [0, 0, 1]])), [1, 0, 1])
    with pytest.raises(InputError, match="0 or 1"):
        union_marks(np.array([[0.5, 1.0]]))


def test_pr_auc_matches_scikit_learn_on_random_cases_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(2, 30))
        gold = rng.random(n) < rng.uniform(0.05, 0.7)
        gold[rng.integers(n)] = True
        scores = rng.integers(0, 4, n) / 3 if rng.random() < 0.5 else rng.normal(size=n)
        precision, recall, _ = metrics.precision_recall_curve(gold.astype(int), scores)
        assert pr_auc(scores, gold) == pytest.approx(metrics.auc(recall, precision), abs=1e-12)


def test_pr_auc_undefined_without_gold():
    assert math.isnan(pr_auc(np.array([0.3, 0.1]), np.zeros(2, bool)))


def test_ferret_protocol_hand_worked():
    # gold = union {2, 3}; positive scores: tokens 1 (.2), 2 (.9), 4 (.4) -> hard {1, 2, 4}
    marks = np.zeros((2, 10), int)
    marks[0, 2] = marks[1, 3] = 1
    scores = np.array([-0.5, 0.2, 0.9, -0.1, 0.4, 0, 0, 0, 0, 0])
    row = FERRET.score_post(scores, marks)
    assert row["token_f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))  # P 1/3, R 1/2
    assert row["token_iou"] == pytest.approx(1 / 4)  # {2} / {1, 2, 3, 4}
    # clipped scores: .9 (gold), .4, .2, then seven 0s (token 3 among them)
    assert row["auprc"] == pytest.approx(0.5 + 0.5 * (1 / 3 + 0.2) / 2)
    assert 0 < row["cosine"] < 1
    # nothing scores > 0: token F1 and IOU are 0
    none = FERRET.score_post(-np.ones(10), marks)
    assert none["token_f1"] == 0.0 and none["token_iou"] == 0.0


def test_protocols_declare_range_direction_and_the_papers_cosine():
    for proto in (PROTOCOLS.get(name) for name in PROTOCOLS.names()):
        assert "cosine" in proto.metrics
        for metric in proto.metrics.values():
            assert (metric.lower, metric.upper, metric.higher_is_better) == (0.0, 1.0, True)
    assert set(HX.metrics) == {"cosine", "iou_f1", "token_f1", "auprc"}
    assert set(FERRET.metrics) == {"cosine", "token_f1", "token_iou", "auprc"}


def test_aggregate_reports_value_std_and_n():
    rows = [
        HX.score_post(np.array(s, float), np.array(m))
        for m, s in [
            ([[1, 1, 1, 0, 0, 0]], [0.9, 0.8, 0.1, 0.7, 0.05, 0.0]),
            (
                [[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]],
                [0.1, 0.2, 0.9, 0.3, 0.4, 0.5, 0.6, 0.0, 0.05, 0.15],
            ),
        ]
    ]
    agg = HX.aggregate(rows)
    assert agg["token_f1"]["n"] == 2
    assert agg["token_f1"]["value"] == pytest.approx((0.75 + 1 / 3) / 2)
    assert agg["token_f1"]["std"] == pytest.approx(np.std([0.75, 1 / 3], ddof=1))


def test_cosine_as_in_the_paper_hand_worked_and_edge_cases():
    scores = np.array([2.0, 4.0, 6.0])  # min-max -> [0, .5, 1]
    rationale = np.array([0.0, 1.0, 1.0])
    assert cosine(scores, rationale) == pytest.approx(1.5 / (math.sqrt(1.25) * math.sqrt(2)))
    assert cosine(np.array([3.0, 3.0]), np.array([0.0, 0.0])) == 1.0  # nothing vs nothing
    assert cosine(np.array([3.0, 3.0]), np.array([1.0, 1.0])) == 0.0  # constant scores
    assert cosine(np.array([0.0, 5.0]), np.array([1.0, 1.0])) == pytest.approx(1 / math.sqrt(2))
    with pytest.raises(InputError):
        cosine(np.ones(2), np.ones(3))
    with pytest.raises(InputError):
        cosine(np.ones(2), np.array([0.0, 2.0]))
