"""Hugging Face sequence classifiers (BERT family): explore the embeddings module's output."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError, ModelError
from .architectures import embeddings_module
from .base import (
    PreparedInput,
    capture_module_output,
    parameter_copies,
    replace_module_output,
    resolve_device,
    resolve_dtype,
)
from .bounds import layernorm_bounds
from .hf_base import HFAdapter

__all__ = ["HFMaskedLMAdapter", "HFSequenceClassifierAdapter", "read_text_input"]


#: suffixes of files that are never a text model's input
_NOT_TEXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".npy", ".npz")


def _refuse_file_path(text: str) -> None:
    """A text that names an existing image or array file is a mistake, not a text to explore."""
    candidate = text.strip()
    if (
        "\n" not in candidate
        and candidate.lower().endswith(_NOT_TEXT)
        and os.path.isfile(candidate)
    ):
        raise InputError(
            f"{candidate!r} is an image or array file, but this is a text model: give the text "
            "itself (or a .txt file), or use a vision model"
        )


def read_text_input(text: str) -> str:
    """``--input`` of a text model: the contents of a .txt file (UTF-8), else the text itself
    (a path to an image or array file is refused by the adapter)."""
    path = Path(text)
    if path.suffix.lower() != ".txt" or "\n" in text:
        return text
    if path.is_dir():
        raise InputError(f"{text!r} is a folder: give a .txt file or the text itself")
    if not path.is_file():
        raise InputError(f"text file {text!r} does not exist (give the text itself, or a file)")
    try:
        return path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise InputError(f"{text!r} is not UTF-8 text: save it as UTF-8") from None


def _repeat(model_inputs: Mapping[str, Tensor], count: int) -> dict[str, Tensor]:
    """A batch of ``count`` copies of one input's model inputs (each (1, ...))."""
    return {k: v.expand(count, *v.shape[1:]) for k, v in model_inputs.items()}


class HFSequenceClassifierAdapter(HFAdapter):
    """Adapter for ``*ForSequenceClassification`` models.

    x0 is the embeddings module's output for the tokenised text (token + position + type
    embeddings after LayerNorm), one row per token, special tokens included. The explored tensor
    is injected in place of that output, so the attention mask and token type ids still apply.
    Texts longer than the model's positions raise an error unless ``truncation=True``.

    Public protocol beyond ``HFAdapter``: ``tokenizer``, ``max_length``, ``truncation``,
    ``classify(texts)`` (padded batches) and ``classify_ids(input_ids)``.
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

    # -- capabilities ----------------------------------------------------------------------
    modality = "text"

    def read_input(self, arg: str) -> str:
        """The text itself, or the contents of a .txt file (``read_text_input``)."""
        return read_text_input(arg)

    def embedding_bounds(self) -> tuple[Tensor, Tensor]:
        """Analytic bounds of the embeddings over every token, position and type.

        BERT-family embeddings end in a LayerNorm, y = gamma u + beta with u = (z - mean z) /
        std z, whose coordinates lie in [-sqrt(h - 1), sqrt(h - 1)] for any z (h the width;
        ``bounds.layernorm_bounds``): lower/upper = beta -/+ |gamma| sqrt(h - 1), analytic and
        valid for any input but loose (the paper's formula for one-hot inputs is not stated for
        the LayerNorm; this is our choice).
        """
        module = self.embedding_module
        norm = getattr(module, "LayerNorm", None) or getattr(module, "layer_norm", None)
        if not isinstance(norm, nn.LayerNorm) or norm.weight is None:
            raise ModelError(
                f"{type(module).__name__} does not end in a LayerNorm with weights: "
                "box='embedding-bounds' cannot bound it; pass box=(lower, upper)"
            )
        gamma = norm.weight.detach().to(device=self.device, dtype=self.dtype)
        beta = norm.bias.detach().to(gamma) if norm.bias is not None else torch.zeros_like(gamma)
        return layernorm_bounds(gamma, beta)

    # -- protocol ------------------------------------------------------------------------
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
        else:
            _refuse_file_path(raw)
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
            self.run(inputs)
        if not seen:
            raise ModelError("the embeddings module was not called by the model's forward")
        x0 = seen[0][0].detach()
        names = self.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].tolist())
        text = " ".join(raw) if words else raw
        return PreparedInput(x0, list(names), inputs, text, word_ids=word_ids)

    def logits(self, x: Tensor, prepared: PreparedInput) -> Tensor:
        with replace_module_output(self._embeddings, x.unsqueeze(0)):
            return self.run(prepared.model_inputs)[0]

    def logits_many(self, xs: Tensor, prepared: PreparedInput) -> Tensor:
        """One batch of the model: the input's token ids repeated, its embeddings replaced."""
        with replace_module_output(self._embeddings, xs):
            return self.run(_repeat(prepared.model_inputs, len(xs)))

    @torch.no_grad()
    def classify_ids(self, input_ids: Tensor, *, batch_size: int = 64) -> Tensor:
        """Probabilities (m, q) for m token-id sequences of one length (no padding needed)."""
        ids = torch.as_tensor(input_ids, device=self.device)
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise InputError(
                f"input_ids must be (m, length) with length > 0, got {tuple(ids.shape)}"
            )
        out = [
            self._probabilities({"input_ids": ids[i : i + batch_size]})
            for i in range(0, len(ids), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, len(self.labels))

    @torch.no_grad()
    def classify(self, texts: Sequence[str], *, batch_size: int = 32) -> Tensor:
        """Probabilities (m, q) for a list of texts, run as padded batches with attention masks.

        Texts longer than the model's positions are truncated only if the adapter was built with
        ``truncation=True``; otherwise they raise like ``prepare`` does.
        """
        return torch.cat(
            [self._probabilities(inputs) for inputs in self._batches(texts, batch_size)]
        )

    def _probabilities(self, inputs: dict[str, Tensor]) -> Tensor:
        """The output distribution (B, q) for a batch of model inputs."""
        return torch.softmax(self.run(inputs), -1)

    def _batches(self, texts: Sequence[str], batch_size: int) -> Iterator[dict[str, Tensor]]:
        """Tokenised, padded model inputs for the texts, ``batch_size`` at a time."""
        if isinstance(texts, str) or not texts:
            raise InputError("classify takes a non-empty list of texts")
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise InputError("the text is empty")
        limit = {"truncation": True, "max_length": self.max_length} if self.truncation else {}
        for i in range(0, len(texts), batch_size):
            chunk = list(texts[i : i + batch_size])
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True, **limit)
            if enc["input_ids"].shape[1] > self.max_length:
                raise InputError(
                    f"a text has more than {self.max_length} tokens; pass truncation=True"
                )
            yield {k: v.to(self.device) for k, v in enc.items() if isinstance(v, Tensor)}

    def describe(self) -> dict[str, Any]:
        return self.describe_model(max_length=self.max_length, truncation=self.truncation)


class HFMaskedLMAdapter(HFSequenceClassifierAdapter):
    """Adapter for ``*ForMaskedLM`` models: the explored output is the [MASK] prediction.

    The text must hold exactly one mask token (``tokenizer.mask_token``, e.g. ``[MASK]``). The
    output vector is the model's logits at that position restricted to the ``top_k`` tokens it
    predicts for the original text; the restriction is chosen once, at x0, and kept for the whole
    exploration, so the explored distribution is the softmax over those k tokens (renormalised).
    The input's ``labels`` are those k tokens, most likely first.

    ``classify(texts)`` and ``classify_ids(input_ids)`` return that distribution at each
    input's start, (m, top_k), not vocabulary-sized logits: row i is the softmax over the
    ``top_k`` tokens the model predicts at input i's mask, most likely first (column j is
    ``labels[j]`` = "top-(j+1)"; which tokens those are differs per input:
    ``prepare(text).labels`` names them). ``run`` gives the raw (B, tokens, vocabulary) logits.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, *, top_k: int = 10, **options: Any):
        super().__init__(model, tokenizer, **options)
        vocab = int(getattr(model.config, "vocab_size", 0) or 0)
        if not 2 <= top_k <= max(2, vocab):
            raise InputError(f"top_k must be between 2 and the vocabulary size, got {top_k}")
        if getattr(tokenizer, "mask_token_id", None) is None:
            raise ModelError("the tokenizer has no mask token")
        self.top_k = int(top_k)
        self.labels = [f"top-{i + 1}" for i in range(self.top_k)]

    @property
    def task(self) -> str:
        """ "masked-lm": the logits are the top-k tokens at the input's mask."""
        return "masked-lm"

    def prepare(self, raw: Any) -> PreparedInput:
        prepared = super().prepare(raw)
        ids = prepared.model_inputs["input_ids"][0]
        where = (ids == self.tokenizer.mask_token_id).nonzero().flatten().tolist()
        if len(where) != 1:
            raise InputError(
                f"a masked-LM input needs exactly one {self.tokenizer.mask_token} token, "
                f"found {len(where)}"
            )
        with (
            torch.no_grad(),
            replace_module_output(self._embeddings, prepared.embeddings.unsqueeze(0)),
        ):
            full = self.run(prepared.model_inputs)[0, where[0]]
        top = full.topk(self.top_k).indices
        prepared.extras.update(mask_index=where[0], top_ids=top)
        prepared.labels = self.tokenizer.convert_ids_to_tokens(top.tolist())
        return prepared

    def _probabilities(self, inputs: dict[str, Tensor]) -> Tensor:
        """Softmax (B, top_k) over each row's top_k tokens at its one mask, largest first."""
        ids = inputs["input_ids"]
        at_mask = ids == self.tokenizer.mask_token_id
        counts = at_mask.sum(1)
        bad = (counts != 1).nonzero().flatten()
        if len(bad):
            raise InputError(
                f"a masked-LM input needs exactly one {self.tokenizer.mask_token} token, "
                f"found {int(counts[bad[0]])}"
            )
        logits = self.run(inputs)[at_mask]  # (B, vocab): one mask per row, rows in order
        return torch.softmax(logits.topk(self.top_k, -1).values, -1)

    def logits(self, x: Tensor, prepared: PreparedInput) -> Tensor:
        with replace_module_output(self._embeddings, x.unsqueeze(0)):
            full = self.run(prepared.model_inputs)[0]
        return full[prepared.extras["mask_index"]].index_select(0, prepared.extras["top_ids"])

    def logits_many(self, xs: Tensor, prepared: PreparedInput) -> Tensor:
        with replace_module_output(self._embeddings, xs):
            full = self.run(_repeat(prepared.model_inputs, len(xs)))
        at_mask = full[:, prepared.extras["mask_index"]]
        return at_mask.index_select(-1, prepared.extras["top_ids"])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "top_k": self.top_k}
