import math
import statistics

import numpy as np

from simec.stats import MeanStd, mean_std


def test_mean_and_sample_std_of_the_finite_values_only():
    values = [1.0, 2.0, math.nan, 4.0, math.inf, -math.inf, "x", None, True, np.float32(7.0)]
    got = mean_std(values)
    # by hand: 1, 2, 4, 7 -> mean 3.5, sample variance ((2.5² + 1.5² + 0.5² + 3.5²) / 3) = 7
    assert got.n == 4
    assert got.mean == 3.5
    assert math.isclose(got.std, math.sqrt(7.0), rel_tol=1e-15)
    assert math.isclose(got.std, statistics.stdev([1, 2, 4, 7]), rel_tol=1e-15)
    assert got.text() == "3.5 ± 2.65"
    assert got.text(".3f", ".3f") == "3.500 ± 2.646"
    assert got.as_dict() == {"mean": 3.5, "std": got.std, "n": 4}


def test_integers_from_numpy_count():
    assert mean_std(np.array([3, 5], dtype=np.int64).tolist()).mean == 4.0
    assert mean_std([np.int64(3), np.int64(5)]) == MeanStd(4.0, math.sqrt(2.0), 2)


def test_one_value_has_std_zero():
    assert mean_std([2.5, math.nan]) == MeanStd(2.5, 0.0, 1)
    assert mean_std([2.5]).text() == "2.5 ± 0"


def test_no_finite_values():
    for values in ([], [math.nan, math.inf], iter(())):
        got = mean_std(values)
        assert got.n == 0 and math.isnan(got.mean) and math.isnan(got.std)
        assert got.text() == "n/a"
        assert got.text(empty="-") == "-"
