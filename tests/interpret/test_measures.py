"""The final version's measures (reference 003, M2-M9) against hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simec.errors import InputError
from simec.interpret import measures as m

P = np.array([[0.5, 0.3, 0.2], [0.3, 0.5, 0.2], [0.2, 0.3, 0.5], [0.2, 0.3, 0.5]])


def test_rankings_predictions_and_top1_changes():
    assert m.class_rankings(P).tolist() == [[0, 1, 2], [1, 0, 2], [2, 1, 0], [2, 1, 0]]
    assert m.predictions(P).tolist() == [0, 1, 2, 2]
    assert m.top1_changes(P) == 2
    assert m.top1_changes(torch.tensor(P[[0, 0, 0]])) == 0


def test_ranking_inversions_count_discordant_pairs():
    # (0,1,2) -> (1,0,2): only the pair {0,1} swaps
    assert m.ranking_inversions(P[0], P[1]) == 1
    # (1,0,2) -> (2,1,0): pairs {0,2} and {1,2} swap, {0,1} keeps 1 before 0
    assert m.ranking_inversions(P[1], P[2]) == 2
    # complete reversal of three classes: all 3 pairs
    assert m.ranking_inversions(P[0], P[2]) == 3
    assert m.ranking_inversions(P[2], P[3]) == 0
    assert m.ranking_changes(P) == 1 + 2 + 0


def test_ranking_inversions_above_a_probability_leave_out_near_zero_swaps():
    # classes 2 and 3 stay near zero and swap; classes 0 and 1 swap at visible probabilities
    before = [0.60, 0.38, 0.012, 0.008]
    after = [0.30, 0.68, 0.007, 0.013]
    assert m.ranking_inversions(before, after) == 2
    # {0,1} counts; {2,3} reaches 0.013 >= 0.01, so it counts at 1% and not at 2%
    assert m.ranking_inversions(before, after, min_probability=0.01) == 2
    assert m.ranking_inversions(before, after, min_probability=0.02) == 1
    assert m.ranking_inversions(before, after, min_probability=0.9) == 0
    assert m.ranking_changes([before, after, before], min_probability=0.02) == 2
    with pytest.raises(InputError):
        m.ranking_changes([before, after], method="positions", min_probability=0.02)


def test_one_sample_t_test_by_hand():
    # 1, 2, 3, 4: mean 2.5, sd sqrt(5/3), t = 2.5 / (sd / 2) = sqrt(15) = 3.873, df 3
    r = m.one_sample_t_test([1.0, 2.0, 3.0, 4.0])
    assert r["t"] == pytest.approx(math.sqrt(15), abs=1e-12)
    assert r["df"] == 3 and r["n"] == 4
    # two-sided p from Student's t with 3 df: 2 * (1 - F(sqrt(15))) = 0.0304663 (tables)
    assert r["p"] == pytest.approx(0.0304663, abs=1e-6)
    # the textbook critical values: t = 2.776 at 4 df and 12.706 at 1 df give p = 0.05
    x = [-1.0, -0.5, 0.0, 0.5, 1.0]  # mean 0, standard error sqrt(0.625 / 5)
    r4 = m.one_sample_t_test(x, mu=-2.776 * math.sqrt(0.625 / 5))
    assert r4["t"] == pytest.approx(2.776) and r4["p"] == pytest.approx(0.05, abs=1e-4)
    r2 = m.one_sample_t_test([0.0, 2.0], mu=1.0 - 12.706)  # standard error 1
    assert r2["p"] == pytest.approx(0.05, abs=1e-4)
    # mu moves the test: the mean of these values is 0.5
    assert m.one_sample_t_test([0.4, 0.6, 0.5, 0.5], mu=0.5)["t"] == pytest.approx(0.0)
    assert math.isnan(m.one_sample_t_test([3.0])["t"])
    flat = m.one_sample_t_test([2.0, 2.0, 2.0])
    assert flat["t"] == math.inf and flat["p"] == 0.0


def test_one_sample_t_test_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for n, shift in ((5, 0.1), (12, -0.7), (30, 0.3), (200, 0.05)):
        x = rng.normal(shift, 1.3, n)
        ours, ref = m.one_sample_t_test(x, mu=0.2), stats.ttest_1samp(x, 0.2)
        assert ours["t"] == pytest.approx(ref.statistic, rel=1e-12)
        assert ours["p"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


def test_ranking_position_changes_follow_the_papers_code():
    # ascending argsorts: P0 -> [2, 1, 0], P1 -> [2, 0, 1]: 2 positions differ
    assert m.ranking_position_changes(P[0], P[1]) == 2
    # P1 -> [2, 0, 1], P2 -> [0, 1, 2]: all 3 positions differ
    assert m.ranking_position_changes(P[1], P[2]) == 3
    # full reversal [2,1,0] -> [0,1,2]: the middle stays, 2 positions differ (inversions: 3)
    assert m.ranking_position_changes(P[0], P[2]) == 2
    assert m.ranking_changes(P, method="positions") == 2 + 3 + 0
    with pytest.raises(InputError):
        m.ranking_changes(P, method="kendall")


def test_per_1000():
    assert m.per_1000(3, 500) == 6.0
    assert m.per_1000(7, 1000) == 7.0
    with pytest.raises(InputError):
        m.per_1000(1, 0)


def test_spearman_by_hand():
    # ranks of b: 1, 2, 4, 3 -> 1 - 6 * (0 + 0 + 1 + 1) / (4 * 15) = 0.8
    assert m.spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8, abs=1e-12)
    # ties get average ranks 1, 2.5, 2.5, 4: r = 4.5 / sqrt(4.5 * 5)
    assert m.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert m.spearman([3, 2, 1], [1, 2, 3]) == pytest.approx(-1.0)
    assert math.isnan(m.spearman([1, 1, 1], [1, 2, 3]))


def test_spearman_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 9).astype(float), rng.normal(size=9)
    assert m.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_spearman_consecutive():
    # P0 -> P1: probabilities (.5,.3,.2) vs (.3,.5,.2): ranks (3,2,1) vs (2,3,1): r = 0.5
    got = m.spearman_consecutive(P)
    assert got.shape == (3,)
    assert got[0] == pytest.approx(0.5)
    assert got[2] == pytest.approx(1.0)


def test_l1_and_w1_on_three_classes():
    p, r = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    assert float(m.l1_distance(p, r)) == pytest.approx(2.0)
    assert float(m.wasserstein1(p, r)) == pytest.approx(1.0)  # one unit of mass moves by 1
    far = np.array([0.0, 0.0, 1.0])
    assert float(m.l1_distance(p, far)) == pytest.approx(2.0)
    assert float(m.wasserstein1(p, far)) == pytest.approx(2.0)  # moves by 2
    a, b = np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5])
    # CDFs (.5, 1, 1) and (0, .5, 1): |.5| + |.5| = 1; L1: .5 + 0 + .5 = 1
    assert float(m.wasserstein1(a, b)) == pytest.approx(1.0)
    assert float(m.l1_distance(a, b)) == pytest.approx(1.0)
    rows = m.wasserstein1(np.stack([p, a]), np.stack([far, b]))
    assert rows.tolist() == pytest.approx([2.0, 1.0])
    assert float(m.wasserstein1(a, a)) == 0.0


def test_w1_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    p, r = np.array([0.2, 0.7, 0.1]), np.array([0.6, 0.1, 0.3])
    expected = stats.wasserstein_distance([0, 1, 2], [0, 1, 2], p, r)
    assert float(m.wasserstein1(p, r)) == pytest.approx(expected)


def test_code_l1_over_runs_averages_runs_first():
    # two runs whose interpretations disagree in opposite directions: per-run L1 is 0.4,
    # but the run averages coincide, so the code's distance is 0
    e = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])
    i = np.array([[[0.7, 0.3]], [[0.3, 0.7]]])
    assert float(m.l1_distance(e[0], i[0])[0]) == pytest.approx(0.4)
    e2 = np.concatenate([e, e], axis=1)  # two iterations
    i2 = np.concatenate([i, [[[0.6, 0.4]], [[0.6, 0.4]]]], axis=1)
    got = m.code_l1_over_runs(e2, i2)
    assert got["mean"] == pytest.approx(0.1)  # iterations: 0 and 0.2
    assert got["median"] == pytest.approx(0.1)
    assert got["sd"] == pytest.approx(math.sqrt(0.02))


def test_pixel_and_token_diversity():
    x0 = np.full((2, 2), 0.2)
    x1 = x0.copy()
    x1[0, 0] += 0.4
    images = np.stack([x0, x1, x1])
    assert m.pixel_diversity(images).tolist() == pytest.approx([0.1, 0.0])
    assert m.pixel_diversity(images, reference="original").tolist() == pytest.approx([0.1, 0.1])
    ids = np.array([[1, 5, 6, 2], [1, 7, 6, 2], [1, 7, 8, 2]])
    assert m.token_diversity(ids, [1, 2]).tolist() == [1.0, 1.0]
    assert m.token_diversity(ids, [1, 2], reference="original").tolist() == [1.0, 2.0]
    assert m.token_diversity(ids, [2]).tolist() == [0.0, 1.0]


def test_first_change_and_change_iterations():
    steps = [0, 10, 20, 30]
    assert m.change_iterations([3, 3, 5, 3], steps) == [20, 30]
    assert m.first_change([3, 3, 5, 3], steps) == 20
    assert m.first_change([1, 1, 1, 1], steps) is None
    with pytest.raises(InputError):
        m.first_change([1, 2], steps)


def test_catch_up_on_a_made_up_sequence():
    steps = [0, 10, 20, 30, 40, 50]
    emb = [0, 0, 1, 1, 2, 2]  # 0 -> 1 at 20, 1 -> 2 at 40
    interp = [0, 0, 0, 1, 1, 1]  # 0 -> 1 at 30, never 1 -> 2
    events = m.catch_up(emb, interp, steps)
    assert events == [m.CatchUp(20, 0, 1, 10), m.CatchUp(40, 1, 2, None)]
    summary = m.catch_up_summary(events)
    assert summary["fraction"] == 0.5 and summary["mean_delay"] == 10.0
    # the same change at the same snapshot: delay 0; a change to another class does not count
    assert m.catch_up([0, 1], [0, 1], [0, 10]) == [m.CatchUp(10, 0, 1, 0)]
    assert m.catch_up([0, 1, 1], [0, 2, 1], [0, 10, 20]) == [m.CatchUp(10, 0, 1, None)]
    assert math.isnan(m.catch_up_summary([])["fraction"])


def test_top_class_correlation():
    e = np.array([[0.5, 0.5], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7]])  # top: .5 .6 .8 .7
    i = np.array([[0.4, 0.6], [0.5, 0.5], [0.7, 0.3], [0.6, 0.4]])  # top: .6 .5 .7 .6
    a, b = np.array([0.5, 0.6, 0.8, 0.7]), np.array([0.6, 0.5, 0.7, 0.6])
    expected = float(np.corrcoef(a, b)[0, 1])
    got = m.top_class_correlation(e, i)
    assert got["r"] == pytest.approx(expected)
    stats = pytest.importorskip("scipy.stats")
    assert got["p"] == pytest.approx(stats.pearsonr(a, b).pvalue)


def test_cuboid_of_known_points():
    z = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [2.0, 3.0], [1.0, 1.0]])
    assert m.cuboid_volume(z) == pytest.approx(6.0)
    assert m.cuboid_sides(z).tolist() == pytest.approx([math.sqrt(2), math.sqrt(3)])
    assert float(np.prod(m.cuboid_sides(z))) ** 2 == pytest.approx(6.0)
    # twice as large in both directions: 4x the volume
    assert m.volume_ratio(2 * z + 5, z) == pytest.approx(4.0)
    assert m.volume_ratio(z, z[:1]) == math.inf
    assert math.isnan(m.volume_ratio(z[:1], z[:1]))


def test_pca_keeps_components_to_90_percent_variance():
    # rectangle corners 3 x 2 in the plane z = 0 (3-d points): variances 9/4 : 1 : 0, so the
    # first component holds 69% and two hold 100%
    ref = np.array([[0, 0, 0], [3, 0, 0], [0, 2, 0], [3, 2, 0]], dtype=float)
    z, n = m.pca_coordinates(ref, ref)
    assert n == 2
    assert m.cuboid_volume(z) == pytest.approx(6.0)  # a rotation keeps the rectangle
    wide = np.array([[0, 0, 0], [10, 0, 0], [0, 1, 0], [10, 1, 0]], dtype=float)
    assert m.pca_coordinates(wide, wide)[1] == 1  # 100 : 1 -> 99% on the first
    # per patch: the explored walk is the reference scaled by 2, both measured on one PCA
    explore = np.stack([2 * ref, 2 * ref + 1], axis=1)  # (t, patches, width)
    reference = np.stack([ref, ref + 1], axis=1)
    ratios = m.patch_volume_ratios(explore, reference)
    assert ratios.tolist() == pytest.approx([4.0, 4.0])


def test_original_vs_top():
    orig, top = m.original_vs_top(P, 0)
    assert orig.tolist() == [0.5, 0.3, 0.2, 0.2] and top.tolist() == [0.5, 0.5, 0.5, 0.5]
    with pytest.raises(InputError):
        m.original_vs_top(P, 3)


def test_welch_t_test_by_hand():
    # a: mean 2.5, s^2 5/3, n 4; b: mean 4, s^2 4, n 3: se^2 = 5/12 + 4/3 = 7/4
    r = m.welch_t_test([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0])
    assert r["t"] == pytest.approx(-1.5 / math.sqrt(1.75), rel=1e-12)
    # Welch-Satterthwaite: (7/4)^2 / ((5/12)^2 / 3 + (4/3)^2 / 2) = 3.2347188...
    assert r["df"] == pytest.approx(3.0625 / (25 / 432 + 8 / 9), rel=1e-12)
    assert r["p"] == pytest.approx(0.33382370007750106, rel=1e-9)  # scipy 1.17, once
    assert (r["n_a"], r["n_b"]) == (4.0, 3.0)
    assert math.isnan(m.welch_t_test([1.0], [2.0, 3.0])["t"])
    flat = m.welch_t_test([2.0, 2.0], [1.0, 1.0, 1.0])
    assert flat["t"] == math.inf and flat["p"] == 0.0
    assert math.isnan(m.welch_t_test([2.0, 2.0], [2.0, 2.0])["p"])


def test_welch_t_test_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    for na, nb, shift, scale in ((5, 9, 0.4, 3.0), (12, 4, -1.0, 0.2), (40, 33, 0.1, 1.0)):
        a, b = rng.normal(shift, 1.0, na), rng.normal(0.0, scale, nb)
        ours, ref = m.welch_t_test(a, b), stats.ttest_ind(a, b, equal_var=False)
        assert ours["t"] == pytest.approx(ref.statistic, rel=1e-12)
        assert ours["df"] == pytest.approx(ref.df, rel=1e-12)
        assert ours["p"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


def test_per_input_means_make_n_the_number_of_inputs():
    values = [1.0, 3.0, 10.0, math.nan, 5.0, math.nan]
    means, keys = m.per_input_means(values, ["a", "a", "b", "b", "c", "d"])
    assert keys == ["a", "b", "c"]  # d has no finite value
    assert means.tolist() == [2.0, 10.0, 5.0]
    with pytest.raises(InputError, match="one input per value"):
        m.per_input_means([1.0, 2.0], ["a"])


def test_pixel_diversity_over_the_explored_pixels():
    x0 = np.full((1, 4, 4), 0.5)
    x1 = x0.copy()
    x1[0, :2, :2] += 0.4  # patch 0 (2x2 patches) changes by 0.4 at each of its 4 pixels
    x1[0, 3, 3] -= 0.2  # one pixel of patch 3
    images = np.stack([x0, x1])
    mask = m.patch_pixel_mask((4, 4), 2, [0])
    assert mask.sum() == 4 and mask[:2, :2].all()
    assert m.pixel_diversity(images, mask).tolist() == pytest.approx([0.4])
    both = m.patch_pixel_mask((1, 4, 4), 2, [0, 3])
    assert m.pixel_diversity(images, both).tolist() == pytest.approx([(1.6 + 0.2) / 8])
    whole = m.pixel_diversity_whole_image(images)
    assert whole.tolist() == pytest.approx([(1.6 + 0.2) / 16])
    with pytest.raises(InputError, match="boolean"):
        m.pixel_diversity(images, mask.astype(int))
    with pytest.raises(InputError, match="does not fit"):
        m.pixel_diversity(images, np.ones((3, 3), dtype=bool))
    with pytest.raises(InputError, match="no pixel"):
        m.pixel_diversity(images, np.zeros((4, 4), dtype=bool))
    with pytest.raises(InputError, match="outside"):
        m.patch_pixel_mask((4, 4), 2, [4])
    with pytest.raises(InputError, match="does not tile"):
        m.patch_pixel_mask((4, 4), 3, [0])
