"""What the Hugging Face adapters share: the model, its weight copies, its embeddings module.

``HFAdapter`` is the part of the adapter protocol (``base``) that only a Hugging Face model
can offer; ``hf_vision`` and ``hf_text`` build on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from types import MappingProxyType

from torch import Tensor, nn
from torch.func import functional_call

from ..errors import ModelError
from .architectures import embeddings_module
from .base import ModelAdapter, eval_mode

__all__ = ["HFAdapter"]


class HFAdapter(ModelAdapter):
    """A Hugging Face model run through detached weight copies (see ``base``).

    Subclasses set ``model`` and ``_params`` (``base.parameter_copies``) in ``__init__``.
    """

    #: the user's model (read, never modified)
    model: nn.Module
    _params: dict[str, Tensor]
    _eager: nn.Module | None = None

    @property
    def weights(self) -> Mapping[str, Tensor]:
        """Read-only view of the weight copies (name -> tensor, adapter dtype/device) every run
        uses; they share memory with the model when no conversion was needed."""
        return MappingProxyType(self._params)

    def submodule_weights(self, module: nn.Module) -> dict[str, Tensor]:
        """The weight copies of a submodule of ``model``, named relative to it (for
        ``functional_call(module, ...)``)."""
        if module is self.model:
            return dict(self._params)
        prefix = next((n for n, m in self.model.named_modules() if m is module), None)
        if not prefix:
            raise ModelError(f"{type(module).__name__} is not a submodule of the adapter's model")
        return {
            k[len(prefix) + 1 :]: v for k, v in self._params.items() if k.startswith(prefix + ".")
        }

    @property
    def embedding_module(self) -> nn.Module:
        """The model's embeddings module; its output for one input is x0 in the embeddings
        space (per-architecture paths in ``architectures``)."""
        return embeddings_module(self.model)

    def run(self, model_inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits of the whole model on a batch of its own inputs (eval mode, weight copies):
        (B, q) for a classifier, (B, tokens, vocabulary) for a masked LM."""
        with eval_mode(self.model):
            out = functional_call(self.model, self._params, (), dict(model_inputs))
        return out.logits if hasattr(out, "logits") else out[0]

    def eager_copy(self) -> nn.Module:
        """A copy of the model with eager attention, in eval mode and the adapter's dtype and
        device, made on first use and cached (attention explainers read its attention maps;
        SDPA attention returns none). The user's model is never switched or modified."""
        if self._eager is None:
            copy = deepcopy(self.model).eval()
            try:
                copy.set_attn_implementation("eager")  # type: ignore[operator]
            except (AttributeError, ValueError):
                copy.config._attn_implementation = "eager"  # type: ignore[union-attr]
            self._eager = copy.to(device=self.device, dtype=self.dtype)
        return self._eager
