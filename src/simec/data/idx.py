"""IDX files (MNIST, Fashion-MNIST), scikit-learn digits: image datasets as uint8 arrays."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["ImageDataset", "load_digits", "load_idx_dataset", "read_idx"]

_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

WHERE_FROM = {
    "mnist": "pass the folder of the MNIST IDX files (t10k-*-ubyte.gz), e.g. ../shared/data/mnist",
    "fashion-mnist": "install it with `apt-get install dataset-fashion-mnist`: the files land in "
    "/usr/share/datasets/fashion-mnist/",
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array of its stored shape."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"IDX file {str(path)!r} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise InputError(f"{str(path)!r} is not an IDX file (bad magic number)")
    dtype = _IDX_TYPES.get(data[2])
    if dtype is None:
        raise InputError(f"{str(path)!r}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(shape)) if shape else 0
    body = np.frombuffer(data, dtype=dtype, count=count, offset=header)
    if body.size != count:
        raise InputError(f"{str(path)!r} is truncated: expected {count} values")
    return body.reshape(shape).astype(np.dtype(dtype).newbyteorder("="))


@dataclass
class ImageDataset:
    """Images (N, H, W) uint8 and integer labels (N,), with class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray) -> ImageDataset:
        return ImageDataset(self.images[indices], self.labels[indices], self.classes, self.name)


FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def _find(root: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    return None


def load_idx_dataset(
    root: str | os.PathLike, *, split: str = "test", kind: str = "mnist"
) -> ImageDataset:
    """MNIST-layout IDX data in ``root``: ``split`` is "train" (train-*) or "test" (t10k-*)."""
    root = Path(root)
    if split not in ("train", "test"):
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    hint = WHERE_FROM.get(kind, "")
    if root.is_file():
        raise InputError(f"data {str(root)!r} is a file, not a folder; {hint}")
    if not root.is_dir():
        raise InputError(f"data directory {str(root)!r} does not exist; {hint}")
    images = _find(root, f"{prefix}-images-idx3-ubyte")
    labels = _find(root, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        raise InputError(
            f"no {prefix}-images-idx3-ubyte[.gz] / {prefix}-labels-idx1-ubyte[.gz] in "
            f"{str(root)!r}; {hint}"
        )
    x, y = read_idx(images), read_idx(labels).astype(np.int64)
    if x.ndim != 3 or len(x) != len(y):
        raise InputError(f"{str(root)!r}: images {x.shape} and labels {y.shape} do not match")
    classes = FASHION_CLASSES if kind == "fashion-mnist" else [str(i) for i in range(10)]
    return ImageDataset(x.astype(np.uint8), y, classes, f"{kind}-{split}")


def load_digits() -> ImageDataset:
    """scikit-learn's 1,797 8x8 digits, rescaled from 0..16 to uint8 0..255."""
    try:
        from sklearn.datasets import load_digits as sk_load
    except ImportError as exc:
        raise InputError(
            "scikit-learn is needed for the digits data: pip install scikit-learn"
        ) from exc
    bunch = sk_load()
    images = np.clip(bunch.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    return ImageDataset(
        images, bunch.target.astype(np.int64), [str(i) for i in range(10)], "digits"
    )
