import gzip

import numpy as np
import pytest

from simec import InputError
from simec.data import load_idx_dataset, read_idx


def _write_idx(path, array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def test_read_idx_round_trips_generated_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    _write_idx(tmp_path / "a-idx3-ubyte.gz", images)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), images)
    ints = rng.integers(-1000, 1000, size=(7,)).astype(np.int32)
    _write_idx(tmp_path / "b", ints, type_code=0x0C)
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), ints)


def test_mnist_layout_and_errors(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    labels = np.array([3, 7], dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    data = load_idx_dataset(tmp_path, split="test")
    assert len(data) == 2 and data.labels.tolist() == [3, 7]
    np.testing.assert_array_equal(data.images, images)
    with pytest.raises(InputError, match="train-images"):
        load_idx_dataset(tmp_path, split="train")
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist"):
        load_idx_dataset(tmp_path / "nope", kind="fashion-mnist")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(InputError, match="magic"):
        read_idx(tmp_path / "bad")
