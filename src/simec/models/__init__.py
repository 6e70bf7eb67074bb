"""Model adapters: embed a raw input into the explored space and run the model from there."""

from .architectures import embeddings_module, register_embeddings_path
from .base import ModelAdapter, PreparedInput
from .hf_text import HFSequenceClassifierAdapter
from .hf_vision import HFImageClassifierAdapter, load_image
from .loading import from_model, load_adapter
from .torch_adapter import TorchAdapter

__all__ = [
    "HFImageClassifierAdapter",
    "HFSequenceClassifierAdapter",
    "ModelAdapter",
    "PreparedInput",
    "TorchAdapter",
    "embeddings_module",
    "from_model",
    "load_adapter",
    "load_image",
    "register_embeddings_path",
]
