"""The training loop every simec trainer shares: shuffled mini-batches, one optimiser step
each, a learning-rate schedule stepped per batch, a progress bar and a per-epoch history."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["fit"]


def fit(
    loss_of: Callable[[Tensor], Tensor],
    *,
    size: int,
    batch_size: int,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    model: nn.Module | None = None,
    validate: Callable[[], dict[str, Any]] | None = None,
    on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
    desc: str = "train",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train for ``epochs`` over ``size`` examples; returns one history entry per epoch.

    Each epoch draws a permutation of ``range(size)`` from ``generator`` and calls
    ``loss_of(indices)`` on consecutive slices of ``batch_size``; the loss is minimised by
    ``optimizer`` and ``scheduler`` steps once per batch. ``model`` (if given) is put in
    training mode at the start of every epoch. An entry holds ``epoch`` (from 1),
    ``train_loss`` (the mean batch loss), what ``validate()`` returns (e.g. a validation
    score) and ``seconds`` since the start; ``on_epoch(history)`` is then called with the
    history so far (to keep the best model, write a log).
    """
    steps = math.ceil(size / batch_size)
    history: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * steps, desc=desc, unit="batch")
    t0 = time.perf_counter()
    try:
        for epoch in range(1, epochs + 1):
            if model is not None:
                model.train()
            order = torch.randperm(size, generator=generator)
            running = 0.0
            for b in range(steps):
                loss = loss_of(order[b * batch_size : (b + 1) * batch_size])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                value = float(loss.detach())
                running += value
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{value:.3f}")
            entry: dict[str, Any] = {"epoch": epoch, "train_loss": running / max(1, steps)}
            if validate is not None:
                entry.update(validate())
            entry["seconds"] = time.perf_counter() - t0
            history.append(entry)
            if on_epoch is not None:
                on_epoch(history)
    finally:
        if bar is not None:
            bar.close()
    return history
