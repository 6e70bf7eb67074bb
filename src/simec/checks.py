"""Checks of values many layers share (seeds), with one-line ``InputError`` messages."""

from __future__ import annotations

from typing import Any

from .errors import InputError

__all__ = ["MAX_SEED", "check_seed"]

#: the largest seed: torch, numpy and Python all take 0 .. 2**63 - 1
MAX_SEED = 2**63 - 1


def check_seed(seed: Any, *, name: str = "seed") -> int:
    """``seed`` if it is a whole number in 0 .. 2**63 - 1, else an ``InputError``."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"{name} must be a whole number, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"{name} must lie in 0 .. 2**63-1, got {seed}")
    return seed
