"""The walk loop: Jacobians and spectra of many walks at once, then one step of each.

``drive`` is the one loop every walk runs (one input or a batch, a fresh Jacobian every step or
a reused one): at the current point of each walk the model is evaluated (``Evaluation``), the
walker accepts the point (``Walker.accept``), then proposes the next step (``Walker.propose``,
made by the walk's stepper). It steps walks in lockstep: their Jacobians are computed as one
batch (``batched_jacobian``) and their low-rank spectra as one batch (``lowrank_spectra``),
then every walk takes its own step with its own generator, through the same code as a single
run. So B inputs explored together give the results of B separate runs with the same seeds, up
to the round-off of batched kernels.

Host reads: everything a step needs on the host (whether the point, the output and the
Jacobian are finite, the largest singular value, the rank, the distance from the start) is
packed into one small tensor and read back once per step for the whole batch; per-step records
(probabilities, drift, points) stay on the model's device until the run ends.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from itertools import chain
from typing import Any

import torch
from torch import Tensor

from ..geometry.blocks import BlockSpectra
from ..geometry.jacobian import batched_jacobian, jacobian
from ..geometry.pullback import pullback_factors
from ..geometry.spectrum import lowrank_spectra, pullback_spectrum
from .blocks import block_summaries, token_spectra
from .model_input import Batching, BatchInputs, ModelInput, split_extras, stacked_inputs
from .stepper import Evaluation, Status
from .walker import Walker

__all__ = [
    "JacobianFn",
    "batch_key",
    "block_statuses",
    "drive",
    "drive_group",
    "single_jacobian",
]

JacobianFn = Callable[[list[Walker]], tuple[Tensor, Tensor, Tensor]]


Spectra = tuple[list[Status], list[Tensor], list[Tensor]]


def _lowrank_statuses(
    a: Tensor, point_ok: Tensor, finite: Tensor, distance: Tensor, rtol: float | None
) -> Spectra:
    spectra = lowrank_spectra(a, rtol=rtol)
    rank = spectra.rank
    # the smallest kept singular value (that of row 0 at rank 0, reported as 0 below)
    smallest = spectra.singular_values.gather(1, (rank - 1).clamp(min=0)[:, None])[:, 0]
    packed = torch.stack(
        [
            point_ok.to(torch.float64),
            (finite & spectra.finite).to(torch.float64),
            spectra.singular_values[:, 0].to(torch.float64),
            rank.to(torch.float64),
            distance.to(torch.float64),
            smallest.to(torch.float64),
        ],
        dim=1,
    ).tolist()
    out = [
        Status(bool(p), bool(f), s**2, int(r), d, m**2 if r > 0 else 0.0)
        for p, f, s, r, d, m in packed
    ]
    return out, list(spectra.vectors.unbind(0)), list(spectra.singular_values.unbind(0))


def _exact_statuses(
    walk: Walker, a: Tensor, point_ok: Tensor, finite: Tensor, distance: Tensor
) -> Spectra:
    """One eigendecomposition per walk of g = (G^1/2 J)^T (G^1/2 J), from the factors ``a``
    already formed for the batch (each reads its spectrum back; O(n^3) dominates)."""
    packed = torch.stack(
        [point_ok.to(torch.float64), finite.to(torch.float64), distance.to(torch.float64)], 1
    ).tolist()
    statuses, vectors, singular = [], [], []
    for i, (p, f, d) in enumerate(packed):
        lam, rank, vec, low = 0.0, 0, a.new_zeros(a.shape[2], 0), 0.0
        values = a.new_zeros(0)
        if p and f:
            # G is already applied: the identity metric takes the factor as it is
            spec = pullback_spectrum(
                a[i], metric="euclidean-logits", method="exact", rtol=walk.cfg.rtol
            )
            lam, rank, vec = spec.lambda_max, spec.rank, spec.eigenvectors
            values = spec.eigenvalues.clamp(min=0).sqrt()
            low = float(spec.eigenvalues[-1]) if rank else 0.0
        statuses.append(Status(bool(p), bool(f), lam, rank, d, low))
        vectors.append(vec)
        singular.append(values)
    return statuses, vectors, singular


def _factors(walks: list[Walker], y: Tensor, jac: Tensor) -> tuple[Tensor, ...]:
    """(G^1/2 J (B, q, n), point finite, output and Jacobian finite, ||x - x0||) per walk."""
    metric = walks[0].setup.metric
    count, q = y.shape
    flat = jac.reshape(count, q, -1)
    xs = torch.stack([w.x for w in walks])
    starts = torch.stack([w.setup.start for w in walks])
    point_ok = torch.isfinite(xs).flatten(1).all(dim=1)
    distance = torch.linalg.vector_norm((xs - starts).flatten(1), dim=1)
    a = pullback_factors(flat, y, metric)
    finite = torch.isfinite(y).all(dim=1) & torch.isfinite(flat).flatten(1).all(dim=1)
    return a, point_ok, finite, distance


def statuses(walks: list[Walker], y: Tensor, jac: Tensor) -> Spectra:
    """Spectra of every walk's pullback metric and the host facts of its step, one read-back:
    statuses, eigenvectors (n, >= rank) and singular values of G^1/2 J (descending)."""
    cfg = walks[0].cfg
    a, point_ok, finite, distance = _factors(walks, y, jac)
    if cfg.method == "lowrank":
        return _lowrank_statuses(a, point_ok, finite, distance, cfg.rtol)
    finite = finite & torch.isfinite(a).flatten(1).all(dim=1)
    return _exact_statuses(walks[0], a, point_ok, finite, distance)


def block_statuses(
    walks: list[Walker], y: Tensor, jac: Tensor
) -> tuple[list[Status], list[BlockSpectra]]:
    """``metric_blocks="token"``: the per-token block spectra of every walk's metric
    (``simec.explore.blocks``) and the host facts of its step, one read-back. The status holds
    the largest lambda_max over the blocks, the sum of their ranks, their smallest non-null
    eigenvalue."""
    a, point_ok, finite, distance = _factors(walks, y, jac)
    finite = finite & torch.isfinite(a).flatten(1).all(dim=1)
    cfg = walks[0].cfg
    spectra = token_spectra(a, int(walks[0].x.shape[-1]), cfg.rtol, cfg.atol)
    summary = block_summaries(spectra).to(torch.float64)
    packed = torch.cat(
        [
            torch.stack([point_ok, finite], 1).to(torch.float64),
            summary,
            distance.to(torch.float64)[:, None],
        ],
        dim=1,
    ).tolist()
    out = [Status(bool(p), bool(f), lam, int(r), d, low) for p, f, lam, r, low, d in packed]
    return out, spectra


def evaluations(walks: list[Walker], jacobian_fn: JacobianFn) -> list[Evaluation]:
    """The model, its Jacobian and the spectrum of g (eq. 5) at each walk's point, batched;
    with ``metric_blocks="token"`` the spectra of its per-token blocks."""
    y, jac, logits = jacobian_fn(walks)
    blocks: list[BlockSpectra | None] = [None] * len(walks)
    if walks[0].cfg.metric_blocks == "token":
        found, spectra = block_statuses(walks, y, jac)
        blocks = list(spectra)
        n = jac[0].numel() // jac.shape[1]
        vectors = [jac.new_zeros(n, 0)] * len(walks)
        singular = [jac.new_zeros(0)] * len(walks)
    else:
        found, vectors, singular = statuses(walks, y, jac)
    out = []
    for i, walk in enumerate(walks):
        walk.cost.jacobians += 1
        flat = jac[i].reshape(jac.shape[1], -1)
        out.append(Evaluation(found[i], y[i], logits[i], flat, vectors[i], singular[i], blocks[i]))
    return out


def drive(walks: list[Walker], jacobian_fn: JacobianFn, bar: Any = None) -> None:
    """Step every walk until it stops or has taken its steps; Ctrl-C stops them all.

    Walks that reuse a Jacobian (``jacobian_reuse``) and do not need a fresh one this
    iteration look at their point with a forward pass only; the others share one batch of
    Jacobians. Then each walk accepts its point and proposes its next step."""
    try:
        while True:
            active = [w for w in walks if w.active]
            if not active:
                break
            before = sum(w.done for w in active)
            fresh = [w for w in active if w.stepper.needs_jacobian]
            reused = [w for w in active if not w.stepper.needs_jacobian]
            found = evaluations(fresh, jacobian_fn) if fresh else []
            looks = chain(zip(fresh, found), ((w, w.stepper.evaluate(w.x)) for w in reused))
            for walk, evaluation in looks:
                if walk.accept(evaluation):  # p_k checked and recorded (line 10)
                    walk.propose(evaluation)  # lines 5-8: the step to p_{k+1}
            if bar is not None:
                bar.update(max(sum(w.done for w in active) - before, 0))
                if found:
                    bar.set_postfix(lmax=f"{found[0].status.lambda_max:.3g}")
    except KeyboardInterrupt:
        for walk in walks:
            if walk.stop_reason is None:
                walk.stop_reason = f"interrupted at step {walk.done}"


def single_jacobian(walk: Walker, use_compile: bool) -> JacobianFn:
    """The Jacobian of one walk (compiled if asked), shaped as a batch of one."""
    cfg = walk.cfg

    def fn(active: list[Walker]) -> tuple[Tensor, Tensor, Tensor]:
        y, jac, logits = jacobian(  # type: ignore[misc]
            walk.setup.model_fn,
            walk.x,
            chunk_size=cfg.chunk_size,
            has_aux=True,
            compile=use_compile,
            max_memory=cfg.max_memory,
        )
        return y[None], jac[None], logits[None]

    return fn


def _signature(value: Any) -> Any:
    if isinstance(value, Tensor):
        return ("tensor", tuple(value.shape), str(value.dtype), str(value.device))
    try:
        hash(value)
        return ("value", value)
    except TypeError:
        return ("object", id(value))


def batch_key(walk: Walker) -> tuple:
    """Walks with equal keys can share one batched Jacobian (same shapes, same fixed values);
    a walk with output restriction has its own classes: a batch of its own."""
    p = walk.setup.prepared
    tensors, others = split_extras(p)
    return (
        tuple(p.embeddings.shape),
        tuple(walk.setup.segments.rows.tolist()),
        tuple(sorted((k, _signature(v)) for k, v in p.model_inputs.items())),
        tuple(sorted((k, _signature(v)) for k, v in tensors.items())),
        tuple(sorted((k, _signature(v)) for k, v in others.items())),
        id(walk) if walk.setup.model_fn.restriction is not None else None,
    )


def batched_jacobian_fn(group: list[Walker]) -> JacobianFn:
    """The Jacobians of a group of walks with one ``batch_key``, as one batch."""
    template = group[0].setup
    adapter, metric, cfg = template.adapter, template.metric, template.cfg
    batch = BatchInputs(ModelInput(template.prepared, template.segments))
    use_compile = cfg.use_compile()  # one graph per batch shape (a stopped walk shrinks it)

    def per_input(
        xs: Tensor, x0: Tensor, inputs: dict[str, Tensor], extras: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        logits = adapter.logits(*batch.per_input(xs, x0, inputs, extras))
        return metric.output(logits), logits

    cache: dict[tuple[int, ...], tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]] = {}

    def fn(active: list[Walker]) -> tuple[Tensor, Tensor, Tensor]:
        key = tuple(id(w) for w in active)
        if key not in cache:  # the active set changes only when a walk stops
            cache.clear()
            cache[key] = stacked_inputs([w.setup.prepared for w in active])
        x0s, inputs, extras = cache[key]
        xs = torch.stack([w.x for w in active])
        y, jac, logits = batched_jacobian(  # type: ignore[misc]
            per_input,
            xs,
            x0s,
            inputs,
            extras,
            chunk_size=cfg.chunk_size,
            has_aux=True,
            compile=use_compile,
            max_memory=cfg.max_memory,
        )
        return y, jac, logits

    return fn


class _NotBatchable(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def drive_group(group: list[Walker], bar: Any) -> None:
    """Drive walks that share a ``batch_key``: batched, or one at a time if the model cannot be
    vmapped (found on the first call, with a warning)."""
    if len(group) == 1:  # a batch of one is an explore() run, compiled Jacobian included
        drive(group, single_jacobian(group[0], group[0].cfg.use_compile()), bar)
        return
    batched = batched_jacobian_fn(group)
    batching = Batching(first_call_only=True)

    def refused() -> tuple[Tensor, Tensor, Tensor]:
        assert batching.cause is not None
        raise _NotBatchable(batching.cause) from batching.cause

    def fn(active: list[Walker]) -> tuple[Tensor, Tensor, Tensor]:
        return batching.run(lambda: batched(active), refused)

    try:
        drive(group, fn, bar)
    except _NotBatchable as exc:
        warnings.warn(
            f"simec: this model cannot be run as a batch ({type(exc.cause).__name__}: "
            f"{str(exc.cause)[:160]}); exploring the inputs one at a time",
            RuntimeWarning,
            stacklevel=3,
        )
        for walk in group:
            drive([walk], single_jacobian(walk, False), bar)
