"""Per-architecture knowledge in one place: where a Hugging Face model's embeddings module is.

The explored space is the output of that module (patches + special tokens + position embeddings
for vision models; token + position + type embeddings after LayerNorm for BERT-family models).
The default is ``model.base_model.embeddings``, which covers ViT, DeiT, BEiT, BERT, RoBERTa,
ELECTRA, ... ; register a dotted path for families that keep it elsewhere.
"""

from __future__ import annotations

from torch import nn

from ..errors import ModelError

__all__ = ["embeddings_module", "register_embeddings_path"]

_EMBEDDINGS_PATHS: dict[str, str] = {
    "distilbert": "distilbert.embeddings",
}


def register_embeddings_path(model_type: str, path: str) -> None:
    """Tell simec where models of ``config.model_type`` keep their embeddings module."""
    _EMBEDDINGS_PATHS[model_type] = path


def embeddings_module(model: nn.Module) -> nn.Module:
    """The module whose output is the explored space (see module docstring)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    path = _EMBEDDINGS_PATHS.get(model_type or "")
    if path is not None:
        module: object = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.Module):
            return module
        raise ModelError(f"registered embeddings path {path!r} not found on {type(model).__name__}")
    base = getattr(model, "base_model", model)
    module = getattr(base, "embeddings", None)
    if isinstance(module, nn.Module):
        return module
    raise ModelError(
        f"{type(model).__name__} (model_type={model_type!r}) has no embeddings module that simec "
        "knows how to replace. Register one with "
        "simec.models.register_embeddings_path(model_type, 'dotted.path.to.embeddings'), "
        "or wrap the model in simec.TorchAdapter."
    )
