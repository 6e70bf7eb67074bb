"""Per-architecture knowledge in one place: one ``Architecture`` entry per ``config.model_type``.

Embeddings.  The explored space is the output of the model's embeddings module (patches +
special tokens + position embeddings for vision models; token + position + type embeddings
after LayerNorm for BERT-family models). The default is ``model.base_model.embeddings``, which
covers ViT, DeiT, BEiT, Swin, ViT-MAE, ViT-MSN, CLIP's vision model, BERT, RoBERTa, ELECTRA, ...

Vision representations (``simec structure``).  The *backbone* is the module that maps pixels to
hidden states (default ``model.base_model``: ``model.vit`` in a ``ViTForImageClassification``,
the model itself when it has no head). From its output:

- ``cls``: the last encoder layer's output at token 0, the classification token (ViT, DeiT,
  BEiT, ViT-MAE, ViT-MSN, CLIP; before the final LayerNorm, i.e. ``hidden_states[-1][:, 0]``).
  Architectures without one (``cls_token=False``: Swin) use the backbone's ``pooler_output``
  instead, the vector their classifier reads (Swin: final LayerNorm, then the mean over tokens).
- ``pooled``: the mean over all tokens of the last encoder layer's output (special tokens
  included), for every architecture.

Checkpoints without an image-classification head (ViT-MAE, CLIP) are loaded as their vision
backbone: ``AutoModel`` or the entry's ``headless_class`` (CLIP checkpoints hold a text tower
too, so they load as ``CLIPVisionModel``), with ``config_overrides`` applied (ViT-MAE drops a
random 75% of the patches unless ``mask_ratio=0``); in-memory models must already satisfy the
overrides. ``extra_inputs`` gives forward arguments simec fixes (ViT-MAE's shuffling ``noise``
is the identity order, so the forward pass is deterministic).

Register families that keep things elsewhere with ``register_architecture`` (or, for the
embeddings path only, ``register_embeddings_path``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ModelError
from ..registry import Registry

__all__ = [
    "Architecture",
    "architecture",
    "backbone_module",
    "embeddings_module",
    "register_architecture",
    "register_embeddings_path",
    "vision_config",
]

ExtraInputs = Callable[[Any, Tensor], dict[str, Tensor]]


@dataclass(frozen=True)
class Architecture:
    """What simec needs to know about one ``model_type`` (see the module docstring)."""

    #: dotted path from the model to its embeddings module; None: ``base_model.embeddings``
    embeddings: str | None = None
    #: dotted path from the model to its vision backbone; None: ``base_model``
    backbone: str | None = None
    #: whether token 0 of the last layer's output is a classification token
    cls_token: bool = True
    #: transformers class that loads a checkpoint without a classification head; None: AutoModel
    headless_class: str | None = None
    #: config values simec needs: applied when loading, checked on in-memory models
    config_overrides: Mapping[str, Any] = field(default_factory=dict)
    #: (vision config, pixel_values (B, C, H, W)) -> extra keyword arguments of the backbone
    extra_inputs: ExtraInputs | None = None


def _mae_inputs(config: Any, pixel_values: Tensor) -> dict[str, Tensor]:
    """ViT-MAE shuffles its patches by argsort(noise): noise = 0, 1, 2, ... keeps their order."""
    p = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
    h, w = pixel_values.shape[-2:]
    n = (h // p) * (w // p)
    order = torch.arange(n, dtype=pixel_values.dtype, device=pixel_values.device)
    return {"noise": order.expand(pixel_values.shape[0], n)}


_ARCHITECTURES: Registry[Architecture] = Registry(
    "architecture",
    {
        "distilbert": Architecture(embeddings="distilbert.embeddings"),
        "swin": Architecture(cls_token=False),
        "vit_mae": Architecture(config_overrides={"mask_ratio": 0.0}, extra_inputs=_mae_inputs),
        # CLIPForImageClassification / CLIPModel keep the vision tower in .vision_model
        "clip": Architecture(
            embeddings="vision_model.embeddings",
            backbone="vision_model",
            headless_class="CLIPVisionModel",
        ),
        "clip_vision_model": Architecture(),
    },
)


def register_architecture(model_type: str, **fields: Any) -> Architecture:
    """Set fields of the ``Architecture`` entry for ``config.model_type`` (others kept)."""
    names = {f.name for f in dataclasses.fields(Architecture)}
    unknown = set(fields) - names
    if unknown:
        raise TypeError(f"unknown Architecture fields {sorted(unknown)}; known: {sorted(names)}")
    entry = dataclasses.replace(_ARCHITECTURES.find(model_type) or Architecture(), **fields)
    return _ARCHITECTURES.register(model_type, entry, replace=True)


def register_embeddings_path(model_type: str, path: str) -> None:
    """Tell simec where models of ``config.model_type`` keep their embeddings module."""
    register_architecture(model_type, embeddings=path)


def _model_type(model_or_type: nn.Module | str | None) -> str:
    if isinstance(model_or_type, str):
        return model_or_type
    return getattr(getattr(model_or_type, "config", None), "model_type", None) or ""


def architecture(model_or_type: nn.Module | str | None) -> Architecture:
    """The entry for a model (by its ``config.model_type``) or a model type; defaults if none."""
    return _ARCHITECTURES.find(_model_type(model_or_type)) or Architecture()


def _resolve(model: nn.Module, path: str, what: str) -> nn.Module:
    module: object = model
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            break
    if isinstance(module, nn.Module):
        return module
    raise ModelError(f"registered {what} path {path!r} not found on {type(model).__name__}")


def embeddings_module(model: nn.Module) -> nn.Module:
    """The module whose output is the explored space (see module docstring)."""
    path = architecture(model).embeddings
    if path is not None:
        return _resolve(model, path, "embeddings")
    base = getattr(model, "base_model", model)
    module = getattr(base, "embeddings", None)
    if isinstance(module, nn.Module):
        return module
    raise ModelError(
        f"{type(model).__name__} (model_type={_model_type(model)!r}) has no embeddings module "
        "that simec knows how to replace. Register one with "
        "simec.models.register_embeddings_path(model_type, 'dotted.path.to.embeddings'), "
        "or wrap the model in simec.TorchAdapter."
    )


def backbone_module(model: nn.Module) -> tuple[str, nn.Module]:
    """(dotted name, module) of the vision backbone: pixels -> hidden states (module docstring).

    The name is "" when the backbone is the model itself (a model without a head).
    """
    path = architecture(model).backbone
    module = _resolve(model, path, "backbone") if path else getattr(model, "base_model", model)
    for name, candidate in model.named_modules():
        if candidate is module:
            return name, module
    raise ModelError(f"the backbone of {type(model).__name__} is not one of its submodules")


def vision_config(model_or_config: Any) -> Any | None:
    """The config holding ``image_size``: the model's own, or its ``vision_config`` (CLIP)."""
    config = getattr(model_or_config, "config", model_or_config)
    if config is None:
        return None
    if hasattr(config, "image_size"):
        return config
    sub = getattr(config, "vision_config", None)
    return sub if sub is not None and hasattr(sub, "image_size") else None
