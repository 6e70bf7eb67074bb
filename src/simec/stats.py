"""Summary statistics shared by the experiments, evaluations and structure commands."""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MeanStd", "mean_std"]


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation of ``n`` finite values (nan, nan, 0 if none)."""

    mean: float
    std: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "n": self.n}

    def text(self, mean: str = ".4g", std: str = ".3g", *, empty: str = "n/a") -> str:
        """``"mean ± std"`` in the given formats, ``empty`` when there were no finite values."""
        if not self.n:
            return empty
        return f"{self.mean:{mean}} ± {self.std:{std}}"


def mean_std(values: Iterable[object]) -> MeanStd:
    """Mean and sample std (n - 1) of the finite numbers among ``values``.

    Non-numbers (and booleans), nan and ±inf are left out; one finite value has std 0;
    none gives nan, nan, 0.
    """
    finite = [
        float(v)
        for v in values
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    ]
    if not finite:
        return MeanStd(math.nan, math.nan, 0)
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return MeanStd(statistics.fmean(finite), sd, len(finite))
