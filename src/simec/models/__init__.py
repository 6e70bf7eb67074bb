"""Model adapters: embed a raw input into the explored space and run the model from there."""

from .architectures import (
    Architecture,
    embeddings_module,
    register_architecture,
    register_embeddings_path,
)
from .base import ModelAdapter, PreparedInput
from .capabilities import as_image_model, as_masked_lm, as_text_model
from .hf_base import HFAdapter
from .hf_text import HFMaskedLMAdapter, HFSequenceClassifierAdapter
from .hf_vision import HFImageClassifierAdapter
from .images import coerce_image, load_image
from .loading import from_model, load_adapter
from .torch_adapter import TorchAdapter

__all__ = [
    "Architecture",
    "HFAdapter",
    "HFImageClassifierAdapter",
    "HFMaskedLMAdapter",
    "HFSequenceClassifierAdapter",
    "ModelAdapter",
    "PreparedInput",
    "TorchAdapter",
    "as_image_model",
    "as_masked_lm",
    "as_text_model",
    "coerce_image",
    "embeddings_module",
    "from_model",
    "load_adapter",
    "load_image",
    "register_architecture",
    "register_embeddings_path",
]
