"""Tiny random Hugging Face models built offline, and an analytic model with a known Jacobian."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] the a cat dog sat on mat is good bad hate love you i "
    "we they ##s ##ed . , !"
).split()
TEXT = "the cat sat on the mat."


@pytest.fixture
def one_thread():
    """One torch thread (``pytestmark = pytest.mark.usefixtures("one_thread")``): tests that
    check results, since on a busy 2-core machine two threads spin-wait for each other (10x
    slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class LayerNormHead(nn.Module):
    """LayerNorm + linear head on a (4, 6) input (seed 0): ||x|| can grow without bound while
    the output stays put. ``mode="nan"``: NaN once |x| reaches ``limit``; ``"flat"``: constant
    output beyond it (a rank-zero metric). No Python branch on x, so it can be vmapped.

    The golden cases (``tests/golden``) run it: a change here must keep its outputs bit for bit.
    """

    def __init__(self, mode: str = "plain", limit: float = 3.0):
        super().__init__()
        torch.manual_seed(0)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(24, 3)
        self.mode, self.limit = mode, limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.norm(x).reshape(-1))
        room = self.limit - x.abs().amax()
        if self.mode == "nan":
            return out + 0 * torch.log(room)
        if self.mode == "flat":
            return out * torch.clamp(room, min=0)
        return out


def tiny_vit(
    *,
    num_labels: int = 3,
    attn: str = "sdpa",
    seed: int = 0,
    image_size: int = 8,
    patch_size: int = 2,
    layers: int = 2,
):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        num_channels=1,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=num_labels,
        initializer_range=0.3,
        attn_implementation=attn,
    )
    return ViTForImageClassification(config).eval()


def tiny_bert_config(**options):
    """The BERT shape of the text tests (2 layers, hidden 16, the VOCAB word pieces)."""
    from transformers import BertConfig

    shape = dict(num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    return BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, max_position_embeddings=24, **shape, **options
    )


def tiny_bert(*, num_labels: int = 3, attn: str = "sdpa", seed: int = 0):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    config = tiny_bert_config(
        num_labels=num_labels, initializer_range=0.3, attn_implementation=attn
    )
    return BertForSequenceClassification(config).eval()


def make_tokenizer(tmp_path):
    from transformers import BertTokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    return BertTokenizer(str(vocab))


@pytest.fixture
def vit():
    return tiny_vit()


@pytest.fixture
def bert():
    return tiny_bert()


@pytest.fixture
def tokenizer(tmp_path):
    return make_tokenizer(tmp_path)


@pytest.fixture
def image():
    """A non-trivial 8x8 image in [0, 1] (never all zeros)."""
    rng = np.random.default_rng(0)
    return rng.uniform(0.05, 0.95, size=(8, 8)).astype(np.float32)


@pytest.fixture
def mnist_vit_dir(tmp_path):
    """A tiny random ViT for 28x28 gray images, 10 classes, 4x4 patches of 7 pixels."""
    path = tmp_path / "mnist-vit"
    tiny_vit(num_labels=10, image_size=28, patch_size=7, layers=1).save_pretrained(path)
    return path


@pytest.fixture
def vit_dir(tmp_path):
    path = tmp_path / "vit"
    tiny_vit().save_pretrained(path)
    (path / "preprocessor_config.json").write_text(
        json.dumps({"do_normalize": True, "image_mean": [0.5], "image_std": [0.5]})
    )
    return path


@pytest.fixture
def bert_dir(tmp_path):
    path = tmp_path / "bert"
    tiny_bert().save_pretrained(path)
    make_tokenizer(tmp_path).save_pretrained(path)
    return path


class LinearLogits(nn.Module):
    """logits = W vec(x) + b: its Jacobian with respect to x is W, exactly."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, shape: tuple[int, int]):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight @ x.reshape(-1) + self.bias


@pytest.fixture
def linear_model():
    gen = torch.Generator().manual_seed(3)
    shape = (4, 5)
    weight = torch.randn(3, 20, generator=gen, dtype=torch.float64)
    bias = torch.randn(3, generator=gen, dtype=torch.float64)
    x0 = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return LinearLogits(weight, bias, shape), x0


def write_idx(path, array):
    """Write a uint8 IDX file (gzipped if the name ends in .gz)."""
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(data)


@pytest.fixture
def fake_mnist(tmp_path):
    """40 synthetic 28x28 'digits' (a bright bar whose position encodes the label)."""
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 10
    images = (rng.uniform(0, 40, size=(40, 28, 28))).astype(np.uint8)
    for i, y in enumerate(labels):
        images[i, 4:24, 2 + 2 * y : 4 + 2 * y] = 255
    root = tmp_path / "mnist"
    root.mkdir()
    write_idx(root / "t10k-images-idx3-ubyte.gz", images)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture
def idx_data(tmp_path):
    """12 random 8x8 'digits' in MNIST's IDX layout (the test split)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "digits"
    root.mkdir()
    write_idx(root / "t10k-images-idx3-ubyte.gz", rng.integers(10, 245, size=(12, 8, 8)))
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.arange(12) % 3)
    return root


def write_posts(path, posts):
    """A HateXplain-format JSONL file of (id, words, annotator labels) posts; returns path."""
    path.write_text(
        "\n".join(
            json.dumps({"id": i, "post_tokens": w, "annotators": {"label": lab}})
            for i, w, lab in posts
        )
        + "\n"
    )
    return path
