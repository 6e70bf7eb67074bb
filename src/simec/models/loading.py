"""Load a model directory (saved with ``save_pretrained``) into the right adapter, offline."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..errors import ModelError
from .base import ModelAdapter
from .hf_text import HFSequenceClassifierAdapter
from .hf_vision import HFImageClassifierAdapter

__all__ = ["from_model", "load_adapter"]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc


def _from_pretrained(auto_class: Any, path: Path) -> nn.Module:
    """Load with SDPA attention (vmap-compatible and 2x faster than eager on CPU), else eager."""
    last: Exception | None = None
    for impl in ("sdpa", "eager"):
        try:
            return auto_class.from_pretrained(path, local_files_only=True, attn_implementation=impl)
        except (ValueError, ImportError) as exc:
            last = exc
    raise ModelError(f"cannot load the model in {path}: {last}")


def load_adapter(
    path: str | os.PathLike,
    *,
    space: Literal["embeddings", "pixels"] = "embeddings",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
    truncation: bool = False,
) -> ModelAdapter:
    """Adapter for a local Hugging Face model directory (image or sequence classifier)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = Path(path)
    if not root.exists():
        raise ModelError(f"model directory {str(root)!r} does not exist")
    if not root.is_dir() or not (root / "config.json").is_file():
        raise ModelError(
            f"{str(root)!r} is not a model directory: expected a config.json written by "
            "save_pretrained()"
        )
    config = _read_json(root / "config.json")
    architectures = config.get("architectures") or []
    arch = architectures[0] if architectures else ""
    import transformers

    if arch.endswith("ForImageClassification"):
        model = _from_pretrained(transformers.AutoModelForImageClassification, root)
        pre = root / "preprocessor_config.json"
        mean = std = None
        if pre.is_file():
            proc = _read_json(pre)
            if proc.get("do_normalize", True):
                mean, std = proc.get("image_mean"), proc.get("image_std")
        return HFImageClassifierAdapter(
            model.eval(), space=space, image_mean=mean, image_std=std, device=device, dtype=dtype
        )
    if arch.endswith("ForSequenceClassification"):
        model = _from_pretrained(transformers.AutoModelForSequenceClassification, root)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(root, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"no tokenizer could be loaded from {root}: {exc}") from exc
        return HFSequenceClassifierAdapter(
            model.eval(), tokenizer, device=device, dtype=dtype, truncation=truncation
        )
    raise ModelError(
        f"unsupported architecture {arch or '(none)'!r} in {root}/config.json: simec loads "
        "*ForImageClassification and *ForSequenceClassification models; wrap others in "
        "simec.TorchAdapter"
    )


def from_model(model: nn.Module, tokenizer: Any = None, **options: Any) -> ModelAdapter:
    """Adapter for an in-memory Hugging Face model (vision if its config has image_size)."""
    config = getattr(model, "config", None)
    if config is None:
        raise ModelError(
            f"{type(model).__name__} has no Hugging Face config; use simec.TorchAdapter"
        )
    if hasattr(config, "image_size"):
        return HFImageClassifierAdapter(model, **options)
    return HFSequenceClassifierAdapter(model, tokenizer, **options)
