"""Decoding explored text embeddings back into tokens (Algorithm 5 for BERT-family models).

Two decoders, both replacing only the explored positions (Algorithm 5, line 12):

* ``NearestTokenDecoder`` needs nothing but the explored model: at position i it returns the
  vocabulary token w whose embedding *at that position*, e(w, i) = the embeddings module's output
  for w at position i with the original token type, is nearest to the explored row. This is the
  exact projection onto the set of embeddings real tokens can produce; an unmodified row decodes
  to its own token.
* ``MLMDecoder`` follows the paper: the explored embedding matrix is fed through a masked-LM
  model that shares the embedding space (e.g. ``simec train mlm-head`` on the encoder the
  classifier was fine-tuned from, with frozen embeddings) and the top-k tokens at every explored
  position are read off its output.

``alternative_prompts`` builds the paper's k alternative prompts per iteration: prompt j puts
the j-th MLM candidate at every explored position.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call

from ..errors import InputError
from ..models.base import (
    PreparedInput,
    capture_module_output,
    eval_mode,
    replace_module_output,
)
from ..models.hf_text import HFMaskedLMAdapter, HFSequenceClassifierAdapter

__all__ = ["DecodedTokens", "MLMDecoder", "NearestTokenDecoder", "alternative_prompts"]


@dataclass
class DecodedTokens:
    """Decoded token ids for m explored points.

    ``ids`` is (m, k, n): k alternatives (k = 1 for the nearest token) of the whole sequence,
    with the original ids at the positions that were not explored. ``scores`` (m, k, s) holds
    the decoder's score of each alternative at each explored position (negative distance, or
    the MLM probability).
    """

    ids: Tensor
    scores: Tensor
    positions: list[int]

    def tokens(self, tokenizer, point: int = -1, alternative: int = 0) -> list[str]:
        return tokenizer.convert_ids_to_tokens(self.ids[point, alternative].tolist())

    def texts(self, tokenizer, point: int = -1) -> list[str]:
        """The k alternative texts of one point, special tokens removed."""
        return [tokenizer.decode(row.tolist(), skip_special_tokens=True) for row in self.ids[point]]


def _points(points: Tensor, prepared: PreparedInput) -> Tensor:
    x = points.unsqueeze(0) if points.ndim == 2 else points
    if x.ndim != 3 or tuple(x.shape[1:]) != tuple(prepared.embeddings.shape):
        raise InputError(
            f"explored points must be (m, {prepared.num_segments}, "
            f"{prepared.embeddings.shape[1]}), got {tuple(points.shape)}"
        )
    return x


def _positions(prepared: PreparedInput, segments: list[int] | None, tokenizer) -> list[int]:
    n = prepared.num_segments
    if segments is None:
        special = set(tokenizer.all_special_tokens)
        return [i for i, t in enumerate(prepared.segment_names) if t not in special]
    bad = [s for s in segments if not 0 <= s < n]
    if bad:
        raise InputError(f"segments {bad} out of range 0..{n - 1}")
    return sorted(set(int(s) for s in segments))


class NearestTokenDecoder:
    """Nearest real token under the embedding map itself (see module docstring)."""

    def __init__(
        self,
        adapter: HFSequenceClassifierAdapter,
        *,
        allow_special: bool = False,
        chunk: int = 4096,
    ) -> None:
        if adapter.modality != "text":
            raise InputError("NearestTokenDecoder needs a Hugging Face text adapter")
        self.adapter = adapter
        self.chunk = chunk
        module = adapter.embedding_module
        self._params = adapter.submodule_weights(module)
        self._module = module
        config: Any = adapter.model.config
        vocab = int(config.vocab_size)
        candidates = torch.ones(vocab, dtype=torch.bool)
        if not allow_special:
            candidates[[i for i in adapter.tokenizer.all_special_ids if i < vocab]] = False
        self.candidates = candidates.nonzero().flatten().to(adapter.device)
        self._fast = "position_ids" in inspect.signature(module.forward).parameters

    def _embed(self, **kwargs: Tensor) -> Tensor:
        with eval_mode(self._module):
            out = functional_call(self._module, self._params, (), kwargs)
        return out[0] if isinstance(out, tuple) else out

    @torch.no_grad()
    def table(self, prepared: PreparedInput, position: int) -> Tensor:
        """e(w, position) for every candidate token w: (candidates, width)."""
        ids = prepared.model_inputs["input_ids"]
        types = prepared.model_inputs.get("token_type_ids")
        parts = []
        for start in range(0, len(self.candidates), self.chunk):
            w = self.candidates[start : start + self.chunk].unsqueeze(1)
            if self._fast:
                kwargs = {"input_ids": w, "position_ids": torch.full_like(w, position)}
                if types is not None:
                    kwargs["token_type_ids"] = types[:, position : position + 1].expand_as(w)
                parts.append(self._embed(**kwargs)[:, 0])
            else:
                # generic: substitute w into the prefix of the real sequence (the embeddings
                # module works position by position, so the prefix is enough)
                seq = ids[:, : position + 1].expand(len(w), -1).clone()
                seq[:, position] = w[:, 0]
                kwargs = {"input_ids": seq}
                if types is not None:
                    kwargs["token_type_ids"] = types[:, : position + 1].expand_as(seq)
                parts.append(self._embed(**kwargs)[:, position])
        table = torch.cat(parts)
        original = int(ids[0, position])
        hit = (self.candidates == original).nonzero()
        if self._fast and len(hit):
            expected = prepared.embeddings[position]
            got = table[int(hit[0])]
            if not torch.allclose(
                got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max())
            ):
                self._fast = False  # this embeddings module does not take position_ids as BERT
                return self.table(prepared, position)
        return table

    @torch.no_grad()
    def decode(
        self, points: Tensor, prepared: PreparedInput, *, segments: list[int] | None = None
    ) -> DecodedTokens:
        """Nearest token at every explored position of each of the m points (m, n, width)."""
        x = _points(points, prepared).to(self.adapter.device, self.adapter.dtype)
        positions = _positions(prepared, segments, self.adapter.tokenizer)
        ids = prepared.model_inputs["input_ids"][0].expand(len(x), -1).clone()
        scores = torch.zeros(len(x), 1, len(positions), dtype=x.dtype, device=x.device)
        for j, i in enumerate(positions):
            dist = torch.cdist(x[:, i], self.table(prepared, i))  # (m, candidates)
            best = dist.min(1)
            ids[:, i] = self.candidates[best.indices]
            scores[:, 0, j] = -best.values
        return DecodedTokens(ids.unsqueeze(1).cpu(), scores.cpu(), positions)


class MLMDecoder:
    """Top-k tokens of a masked-LM model fed the explored embedding matrix (Algorithm 5)."""

    def __init__(self, mlm: HFMaskedLMAdapter, *, batch_size: int = 32) -> None:
        if mlm.task != "masked-lm":
            raise InputError(
                "MLMDecoder needs a masked-LM adapter (load_adapter of a *ForMaskedLM)"
            )
        self.mlm = mlm
        self.batch_size = batch_size

    @torch.no_grad()
    def embedding_mismatch(self, prepared: PreparedInput) -> float:
        """Relative difference between the MLM model's embeddings of the input and x0.

        Near 0 when the two models share their embedding space (the decoder is then exact
        for unmodified inputs); large values mean the decoded tokens are only indicative.
        """
        inputs = {k: v.to(self.mlm.device) for k, v in prepared.model_inputs.items()}
        with capture_module_output(self.mlm.embedding_module) as seen:
            self.mlm.run(inputs)
        mine = seen[0][0].to(prepared.embeddings.dtype)
        ref = prepared.embeddings.to(mine.device)
        return float(torch.linalg.norm(mine - ref) / torch.linalg.norm(ref))

    @torch.no_grad()
    def decode(
        self,
        points: Tensor,
        prepared: PreparedInput,
        *,
        segments: list[int] | None = None,
        k: int = 5,
    ) -> DecodedTokens:
        """Top-k MLM tokens at each explored position for m points (m, n, width)."""
        x = _points(points, prepared).to(self.mlm.device, self.mlm.dtype)
        positions = _positions(prepared, segments, self.mlm.tokenizer)
        base = {k_: v.to(self.mlm.device) for k_, v in prepared.model_inputs.items()}
        ids = base["input_ids"][0]
        out_ids = ids.expand(len(x), k, -1).clone()
        scores = torch.zeros(len(x), k, len(positions), dtype=x.dtype)
        pos = torch.tensor(positions, device=x.device)
        for start in range(0, len(x), self.batch_size):
            chunk = x[start : start + self.batch_size]
            inputs = {name: v.expand(len(chunk), -1) for name, v in base.items()}
            with replace_module_output(self.mlm.embedding_module, chunk):
                logits = self.mlm.run(inputs)  # (b, n, vocab)
            probs = torch.softmax(logits[:, pos], -1)  # (b, s, vocab)
            top = probs.topk(k, -1)
            out_ids[start : start + len(chunk)][:, :, pos] = top.indices.permute(0, 2, 1)
            scores[start : start + len(chunk)] = top.values.permute(0, 2, 1).cpu()
        return DecodedTokens(out_ids.cpu(), scores, positions)


@torch.no_grad()
def alternative_prompts(
    classifier: HFSequenceClassifierAdapter, decoded: DecodedTokens, *, batch_size: int = 64
) -> Tensor:
    """Probabilities (m, k, q) of the classifier on the m x k decoded prompts (same length)."""
    m, k, n = decoded.ids.shape
    probs = classifier.classify_ids(decoded.ids.reshape(m * k, n), batch_size=batch_size)
    return probs.reshape(m, k, -1).cpu()
