"""Hugging Face sequence classifiers (BERT family): explore the embeddings module's output."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import InputError, ModelError
from .architectures import embeddings_module
from .base import (
    ModelAdapter,
    PreparedInput,
    capture_module_output,
    eval_mode,
    parameter_copies,
    replace_module_output,
    resolve_device,
    resolve_dtype,
)

__all__ = ["HFSequenceClassifierAdapter"]


class HFSequenceClassifierAdapter(ModelAdapter):
    """Adapter for ``*ForSequenceClassification`` models.

    x0 is the embeddings module's output for the tokenised text (token + position + type
    embeddings after LayerNorm), one row per token, special tokens included. The explored tensor
    is injected in place of that output, so the attention mask and token type ids still apply.
    Texts longer than the model's positions raise an error unless ``truncation=True``.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        max_length: int | None = None,
        truncation: bool = False,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "float32",
    ) -> None:
        config = getattr(model, "config", None)
        if config is None:
            raise ModelError(f"{type(model).__name__} is not a Hugging Face model")
        if tokenizer is None or not callable(tokenizer):
            raise ModelError("a text model needs its tokenizer")
        self.model = model
        self.tokenizer = tokenizer
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self._embeddings = embeddings_module(model)
        self._params = parameter_copies(model, self.device, self.dtype)
        positions = getattr(config, "max_position_embeddings", None) or 512
        self.max_length = int(
            max_length or min(positions, getattr(tokenizer, "model_max_length", positions))
        )
        self.truncation = truncation
        self.labels = [str(config.id2label[i]) for i in range(config.num_labels)]

    def _run(self, inputs: dict[str, Tensor]) -> Tensor:
        with eval_mode(self.model):
            out = functional_call(self.model, self._params, (), inputs)
        return out.logits if hasattr(out, "logits") else out[0]

    def prepare(self, raw: Any) -> PreparedInput:
        """Embed a text, or a list of words (then each segment's word index is recorded)."""
        words = isinstance(raw, (list, tuple))
        if words:
            if not raw or not all(isinstance(w, str) for w in raw):
                raise InputError("a word list must be a non-empty list of strings")
            if not any(w.strip() for w in raw):
                raise InputError("the text is empty")
        elif not isinstance(raw, str):
            raise InputError(
                f"a text model takes a string or a list of words, got {type(raw).__name__}"
            )
        elif not raw.strip():
            raise InputError("the text is empty")
        options = {"return_tensors": "pt", "is_split_into_words": words}
        enc = self.tokenizer(list(raw) if words else raw, truncation=False, **options)
        length = int(enc["input_ids"].shape[1])
        if length > self.max_length:
            if not self.truncation:
                raise InputError(
                    f"the text has {length} tokens but the model takes at most {self.max_length}; "
                    "shorten it or pass truncation=True (--truncate) to keep the first tokens"
                )
            enc = self.tokenizer(
                list(raw) if words else raw, truncation=True, max_length=self.max_length, **options
            )
        word_ids = enc.word_ids() if words and hasattr(enc, "word_ids") else None
        inputs = {k: v.to(self.device) for k, v in enc.items() if isinstance(v, Tensor)}
        mask = inputs.get("attention_mask")
        if mask is not None and bool(mask.all()):
            # one unpadded text: an all-ones mask changes nothing, and without it the model's
            # forward has no data-dependent branch, so the Jacobian can be traced and compiled
            del inputs["attention_mask"]
        with torch.no_grad(), capture_module_output(self._embeddings) as seen:
            self._run(inputs)
        if not seen:
            raise ModelError("the embeddings module was not called by the model's forward")
        x0 = seen[0][0].detach()
        names = self.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].tolist())
        text = " ".join(raw) if words else raw
        return PreparedInput(x0, list(names), inputs, text, word_ids=word_ids)

    def logits(self, x: Tensor, prepared: PreparedInput) -> Tensor:
        with replace_module_output(self._embeddings, x.unsqueeze(0)):
            return self._run(prepared.model_inputs)[0]

    def describe(self) -> dict[str, Any]:
        cfg = self.model.config
        return {
            "adapter": type(self).__name__,
            "model_class": type(self.model).__name__,
            "model_type": getattr(cfg, "model_type", None),
            "max_length": self.max_length,
            "truncation": self.truncation,
            "attn_implementation": getattr(cfg, "_attn_implementation", None),
        }
