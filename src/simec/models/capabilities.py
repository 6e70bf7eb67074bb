"""Typed views of an adapter by what it can do, for the layers above ``models/``.

Other layers never ask "which adapter class is this?" (``tests/test_capabilities.py`` forbids
``isinstance(..., HF*Adapter)`` outside ``models/``); they ask the adapter's capabilities
(``ModelAdapter.modality``, ``task``, ``tokenizer``, ``patch_size``, ...). Where the code that
follows needs the richer surface of one modality (an image model's pixels, patches and
normalisation; a text model's tokenizer and embeddings), these functions give the adapter back
typed for it, or None when it lacks the capability, so a caller writes::

    adapter = as_image_model(load_adapter(path))
    if adapter is None:
        raise InputError("... needs an image classifier")

The check is by capability, not by class: an adapter whose ``modality`` is "image" is an image
model and must offer the surface ``HFImageClassifierAdapter`` documents (likewise "text" and
``HFSequenceClassifierAdapter``, task "masked-lm" and ``HFMaskedLMAdapter``).
"""

from __future__ import annotations

from typing import cast

from .base import ModelAdapter
from .hf_text import HFMaskedLMAdapter, HFSequenceClassifierAdapter
from .hf_vision import HFImageClassifierAdapter

__all__ = ["as_image_model", "as_masked_lm", "as_text_model"]


def as_image_model(adapter: ModelAdapter) -> HFImageClassifierAdapter | None:
    """``adapter`` as an image model (``modality == "image"``), else None."""
    return cast(HFImageClassifierAdapter, adapter) if adapter.modality == "image" else None


def as_text_model(adapter: ModelAdapter) -> HFSequenceClassifierAdapter | None:
    """``adapter`` as a text model (``modality == "text"``: classifier or masked LM), else
    None."""
    return cast(HFSequenceClassifierAdapter, adapter) if adapter.modality == "text" else None


def as_masked_lm(adapter: ModelAdapter) -> HFMaskedLMAdapter | None:
    """``adapter`` as a masked language model (``task == "masked-lm"``), else None."""
    return cast(HFMaskedLMAdapter, adapter) if adapter.task == "masked-lm" else None
