"""Compare a golden case's results with the stored ones; describe the environment.

``mismatches`` returns every field that differs beyond the tolerance (empty: the case
reproduces). Tolerances (see ``test_golden``'s docstring for why):

* float64: ``|got - want| <= RTOL64 * max(1, |want|)`` for every number; with ``exact=True``
  (``SIMEC_GOLDEN_EXACT=1``, or ``SIMEC_GOLDEN_BASELINE=DIR``) bit for bit, NaN equal to NaN in
  the same places.
* float32: tensors to ``ATOL32`` absolute; the float list fields to 1e-5 relative + 1e-6 absolute.
* discrete list fields: equal.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from tests.golden.cases import DATA, LIST_FIELDS, freeze

#: float64 tolerance, relative to max(1, |want|)
RTOL64 = 1e-12
#: float32 tolerance of the tensors, absolute
ATOL32 = 1e-6
#: the list fields that hold floats (compared with a tolerance unless exact)
FLOAT_LIST_FIELDS = ("lambda_max", "step_sizes", "drift", "uncorrected_drift")
ENVIRONMENT = "environment.json"
EXACT_VARIABLE = "SIMEC_GOLDEN_EXACT"


@dataclass(frozen=True)
class Mismatch:
    """One field of one case beyond the tolerance: its largest absolute difference and the
    largest difference relative to max(1, |want|) (NaN when the field's shape or a discrete
    value differs)."""

    field: str
    worst_absolute: float
    worst_relative: float
    detail: str = ""

    def __str__(self) -> str:
        if self.detail:
            return f"{self.field}: {self.detail}"
        return (
            f"{self.field}: max |got - want| = {self.worst_absolute:.3g}, "
            f"relative to max(1, |want|) {self.worst_relative:.3g}"
        )


BASELINE_VARIABLE = "SIMEC_GOLDEN_BASELINE"


def exact_mode() -> bool:
    """True when ``SIMEC_GOLDEN_EXACT`` or ``SIMEC_GOLDEN_BASELINE`` asks for bit-for-bit
    comparison."""
    flag = os.environ.get(EXACT_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")
    return flag or bool(os.environ.get(BASELINE_VARIABLE))


def golden_dir() -> Path:
    """Where the goldens compared against live: ``tests/golden/data``, or the folder that
    ``SIMEC_GOLDEN_BASELINE`` names (a baseline recorded on this machine with
    ``python -m tests.golden.record --out DIR`` before a refactor)."""
    baseline = os.environ.get(BASELINE_VARIABLE)
    return Path(baseline) if baseline else DATA


def _tensor_mismatch(key: str, got: torch.Tensor, want: torch.Tensor, exact: bool):
    if got.dtype != want.dtype or got.shape != want.shape:
        shapes = f"{got.dtype} {tuple(got.shape)} vs {want.dtype} {tuple(want.shape)}"
        return Mismatch(key, math.nan, math.nan, f"dtype/shape {shapes}")
    got64, want64 = got.double(), want.double()
    nan_got, nan_want = torch.isnan(got64), torch.isnan(want64)
    if not torch.equal(nan_got, nan_want):
        return Mismatch(key, math.nan, math.nan, "NaN in other places")
    finite = ~nan_want
    diff = (got64 - want64).abs()[finite]
    scale = want64.abs()[finite].clamp(min=1.0)
    worst_abs = float(diff.max()) if diff.numel() else 0.0
    worst_rel = float((diff / scale).max()) if diff.numel() else 0.0
    if exact:
        bad = not torch.equal(got[~nan_got], want[~nan_want])
    elif want.dtype == torch.float64:
        bad = worst_rel > RTOL64
    else:
        bad = worst_abs > ATOL32
    return Mismatch(key, worst_abs, worst_rel) if bad else None


def _numbers(value: Any) -> list[float | None]:
    """The numbers of a (nested) list field, flattened, None kept as None."""
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return [value if value is None else float(value)]


def _list_mismatch(name: str, got: Any, want: Any, exact: bool, dtype: str):
    if name not in FLOAT_LIST_FIELDS:
        return None if got == want else Mismatch(name, math.nan, math.nan, "values differ")
    a, b = _numbers(got), _numbers(want)
    if len(a) != len(b) or any((x is None) != (y is None) for x, y in zip(a, b)):
        return Mismatch(name, math.nan, math.nan, "length or missing values differ")
    worst_abs = worst_rel = 0.0
    bad = exact and got != want  # JSON floats round-trip exactly: == is bit identity
    for x, y in zip(a, b):
        if x is None or y is None or (math.isnan(x) and math.isnan(y)):
            continue
        d = abs(x - y)
        worst_abs, worst_rel = max(worst_abs, d), max(worst_rel, d / max(1.0, abs(y)))
        if exact:
            continue
        if dtype == "float64":
            bad |= not d <= RTOL64 * max(1.0, abs(y))
        else:
            bad |= not d <= 1e-5 * abs(y) + 1e-6
    return Mismatch(name, worst_abs, worst_rel) if bad else None


def mismatches(
    name: str, results: list, dtype: str, *, exact: bool, data: Path | None = None
) -> list[Mismatch]:
    """Every field of case ``name`` in which ``results`` differ from the golden data in
    ``data`` (default: :func:`golden_dir`)."""
    data = golden_dir() if data is None else data
    tensors, lists = freeze(results)
    want_tensors = load_file(str(data / f"{name}.safetensors"))
    want_lists = json.loads((data / f"{name}.json").read_text())
    found: list[Mismatch] = []
    if len(lists) != len(want_lists):
        return [Mismatch("results", math.nan, math.nan, "number of results changed")]
    if set(tensors) != set(want_tensors):
        return [Mismatch("tensors", math.nan, math.nan, "tensor names changed")]
    for key, want in want_tensors.items():
        m = _tensor_mismatch(key, tensors[key], want, exact)
        if m is not None:
            found.append(m)
    # JSON round-trips Python floats exactly (repr), so == is bit-identity for the lists too
    for i, (got, want) in enumerate(zip(lists, want_lists)):
        got = json.loads(json.dumps(got))
        for field in LIST_FIELDS:
            m = _list_mismatch(field, got[field], want[field], exact, dtype)
            if m is not None:
                found.append(m if len(lists) == 1 else replace(m, field=f"{i}.{m.field}"))
    return found


def environment() -> dict[str, str]:
    """The versions and CPU kernels that decide the goldens' rounding."""
    import numpy
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY", ""),
        "machine": platform.machine(),
        "processor": _processor(),
    }


def _processor() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def failure_message(name: str, found: list[Mismatch]) -> str:
    """What a failing golden prints: the mismatches and both environments."""
    mode = "bit for bit" if exact_mode() else f"to {RTOL64:g} relative (float64)"
    where = golden_dir() / ENVIRONMENT
    recorded = json.loads(where.read_text()) if where.exists() else "not recorded"
    lines = [f"{name}: differs from the golden data in {golden_dir()} ({mode}):"]
    lines += [f"  {m}" for m in found[:8]]
    if len(found) > 8:
        lines.append(f"  ... and {len(found) - 8} more fields")
    lines.append(f"  goldens recorded in: {recorded}")
    lines.append(f"  this environment:    {environment()}")
    return "\n".join(lines)
