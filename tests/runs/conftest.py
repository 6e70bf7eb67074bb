import numpy as np
import pytest

from tests.conftest import write_idx


@pytest.fixture
def idx_data(tmp_path):
    """12 random 8x8 'digits' in MNIST's IDX layout (the test split)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "digits"
    root.mkdir()
    write_idx(root / "t10k-images-idx3-ubyte.gz", rng.integers(10, 245, size=(12, 8, 8)))
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.arange(12) % 3)
    return root


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test of a run on one torch thread (see ``tests.conftest.one_thread``)."""
