"""Explainers behind one interface, registered by name (the registry feeds CLI choices).

An explainer maps (adapter, raw input, target class) to one score per segment (token/patch).
Registered here: ``simec`` (Algorithm 3: lambda_max of the pullback restricted to the segment),
``rollout`` (Attention Rollout, CLS row), ``relevancy`` (Chefer et al. 2021, CLS row),
``grad_x_input`` (sum over the width of x * dlogit/dx), ``integrated_gradients`` (Sundararajan
et al. 2017; zero baseline, midpoint Riemann sum), and ``random`` (a sanity floor). The
attention explainers read attention maps from a private eager-attention copy of the model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.func import grad, vmap

from .._io import load_record, save_record
from ..errors import InputError
from ..geometry.jacobian import jacobian, quiet_vmap
from ..geometry.metrics import get_output_metric
from ..interpret.importance import importance_from_jacobian
from ..models.base import ModelAdapter, PreparedInput
from ..registry import Registry
from .rollout import attention_rollout, chefer_relevancy

__all__ = [
    "Explanation",
    "aggregate_word_pieces",
    "explain",
    "explainer_names",
    "register_explainer",
]

# (adapter, prepared input, target class resolved by ``explain``, options) -> scores
ExplainerFn = Callable[[ModelAdapter, PreparedInput, int, dict], Tensor]


@dataclass
class Explanation:
    """One score per segment of an input for class ``target``, by explainer ``method``.

    Saves to ``explanation.json`` + ``explanation.safetensors`` (the scores, their dtype kept)
    and loads back (``Explanation.load``).
    """

    scores: Tensor  # (segments,)
    segment_names: list[str]
    target: int
    method: str

    FILES = ("explanation.json", "explanation.safetensors")

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write this explanation into ``out_dir`` (atomically; returns the folder)."""
        summary = {
            "segment_names": self.segment_names,
            "target": self.target,
            "method": self.method,
        }
        tensors = {"scores": self.scores}
        return save_record(
            out_dir,
            summary=summary,
            tensors=tensors,
            files=self.FILES,
            format="simec-explanation-1",
        )

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> Explanation:
        """The explanation ``save`` wrote into ``out_dir``."""
        summary, tensors = load_record(out_dir, files=cls.FILES, what="explanation")
        try:
            return cls(
                scores=tensors["scores"],
                segment_names=list(summary["segment_names"]),
                target=int(summary["target"]),
                method=str(summary["method"]),
            )
        except KeyError as exc:
            raise InputError(f"{str(out_dir)!r}: the saved explanation lacks {exc}") from None


_REGISTRY: Registry[ExplainerFn] = Registry("explainer")


def register_explainer(name: str, fn: ExplainerFn, *, overwrite: bool = False) -> None:
    """Make an explainer available by name (``explain(..., method=name)``, the CLI)."""
    _REGISTRY.register(name, fn, replace=overwrite)


def explainer_names() -> list[str]:
    return _REGISTRY.names()


def _target(adapter: ModelAdapter, prepared: PreparedInput, target: int | None) -> int:
    if target is not None:
        return int(target)
    with torch.no_grad():
        return int(adapter.logits(prepared.embeddings, prepared).argmax())


def explain(
    adapter: ModelAdapter, raw: Any, method: str, *, target: int | None = None, **options: Any
) -> Explanation:
    """Scores per segment of ``raw`` for class ``target`` (default: the predicted class)."""
    fn = _REGISTRY.get(method)
    prepared = adapter.prepare(raw)
    cls = _target(adapter, prepared, target)
    scores = fn(adapter, prepared, cls, options)
    return Explanation(scores.detach().cpu(), prepared.segment_names, cls, method)


def _class_logit(adapter: ModelAdapter, prepared: PreparedInput, cls: int) -> Callable:
    return lambda x: adapter.logits(x, prepared)[cls]


def _simec(adapter: ModelAdapter, prepared: PreparedInput, cls: int, options: dict) -> Tensor:
    """Algorithm 3; class-agnostic: the pullback of the whole output metric, not one logit."""
    metric = get_output_metric(options.get("output_metric", "euclidean-probs"))
    y, jac = jacobian(lambda x: metric.output(adapter.logits(x, prepared)), prepared.embeddings)
    return importance_from_jacobian(jac, y, metric=metric, method=options.get("method", "lowrank"))


def _grad_x_input(
    adapter: ModelAdapter, prepared: PreparedInput, cls: int, options: dict
) -> Tensor:
    x = prepared.embeddings
    g = grad(_class_logit(adapter, prepared, cls))(x)
    return (g * x).sum(-1)


def _integrated_gradients(
    adapter: ModelAdapter, prepared: PreparedInput, cls: int, options: dict
) -> Tensor:
    x = prepared.embeddings
    steps = int(options.get("steps", 32))
    baseline = torch.zeros_like(x)
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    path = baseline + alphas.view(-1, 1, 1) * (x - baseline)
    with quiet_vmap():
        grads = vmap(grad(_class_logit(adapter, prepared, cls)))(path)
    return ((x - baseline) * grads.mean(0)).sum(-1)


def _random(adapter: ModelAdapter, prepared: PreparedInput, cls: int, options: dict) -> Tensor:
    gen = torch.Generator().manual_seed(int(options.get("seed", 0)))
    return torch.rand(prepared.num_segments, generator=gen, dtype=torch.float64)


def _attention_maps(
    adapter: ModelAdapter, prepared: PreparedInput, cls: int, *, with_grad: bool
) -> tuple[list[Tensor], list[Tensor], int]:
    model = adapter.eager_copy()  # cached eager-attention copy; the user's model is untouched
    with torch.enable_grad():
        out = model(**adapter.model_inputs(prepared), output_attentions=True)
        maps = [a[0] for a in out.attentions]
        grads: list[Tensor] = []
        if with_grad:
            grads = [g[0] for g in torch.autograd.grad(out.logits[0, cls], out.attentions)]
    # tokens the model attends over that are not segments (CLS etc. of a pixel-space ViT) lead
    skip = maps[0].shape[-1] - prepared.num_segments
    if skip < 0:
        raise InputError("the attention maps have fewer tokens than the input has segments")
    return [m.detach() for m in maps], grads, skip


def _rollout(adapter: ModelAdapter, prepared: PreparedInput, cls: int, options: dict) -> Tensor:
    maps, _, skip = _attention_maps(adapter, prepared, cls, with_grad=False)
    return attention_rollout(maps)[0, skip:]


def _relevancy(adapter: ModelAdapter, prepared: PreparedInput, cls: int, options: dict) -> Tensor:
    maps, grads, skip = _attention_maps(adapter, prepared, cls, with_grad=True)
    return chefer_relevancy(maps, grads)[0, skip:]


register_explainer("simec", _simec)
register_explainer("rollout", _rollout)
register_explainer("relevancy", _relevancy)
register_explainer("grad_x_input", _grad_x_input)
register_explainer("integrated_gradients", _integrated_gradients)
register_explainer("random", _random)


def aggregate_word_pieces(
    tokens: list[str], scores: Tensor, *, rule: str = "max", skip_special: bool = True
) -> tuple[list[str], Tensor]:
    """Word-level scores from WordPiece tokens: a word is a token plus its '##' continuations.

    ``rule`` "max" (default: a word is as important as its most important piece) or "sum".
    Special tokens ([CLS], [SEP], [PAD]) are dropped when ``skip_special``.
    """
    if rule not in ("max", "sum"):
        raise InputError(f"rule must be 'max' or 'sum', got {rule!r}")
    words: list[str] = []
    values: list[list[float]] = []
    for token, score in zip(tokens, scores.tolist()):
        if skip_special and token.startswith("[") and token.endswith("]"):
            continue
        if token.startswith("##") and words:
            words[-1] += token[2:]
            values[-1].append(score)
        else:
            words.append(token)
            values.append([score])
    fold = max if rule == "max" else sum
    return words, torch.tensor([fold(v) for v in values], dtype=torch.float64)
