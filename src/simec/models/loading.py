"""Load a model directory (saved with ``save_pretrained``) into the right adapter, offline."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..errors import InputError, ModelError
from .architectures import architecture, vision_config
from .base import ModelAdapter, resolve_device, resolve_dtype
from .cache import resolve_model_path
from .hf_text import HFMaskedLMAdapter, HFSequenceClassifierAdapter
from .hf_vision import HFImageClassifierAdapter

__all__ = ["from_model", "load_adapter"]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path} does not hold a JSON object: save the model again")
    return value


#: weight files transformers reads, safe formats first
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
            "pytorch_model.bin.index.json")  # fmt: skip


def _check_weights(root: Path) -> None:
    """A model folder must hold weights; say so before transformers tries."""
    if not any((root / name).is_file() for name in _WEIGHTS):
        raise ModelError(
            f"{root} has a config.json but no weights (model.safetensors): save the model "
            "with save_pretrained()"
        )


def _load_failure(path: Path, exc: BaseException) -> ModelError:
    """A one-line ModelError for weights that cannot be loaded (damaged, or not safe)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "weights_only" in str(exc) or "pickle" in str(exc).lower():
        return ModelError(
            f"cannot load the weights in {path}: they are a pickle that safe loading refuses "
            "(simec reads safetensors, or a .bin of plain tensors): save the model again with "
            "save_pretrained(), which writes model.safetensors"
        )
    return ModelError(
        f"cannot load the weights in {path} ({text[:200]}): the files are damaged or cut "
        "short; save the model again with save_pretrained()"
    )


def _from_pretrained(auto_class: Any, path: Path, **overrides: Any) -> nn.Module:
    """Load with SDPA attention (vmap-compatible and 2x faster than eager on CPU), else eager.

    ``overrides`` are config values set at load time (e.g. ViT-MAE's ``mask_ratio=0.0``).
    """
    import pickle

    from safetensors import SafetensorError

    last: Exception | None = None
    for impl in ("sdpa", "eager"):
        try:
            with warnings.catch_warnings():  # the refusal below says it in one line
                warnings.filterwarnings("ignore", module="torch._weights_only_unpickler")
                return auto_class.from_pretrained(
                    path, local_files_only=True, attn_implementation=impl, **overrides
                )
        except (SafetensorError, OSError, EOFError, RuntimeError, pickle.UnpicklingError) as exc:
            raise _load_failure(path, exc) from None
        except (ValueError, ImportError) as exc:
            if "weights_only" in str(exc) or "safetensors" in str(exc).lower():
                raise _load_failure(path, exc) from None
            last = exc
    text = str(last).strip().splitlines()[0] if last is not None else ""
    raise ModelError(f"cannot load the model in {path}: {text}")


def _vision_class(transformers: Any, arch: str, config: dict[str, Any]) -> Any | None:
    """The class that loads a vision checkpoint (see ``load_adapter``), or None if not vision."""
    if "ForImageClassification" in arch:
        # the saved class itself (DeiT's ...WithTeacher has its own head), else the Auto class
        cls = getattr(transformers, arch, None)
        return cls if cls is not None else transformers.AutoModelForImageClassification
    model_type = config.get("model_type", "")
    headless = architecture(model_type).headless_class
    if headless is not None:
        cls = getattr(transformers, headless, None)
        if cls is None:
            raise ModelError(f"transformers has no class {headless!r} to load {model_type!r}")
        return cls
    if "image_size" in config:  # a vision backbone: ViTModel, ViTMAEModel, SwinModel, ...
        return transformers.AutoModel
    return None


#: files of a saved tokenizer (one is enough); without any, transformers would build a
#: tokenizer of special tokens only and every word would be [UNK]
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                    "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")  # fmt: skip


def _tokenizer(root: Path) -> Any:
    import transformers

    if not any((root / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelError(
            f"no tokenizer in {root} (none of {', '.join(_TOKENIZER_FILES[:3])}, ...): save the "
            "tokenizer next to the model with tokenizer.save_pretrained()"
        )
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(root, local_files_only=True)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"no tokenizer could be loaded from {root} ({text[:200]}): save the tokenizer "
            "next to the model with tokenizer.save_pretrained()"
        ) from None
    if tokenizer is None or isinstance(tokenizer, bool):
        raise ModelError(
            f"no tokenizer could be loaded from {root}: save the tokenizer next to the model "
            "with tokenizer.save_pretrained()"
        )
    return tokenizer


def _normalisation(root: Path) -> tuple[Any, Any]:
    """image_mean and image_std from preprocessor_config.json (None, None: no normalisation)."""
    pre = root / "preprocessor_config.json"
    if pre.is_file():
        proc = _read_json(pre)
        if proc.get("do_normalize", True):
            return proc.get("image_mean"), proc.get("image_std")
    return None, None


def _checked_root(path: Any, *, space: str, device: Any, dtype: Any) -> Path:
    """The model folder, after the options: a bad device, dtype, space or folder is an error
    before anything loads."""
    resolve_device(device)
    resolve_dtype(dtype)
    if space not in ("embeddings", "pixels"):
        raise InputError(f"space must be 'embeddings' or 'pixels', got {space!r}")
    root = resolve_model_path(path)
    if not root.exists():
        raise ModelError(f"model directory {str(root)!r} does not exist")
    if not root.is_dir() or not (root / "config.json").is_file():
        raise ModelError(
            f"{str(root)!r} is not a model directory: expected a config.json written by "
            "save_pretrained()"
        )
    return root


def load_adapter(
    path: str | os.PathLike,
    *,
    space: Literal["embeddings", "pixels"] = "embeddings",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
    truncation: bool = False,
    top_k: int = 10,
) -> ModelAdapter:
    """Adapter for a local Hugging Face model directory (vision model, sequence classifier, MLM).

    Image classifiers (``*ForImageClassification``) load as saved; other vision checkpoints
    (ViT-MAE, CLIP, plain backbones) load without a head as their vision backbone (see
    ``simec.models.architectures``): such adapters serve ``simec structure`` with the ``cls``
    or ``pooled`` embedding, and raise ``ModelError`` when asked for logits.
    """
    root = _checked_root(path, space=space, device=device, dtype=dtype)
    config = _read_json(root / "config.json")
    architectures = config.get("architectures") or []
    arch = architectures[0] if architectures else ""
    import transformers

    vision = _vision_class(transformers, arch, config)
    if vision is None and space != "embeddings":
        raise InputError(
            f"--space {space} (space={space!r}) is for vision models; {root} holds a text model, "
            "which is explored in its embeddings: leave --space out"
        )
    if vision is not None or arch.endswith(("ForMaskedLM", "ForSequenceClassification")):
        _check_weights(root)
    if vision is not None:
        overrides = dict(architecture(config.get("model_type", "")).config_overrides)
        model = _from_pretrained(vision, root, **overrides)
        mean, std = _normalisation(root)
        return HFImageClassifierAdapter(
            model.eval(), space=space, image_mean=mean, image_std=std, device=device, dtype=dtype
        )
    if arch.endswith("ForMaskedLM"):
        model = _from_pretrained(transformers.AutoModelForMaskedLM, root)
        return HFMaskedLMAdapter(
            model.eval(),
            _tokenizer(root),
            top_k=top_k,
            device=device,
            dtype=dtype,
            truncation=truncation,
        )
    if arch.endswith("ForSequenceClassification"):
        model = _from_pretrained(transformers.AutoModelForSequenceClassification, root)
        return HFSequenceClassifierAdapter(
            model.eval(), _tokenizer(root), device=device, dtype=dtype, truncation=truncation
        )
    raise ModelError(
        f"unsupported architecture {arch or '(none)'!r} in {root}/config.json: simec loads "
        "vision models (*ForImageClassification, or backbones whose config has image_size) and "
        "*ForSequenceClassification and *ForMaskedLM models; register a vision model's class with "
        "simec.models.architectures.register_architecture(model_type, headless_class=...) or "
        "wrap others in simec.TorchAdapter"
    )


def from_model(model: nn.Module, tokenizer: Any = None, **options: Any) -> ModelAdapter:
    """Adapter for an in-memory Hugging Face model (vision if its config, or its
    ``vision_config``, has image_size)."""
    config = getattr(model, "config", None)
    if config is None:
        raise ModelError(
            f"{type(model).__name__} has no Hugging Face config; use simec.TorchAdapter"
        )
    if vision_config(config) is not None:
        return HFImageClassifierAdapter(model, **options)
    if type(model).__name__.endswith("ForMaskedLM"):
        return HFMaskedLMAdapter(model, tokenizer, **options)
    return HFSequenceClassifierAdapter(model, tokenizer, **options)
