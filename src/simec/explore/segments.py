"""Algorithm 4 of the SiMEC paper: exploring the embedding space segment by segment.

Lines 4-6 (segments and their embeddings x^e) are the adapter's ``prepare``: the rows of
``PreparedInput.embeddings`` are the segments (tokens, patches). Line 5 (choose the segments P
to update, keep the others unchanged) and line 7 (run SiMEC or SiMExp on x^e, updating only the
rows in P) are ``Segments``: the walk moves the explored rows only, the model sees them
written back into the fixed ones (``full``), so the Jacobian is taken with respect to the rows
in P alone. Line 8 (one modified embedding per iteration) is the result's ``trajectory``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["Segments", "resolve_rows"]


def resolve_rows(segments: tuple[int, ...] | None, count: int, device: torch.device) -> Tensor:
    """The sorted, distinct rows P (line 5); ``None`` means every segment."""
    if segments is None:
        return torch.arange(count, device=device)
    bad = [s for s in segments if not -count <= s < count]
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise InputError(
            f"segments {shown} out of range: the input has {count} segments (0..{count - 1})"
        )
    rows = sorted({s % count for s in segments})
    return torch.tensor(rows, device=device)


@dataclass(frozen=True)
class Segments:
    """The explored rows P of the embeddings x0 (segments, width); the others stay fixed."""

    x0: Tensor
    rows: Tensor
    all_rows: bool

    @classmethod
    def select(cls, x0: Tensor, segments: tuple[int, ...] | None) -> Segments:
        rows = resolve_rows(segments, x0.shape[0], x0.device)
        return cls(x0, rows, len(rows) == x0.shape[0])

    def full(self, xs: Tensor, x0: Tensor | None = None) -> Tensor:
        """The whole input: the explored rows ``xs`` (|P|, width) written into x0 (line 7);
        ``x0``: another input's embeddings with the same rows (one input of a batch)."""
        x0 = self.x0 if x0 is None else x0
        return xs if self.all_rows else x0.index_copy(0, self.rows, xs)

    def full_many(self, xs: Tensor) -> Tensor:
        """``full`` of B points at once: (B, |P|, width) -> (B, segments, width)."""
        if self.all_rows:
            return xs
        return self.x0.expand(len(xs), *self.x0.shape).index_copy(1, self.rows, xs)
