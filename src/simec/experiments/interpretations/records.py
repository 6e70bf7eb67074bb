"""What one row of the experiment saves (``out/rows/*.json``): both walks and their measures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...interpret.walk_measures import InterpretationRecord

__all__ = [
    "InterpretationRow",
    "WalkRecord",
]


@dataclass(frozen=True)
class WalkRecord:
    """One walk of a row and its measures (``InterpretationRecord.to_dict``, rounded)."""

    algorithm: str
    seconds: float  # the walk's wall time
    measure_seconds: float  # decoding and re-classifying its stored points
    steps_completed: int
    stop_reason: str
    seconds_per_iteration: float
    seconds_per_segment_iteration: float  # the paper's "per patch/token per iteration"
    measures: dict[str, Any]

    def record(self) -> InterpretationRecord:
        return InterpretationRecord.from_dict(self.measures)


@dataclass(frozen=True)
class InterpretationRow:
    """SiMEC and SiMExp on one input, repetition, eta and segment set (``out/rows/*.json``)."""

    kind: str  # vision | text
    input_id: str
    index: int  # in the data set
    label: int
    predicted: int  # on the original input
    repetition: int
    seed: int
    eta: float
    segment_set: str
    segments: list[int]
    simec: WalkRecord
    simexp: WalkRecord
    rho_v: list[float | None]  # M4 per explored segment (None: not finite)
    load_average: list[float]  # 1/5/15-minute load averages when the row was done
    # M4's Welch samples: each walk's log10 cuboid volume per explored segment ("simexp",
    # "simec"; None: a flat walk); None in rows made before they were stored
    log10_volumes: dict[str, list[float | None]] | None = None
    # where the row was made (``row_machine``: cpu, cpu_count, device, gpu, torch_threads), so
    # a table over rows from several machines can say which; None in rows made before
    machine: dict[str, Any] | None = None
