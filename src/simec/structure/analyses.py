"""Structure of the embedding space (Salman et al., "Intriguing equivalence structures of the
embedding space of vision transformers", arXiv 2401.15568): Jacobian spectra and numerical null
spaces, local directional Lipschitz constants, and embedding matching by gradient descent.

Every routine takes a function f: input tensor -> embedding vector (m,), e.g. the CLS
representation or the logits of a model as a function of its pixels (``vision_embedding_fn``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import InputError
from ..geometry.jacobian import jacobian
from ..models.hf_vision import HFImageClassifierAdapter

__all__ = [
    "JacobianSpectrum",
    "LipschitzResult",
    "MatchResult",
    "directional_lipschitz",
    "jacobian_spectrum",
    "match_embedding",
    "vision_embedding_fn",
]

Fn = Callable[[Tensor], Tensor]


KINDS = ("cls", "pooled", "logits")


def vision_embedding_fn(adapter: HFImageClassifierAdapter, kind: str = "cls") -> Fn:
    """f(normalised pixels (C, H, W)) -> the model's CLS representation, pooled output or logits.

    The rules are the same for every architecture (``simec.models.architectures``):

    - ``cls``: the last encoder layer's output at the classification token (token 0, before the
      final LayerNorm: ViT, DeiT, BEiT, ViT-MAE, ViT-MSN, CLIP); for architectures without one
      (Swin) the backbone's ``pooler_output``, the vector its classifier reads.
    - ``pooled``: the mean over all tokens (special tokens included) of the last encoder
      layer's output.
    - ``logits``: the classification head's logits; an ``InputError`` for models without one
      (ViT-MAE, ``CLIPVisionModel``).

    ``cls`` and ``pooled`` run the backbone only (the model without its head).
    """
    if kind not in KINDS:
        raise InputError(f"kind must be 'cls', 'pooled' or 'logits', got {kind!r}")
    if kind == "logits" and not adapter.has_head:
        raise InputError(
            f"kind='logits' needs a classification head and {type(adapter.model).__name__} has "
            "none: use 'cls' or 'pooled'"
        )
    if kind == "cls" and not adapter.architecture.cls_token:
        # fail now rather than at the first call if the backbone has no pooler
        probe = torch.zeros(1, adapter.num_channels, *adapter.image_size, dtype=adapter.dtype)
        with torch.no_grad():
            out = adapter.backbone_outputs(probe.to(adapter.device))
        if getattr(out, "pooler_output", None) is None:
            raise InputError(
                f"{type(adapter.model).__name__} has no classification token and no pooler "
                "output: use 'pooled'"
            )

    def fn(pixels: Tensor) -> Tensor:
        pixels = pixels.to(adapter.device, adapter.dtype)  # a CPU image, a model on the GPU
        if kind == "logits":
            return adapter.run({"pixel_values": pixels.unsqueeze(0)})[0]
        out = adapter.backbone_outputs(pixels.unsqueeze(0))
        if kind == "pooled":
            return out.hidden_states[-1][0].mean(0)
        if adapter.architecture.cls_token:
            return out.hidden_states[-1][0, 0]
        return out.pooler_output[0]

    return fn


@dataclass
class JacobianSpectrum:
    singular_values: Tensor  # descending, min(m, n) of them
    input_dim: int
    output_dim: int
    null_dims: dict[float, int]  # relative tolerance -> dim of the numerical null space

    @property
    def normal_dim(self) -> int:
        return self.input_dim - min(self.null_dims.values()) if self.null_dims else 0


def jacobian_spectrum(
    fn: Fn, x: Tensor, *, tolerances: Sequence[float] = (1e-2, 1e-4, 1e-6)
) -> JacobianSpectrum:
    """Singular values of J = df/dx and the numerical null-space dimension per tolerance.

    The null space at tolerance t is spanned by the right singular vectors with
    sigma < t * sigma_max, plus the n - m directions a wide Jacobian (m < n) always annihilates.
    """
    y, jac = jacobian(fn, x)[:2]
    j = jac.reshape(y.shape[0], -1)
    s = torch.linalg.svdvals(j)
    n, m = j.shape[1], j.shape[0]
    top = float(s[0]) if s.numel() else 0.0
    null = {t: int(n - (s > t * top).sum()) for t in tolerances}
    return JacobianSpectrum(s.detach().cpu(), n, m, null)


@dataclass
class LipschitzResult:
    epsilons: list[float]
    random: Tensor  # (len(epsilons), directions)
    optimized: Tensor  # (len(epsilons),)
    sigma_max: float

    def ratio(self) -> Tensor:
        """Optimised over the mean random constant, per epsilon."""
        return self.optimized / self.random.mean(dim=1)


def _quotient(fn: Fn, x: Tensor, fx: Tensor, v: Tensor, eps: float) -> Tensor:
    return torch.linalg.vector_norm(fn(x + eps * v) - fx) / eps


# defaults of directional_lipschitz, shared with `simec structure lipschitz`
LIPSCHITZ_EPSILONS: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
LIPSCHITZ_DIRECTIONS = 32
LIPSCHITZ_ASCENT_STEPS = 50


def directional_lipschitz(
    fn: Fn,
    x: Tensor,
    *,
    epsilons: Sequence[float] = LIPSCHITZ_EPSILONS,
    directions: int = LIPSCHITZ_DIRECTIONS,
    ascent_steps: int = LIPSCHITZ_ASCENT_STEPS,
    seed: int = 0,
) -> LipschitzResult:
    """||f(x + eps v) - f(x)|| / eps for random unit v, and for v maximising it.

    The maximisation starts from the top right singular vector of J (the exact answer as eps
    -> 0) and follows projected gradient ascent on the unit sphere.
    """
    gen = torch.Generator(device=x.device).manual_seed(seed)
    with torch.no_grad():
        fx = fn(x)
    y, jac = jacobian(fn, x)[:2]
    _, s, vh = torch.linalg.svd(jac.reshape(y.shape[0], -1), full_matrices=False)
    rand = torch.empty(len(epsilons), directions, dtype=torch.float64)
    best = torch.empty(len(epsilons), dtype=torch.float64)
    for i, eps in enumerate(epsilons):
        with torch.no_grad():
            for d in range(directions):
                v = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
                v = v / torch.linalg.vector_norm(v)
                rand[i, d] = float(_quotient(fn, x, fx, v, eps))
        v = vh[0].reshape(x.shape).clone()
        value = float(_quotient(fn, x, fx, v, eps))
        step = 0.1
        for _ in range(ascent_steps):
            v_req = v.detach().requires_grad_(True)
            with torch.enable_grad():
                q = _quotient(fn, x, fx, v_req, eps)
                (g,) = torch.autograd.grad(q, v_req)
            g = g - (g * v).sum() * v  # tangent to the sphere
            candidate = v + step * g / (torch.linalg.vector_norm(g) + 1e-30)
            candidate = candidate / torch.linalg.vector_norm(candidate)
            new = float(_quotient(fn, x, fx, candidate, eps))
            if new > value:
                v, value = candidate.detach(), new
                step *= 1.2
            else:
                step *= 0.5
        best[i] = value
    return LipschitzResult(list(epsilons), rand, best, float(s[0]))


@dataclass
class MatchResult:
    result: Tensor
    relative_error: float
    cosine: float
    l2: float
    linf: float
    iterations: int
    seconds: float
    converged: bool
    history: list[float] = field(default_factory=list)


def match_embedding(
    fn: Fn,
    source: Tensor,
    target: Tensor,
    *,
    box: tuple[float, float] | None = (0.0, 1.0),
    tolerance: float = 1e-3,
    max_steps: int = 2000,
    lr: float | None = None,
    to_model: Callable[[Tensor], Tensor] | None = None,
) -> MatchResult:
    """Move ``source`` (in the box) until fn(source') matches fn(target): MSE, Adam, projection.

    Stops when ||f(x) - f(t)|| / ||f(t)|| <= ``tolerance`` or after ``max_steps``. The learning
    rate starts at ``lr`` (default: 1% of the box width) and halves whenever the loss has not
    improved for 50 steps, so no per-model tuning is needed. ``to_model`` maps the optimised
    variable to the model input (e.g. [0, 1] pixels -> normalised pixels).
    """
    to_model = to_model or (lambda t: t)
    with torch.no_grad():
        goal = fn(to_model(target))
    scale = float(torch.linalg.vector_norm(goal)) or 1.0
    width = (box[1] - box[0]) if box else float(source.abs().max() or 1.0)
    x = source.clone().detach().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr or 0.01 * width)
    best, since, history = math.inf, 0, []
    t0 = time.perf_counter()
    converged = False
    for _ in range(max_steps):
        with torch.enable_grad():
            out = fn(to_model(x))
            loss = ((out - goal) ** 2).mean()
        rel = float(torch.linalg.vector_norm(out.detach() - goal)) / scale
        history.append(rel)
        if rel <= tolerance:
            converged = True
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
        if box is not None:
            with torch.no_grad():
                x.clamp_(box[0], box[1])
        best, since = _halve_on_plateau(opt, rel, best, since)
    with torch.no_grad():
        out = fn(to_model(x))
    rel = float(torch.linalg.vector_norm(out - goal)) / scale
    cos = float(torch.nn.functional.cosine_similarity(out.flatten(), goal.flatten(), dim=0))
    diff = (x.detach() - source).flatten()
    return MatchResult(
        result=x.detach(),
        relative_error=rel,
        cosine=cos,
        l2=float(torch.linalg.vector_norm(diff)),
        linf=float(diff.abs().max()),
        iterations=len(history),
        seconds=time.perf_counter() - t0,
        converged=converged or rel <= tolerance,
        history=history,
    )


def _halve_on_plateau(
    opt: torch.optim.Optimizer, rel: float, best: float, since: int
) -> tuple[float, int]:
    """(best, steps since it improved), the learning rate halved after 50 steps without a
    relative improvement of 1e-4."""
    if rel < best * (1 - 1e-4):
        return rel, 0
    since += 1
    if since >= 50:
        for group in opt.param_groups:
            group["lr"] *= 0.5
        since = 0
    return best, since
