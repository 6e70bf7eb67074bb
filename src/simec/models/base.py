"""The adapter protocol: what the explorers need to know about a model.

An adapter turns a raw input into the explored tensor x0 of shape (segments, width) and runs the
rest of the model from any x of that shape to a logit vector (q,). It never mutates the model:
weights are read through ``torch.func.functional_call`` with detached copies in the requested
dtype/device, and any hook lives only for one call (removed in ``finally``).

The protocol (``ModelAdapter``; everything other layers may use, nothing else):

* ``labels``, ``device``, ``dtype``: output names, where and in which precision it runs;
* ``prepare(raw)``: validate a raw input and embed it -> ``PreparedInput`` (x0, segment names);
* ``logits(x, prepared)``: the model run from an explored point x (segments, width) -> (q,);
* ``classify(raws)``: probabilities (m, q) of the model on raw inputs (the distribution an
  exploration starts from);
* ``run(model_inputs)``: logits of the whole model on a batch of its own inputs
  (``PreparedInput.model_inputs``: pixel values, token ids); Hugging Face adapters only;
* ``model_inputs(prepared)``: the model's own inputs for a prepared input (also in pixel space);
* ``eager_copy()``: a cached eager-attention copy of the model, for attention-map explainers;
  Hugging Face adapters only (the user's model is never modified);
* ``describe()``: a JSON-able description recorded next to every run.

Capabilities (what other layers ask instead of "which adapter class is this?"; every adapter
answers them, most with a default, so a new kind of model only has to give its own answers):

* ``modality``: what a raw input is: ``"image"``, ``"text"`` or ``"tensor"`` (an embedding
  tensor already; ``TorchAdapter``);
* ``task``: what the logits are: ``"classifier"`` (class scores), ``"masked-lm"`` (the top-k
  tokens at a [MASK]) or ``"backbone"`` (no head: hidden states only, nothing to explore);
* ``tokenizer``: the model's tokenizer (text models), None when it reads no text;
* ``patch_size``: the side in pixels of the square patches an image is cut into, None when the
  model has no patches;
* ``model``: the wrapped ``nn.Module`` (read, never modified), None when there is none;
* ``read_input(arg)``: a command-line ``--input`` -> the raw input ``prepare`` takes (a text
  model reads a .txt file; others take the argument itself, e.g. an image path);
* ``embedding_bounds()``: analytic (lower, upper) bounds of the embedding layer's output over
  every valid input (the final version's feasible box); ``ModelError`` where not known.

The Hugging Face adapters add ``weights``, ``submodule_weights(module)`` and
``embedding_module`` (``hf_base.HFAdapter``); the vision adapter adds pixel geometry,
normalisation and ``patch_embedding()`` (``hf_vision``). Modules outside ``models/`` never touch
an adapter's underscore members (``tests/test_layering.py`` checks it) and never test its class
(``tests/test_capabilities.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import InputError, ModelError

__all__ = ["ModelAdapter", "PreparedInput", "replace_module_output", "check_finite"]


@dataclass
class PreparedInput:
    """One input ready to explore.

    ``embeddings`` is x0 (segments, width); ``model_inputs`` holds whatever else the model needs
    (pixel values, token ids, attention mask); ``segment_names`` label the rows of x0.
    """

    embeddings: Tensor
    segment_names: list[str]
    model_inputs: dict[str, Tensor] = field(default_factory=dict)
    description: str = ""
    #: for text given as a list of words: the word index of each segment (None for specials)
    word_ids: list[int | None] | None = None
    #: names of the outputs when they depend on the input (a masked LM's top-k tokens);
    #: None means the adapter's own ``labels``
    labels: list[str] | None = None
    #: anything else an adapter needs to run this input (not passed to the model)
    extras: dict[str, Any] = field(default_factory=dict)

    def output_labels(self, adapter: ModelAdapter) -> list[str]:
        return list(self.labels) if self.labels is not None else list(adapter.labels)

    @property
    def num_segments(self) -> int:
        return int(self.embeddings.shape[0])


def check_finite(t: Tensor, what: str) -> None:
    if not torch.isfinite(t).all():
        raise InputError(f"{what} contains NaN or Inf values")


class ModelAdapter(ABC):
    """Base class for model adapters (see module docstring)."""

    #: names of the output classes, index-aligned with the logits
    labels: list[str]
    device: torch.device
    dtype: torch.dtype

    # -- capabilities (see the module docstring) ------------------------------------------
    #: what a raw input is: "image", "text" or "tensor" (already an embedding tensor)
    modality: ClassVar[str] = "tensor"
    #: the model's tokenizer (text models); None when the model reads no text
    tokenizer: Any = None
    #: side in pixels of the square patches an image is cut into; None without patches
    patch_size: int | None = None
    #: the wrapped module (read, never modified); None when the adapter wraps a plain function
    model: nn.Module | None = None

    @property
    def task(self) -> str:
        """What the logits are: "classifier" (class scores), "masked-lm" (top-k tokens at the
        mask) or "backbone" (no head: the model runs to hidden states only)."""
        return "classifier"

    def read_input(self, arg: str) -> Any:
        """A command-line input (``--input``) -> the raw input ``prepare`` takes. Default: the
        argument itself (a path the adapter reads, or a value it validates)."""
        return arg

    def embedding_bounds(self) -> tuple[Tensor, Tensor]:
        """Analytic bounds (lower, upper), each (width,), of the explored embedding over every
        valid input (``ExploreConfig.box="embedding-bounds"``). Adapters that cannot bound
        their embedding raise ``ModelError``."""
        raise ModelError(
            f"box='embedding-bounds' knows Hugging Face ViT and BERT-family adapters, not "
            f"{type(self).__name__}: pass box=(lower, upper) to explore()"
        )

    @abstractmethod
    def prepare(self, raw: Any) -> PreparedInput:
        """Validate a raw input and embed it into the explored space."""

    @abstractmethod
    def logits(self, x: Tensor, prepared: PreparedInput) -> Tensor:
        """Logits (q,) of the model run from the explored tensor x (segments, width)."""

    def logits_many(self, xs: Tensor, prepared: PreparedInput) -> Tensor:
        """Logits (B, q) at B explored tensors xs (B, segments, width) of one prepared input:
        ``logits`` vmapped (adapters that can run a real batch override it)."""
        import warnings

        from torch.func import vmap

        with warnings.catch_warnings():  # torch's "no batching rule": the fallback is exact
            warnings.filterwarnings("ignore", message=r".*(batching rule|performance drop).*")
            return vmap(lambda x: self.logits(x, prepared))(xs)

    @torch.no_grad()
    def classify(self, raws: Sequence[Any], *, batch_size: int = 32) -> Tensor:
        """Probabilities (m, q) over ``labels`` for m raw inputs.

        Row i is the softmax of ``logits`` at input i's x0: the output distribution an
        exploration of that input starts from. This generic version prepares the inputs one
        at a time (``batch_size`` is for adapters that batch, which override it).
        """
        if isinstance(raws, (str, bytes)) or len(raws) == 0:
            raise InputError("classify takes a non-empty list of inputs")
        rows = []
        for raw in raws:
            prepared = self.prepare(raw)
            rows.append(torch.softmax(self.logits(prepared.embeddings, prepared), -1))
        return torch.stack(rows)

    def run(self, model_inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits of the whole model on a batch of its own inputs (``PreparedInput.model_inputs``
        with a batch axis: pixel values, token ids, masks), through the adapter's weights."""
        raise ModelError(f"{type(self).__name__} runs only from the explored tensor (logits)")

    def model_inputs(self, prepared: PreparedInput) -> dict[str, Tensor]:
        """The model's own inputs (batch of one) that give ``prepared``'s x0, for ``run`` or
        the model itself (``eager_copy()(**inputs)``)."""
        if not prepared.model_inputs:
            raise InputError(f"{type(self).__name__} does not expose the model's inputs")
        return dict(prepared.model_inputs)

    def eager_copy(self) -> nn.Module:
        """A copy of the model with eager attention (attention maps), made once and cached."""
        raise InputError("attention explainers need a Hugging Face model adapter")

    def describe(self) -> dict[str, Any]:
        """A JSON-able description recorded next to every run."""
        return {"adapter": type(self).__name__}


def parameter_copies(model: nn.Module, device: torch.device, dtype: torch.dtype) -> dict:
    """Detached parameters and buffers in the requested dtype (floating point only) and device.

    Shares memory with the model when nothing needs converting, so this costs nothing in the
    common case and never touches the user's module.
    """
    out = {}
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        t = t.detach()
        out[name] = t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device)
    return out


@contextmanager
def replace_module_output(module: nn.Module, value: Tensor) -> Iterator[None]:
    """Within the block, ``module(...)`` returns ``value`` instead of its own output."""

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (value, *output[1:])
        return value

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def capture_module_output(module: nn.Module) -> Iterator[list[Tensor]]:
    """Within the block, the outputs of ``module`` are appended to the yielded list."""
    seen: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        seen.append(output[0] if isinstance(output, tuple) else output)

    handle = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device {device!r} is not supported: use 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {device!r} was requested but no CUDA device is available: use --device cpu"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(
            f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} "
            "CUDA device(s)"
        )
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    table = {"float32": torch.float32, "float64": torch.float64}
    if isinstance(dtype, torch.dtype):
        if dtype not in table.values():
            raise InputError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    try:
        return table[dtype]
    except KeyError:
        raise InputError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode (no dropout) and give the model back in the mode it was in."""
    if not model.training:
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
