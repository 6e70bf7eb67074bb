"""Data loaders: IDX (MNIST, Fashion-MNIST), scikit-learn digits, single images."""

from .idx import FASHION_CLASSES, ImageDataset, load_digits, load_idx_dataset, read_idx

__all__ = ["FASHION_CLASSES", "ImageDataset", "load_digits", "load_idx_dataset", "read_idx"]
