"""Data loaders: IDX (MNIST, Fashion-MNIST), scikit-learn digits, single images, text sets."""

from .idx import FASHION_CLASSES, ImageDataset, load_digits, load_idx_dataset, read_idx
from .text import HATE_LABELS, TextDataset, load_davidson, load_hatexplain_posts

__all__ = [
    "FASHION_CLASSES",
    "HATE_LABELS",
    "ImageDataset",
    "TextDataset",
    "load_davidson",
    "load_digits",
    "load_hatexplain_posts",
    "load_idx_dataset",
    "read_idx",
]
