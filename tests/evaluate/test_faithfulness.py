import numpy as np
import pytest

from simec import InputError
from simec.evaluate.faithfulness import FAITHFULNESS, aopc_comprehensiveness, aopc_sufficiency


def reader_of(word: int, n: int = 10):
    """A classifier that only reads one word: p(1) = 0.9 when it is present, else 0.2."""

    def predict(keep: np.ndarray) -> np.ndarray:
        assert keep.shape == (n,)
        p = 0.9 if keep[word] else 0.2
        return np.array([1 - p, p])

    return predict


def test_a_faithful_explanation_beats_a_wrong_one():
    predict = reader_of(3)
    right = np.zeros(10)
    right[3] = 1.0
    wrong = np.zeros(10)
    wrong[7] = 1.0
    # removing the right word always drops p(1) by 0.7; keeping it alone keeps p(1)
    assert aopc_comprehensiveness(predict, right, 1) == pytest.approx(0.7)
    assert aopc_sufficiency(predict, right, 1) == pytest.approx(0.0)
    # fractions (.01,.05,.1,.2,.5) of 10 words remove 1,1,1,2,5 words: word 3 is among them
    # only when ties put it there (stable order: 0,1,2,3,...) -> at 0.5 only
    assert aopc_comprehensiveness(predict, wrong, 1) == pytest.approx(0.7 / 5)
    assert aopc_sufficiency(predict, wrong, 1) == pytest.approx(0.7 * 4 / 5)


def test_declared_directions_and_bad_input():
    assert FAITHFULNESS["comprehensiveness"].higher_is_better
    assert not FAITHFULNESS["sufficiency"].higher_is_better
    with pytest.raises(InputError):
        aopc_comprehensiveness(reader_of(0), np.array([]), 1)
    with pytest.raises(InputError):
        aopc_sufficiency(reader_of(0), np.ones(10), 1, fractions=(0.0,))


def test_hard_rationale_comprehensiveness_and_sufficiency():
    from simec.evaluate.faithfulness import hard_comprehensiveness, hard_sufficiency

    predict = reader_of(3)
    right = np.zeros(10, bool)
    right[[3, 5]] = True
    wrong = np.zeros(10, bool)
    wrong[[0, 1]] = True
    assert hard_comprehensiveness(predict, right, 1) == pytest.approx(0.7)
    assert hard_sufficiency(predict, right, 1) == pytest.approx(0.0)
    assert hard_comprehensiveness(predict, wrong, 1) == pytest.approx(0.0)
    assert hard_sufficiency(predict, wrong, 1) == pytest.approx(0.7)
    # "alone" runs the rationale on its own (e.g. wrapped in [CLS] ... [SEP])
    alone = reader_of(3)
    assert hard_sufficiency(predict, wrong, 1, alone=lambda k: alone(~k)) == pytest.approx(0.0)
