"""The training loop every simec trainer shares: mini-batches, one optimiser step each, a
learning-rate schedule stepped per batch, a progress bar and a history (per epoch, or every
``log_every`` steps).

By default an epoch is a shuffled pass over ``size`` examples in slices of ``batch_size``;
a trainer with its own batching (the masked LM's length buckets) passes ``batches``, and one
that counts fractional epochs passes ``max_steps``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["fit"]


def fit(
    loss_of: Callable[[Any], Tensor],
    *,
    size: int,
    batch_size: int,
    epochs: int | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator | None = None,
    model: nn.Module | None = None,
    validate: Callable[[], dict[str, Any]] | None = None,
    on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
    batches: Callable[[int], Iterable[Any]] | None = None,
    max_steps: int | None = None,
    max_grad_norm: float | None = None,
    log_every: int | None = None,
    desc: str = "train",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train for ``epochs`` over ``size`` examples (or ``max_steps`` steps); returns the history.

    Each epoch draws a permutation of ``range(size)`` from ``generator`` and calls
    ``loss_of(indices)`` on consecutive slices of ``batch_size``; ``batches(epoch)`` (epochs
    count from 1), if given, yields the batches of an epoch instead, each passed to ``loss_of``
    as it is. The loss is minimised by ``optimizer`` (gradients clipped to ``max_grad_norm``
    over the optimiser's parameters, if given) and ``scheduler`` steps once per batch.
    Training stops after ``epochs`` epochs or ``max_steps`` steps, whichever comes first (at
    least one must be given; the last epoch may be cut short). ``model`` (if given) is put in
    training mode at the start of every epoch.

    History: one entry per epoch, holding ``epoch`` (from 1), ``train_loss`` (the mean batch
    loss), what ``validate()`` returns (e.g. a validation score) and ``seconds`` since the
    start; ``on_epoch(history)`` is then called with the history so far (to keep the best
    model, write a log). With ``log_every``: one entry ``{"step", "train_loss"}`` every
    ``log_every`` steps and one at the last step, ``train_loss`` the mean since the entry
    before (``validate`` and ``on_epoch`` are per-epoch and cannot be combined with it).
    """
    if epochs is None and max_steps is None:
        raise ValueError("fit needs epochs or max_steps")
    if log_every is not None and (validate is not None or on_epoch is not None):
        raise ValueError("log_every gives a per-step history: no validate or on_epoch")
    if batches is None and generator is None:
        raise ValueError("fit needs a generator to shuffle the examples (or batches)")
    steps = math.ceil(size / batch_size)
    total = epochs * steps if epochs is not None else max_steps  # (for the progress bar)
    if max_steps is not None:
        total = min(total or max_steps, max_steps)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    history: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, unit="batch")
    t0 = time.perf_counter()
    step = 0
    logged, since = 0.0, 0  # with log_every: the loss summed since the last entry, and its steps
    try:
        for epoch in itertools.count(1):
            if (epochs is not None and epoch > epochs) or (
                max_steps is not None and step >= max_steps
            ):
                break
            if model is not None:
                model.train()
            running, count = 0.0, 0
            for batch in _epoch_batches(epoch, batches, size, batch_size, generator):
                if max_steps is not None and step >= max_steps:
                    break
                loss = loss_of(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(params, max_grad_norm)
                optimizer.step()
                scheduler.step()
                value = float(loss.detach())
                step, count, running = step + 1, count + 1, running + value
                if log_every is not None:
                    logged, since = logged + value, since + 1
                    if step % log_every == 0:
                        history.append({"step": step, "train_loss": logged / since})
                        logged, since = 0.0, 0
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{value:.3f}")
            if not count and epochs is None:
                raise ValueError(f"epoch {epoch} has no batches: it would never reach max_steps")
            if log_every is None:
                entry: dict[str, Any] = {"epoch": epoch, "train_loss": running / max(1, count)}
                if validate is not None:
                    entry.update(validate())
                entry["seconds"] = time.perf_counter() - t0
                history.append(entry)
                if on_epoch is not None:
                    on_epoch(history)
        if log_every is not None and since:
            history.append({"step": step, "train_loss": logged / since})
    finally:
        if bar is not None:
            bar.close()
    return history


def _epoch_batches(
    epoch: int,
    batches: Callable[[int], Iterable[Any]] | None,
    size: int,
    batch_size: int,
    generator: torch.Generator | None,
) -> Iterable[Any]:
    """The batches of one epoch: ``batches(epoch)``, or a shuffled ``range(size)`` in slices."""
    if batches is not None:
        return batches(epoch)
    order = torch.randperm(size, generator=generator)
    return (order[b : b + batch_size] for b in range(0, size, batch_size))
