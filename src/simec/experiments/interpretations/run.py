"""The walks of one row (SiMEC and SiMExp on one input, repetition, eta and segment set),
measured and saved as soon as done, and the run of all rows (resumable)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..._io import cpu_name
from ...errors import InputError
from ...explainers import explain
from ...explore import ExplorationResult, ExploreConfig, explore
from ...interpret.walk_measures import measure_run, run_log_volumes, run_volume_ratios
from .. import start_or_resume
from ..rows import load_rows, make_rows
from .config import InterpretationsConfig, check_config, upgrade_config
from .inputs import Input, Task, load_task
from .records import InterpretationRow, WalkRecord
from .tables import write_tables

__all__ = [
    "choose_segments",
    "run_interpretations",
]


def choose_segments(
    scores: Sequence[float], names: Sequence[str], special: frozenset[str] | set[str]
) -> dict[str, list[int]]:
    """The explored segments of each set: ``all`` (every non-special segment), ``one`` (the
    highest score) and ``q2`` (scores strictly above the median of the non-special ones)."""
    candidates = [i for i, name in enumerate(names) if name not in special]
    if not candidates:
        raise InputError("the input has no segment to explore (all are special)")
    values = np.array([float(scores[i]) for i in candidates])
    median = float(np.median(values))
    top = candidates[int(np.argmax(values))]
    q2 = [i for i, v in zip(candidates, values) if v > median] or [top]
    return {"all": candidates, "one": [top], "q2": q2}


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _walk(
    task: Task, item: Input, ecfg: ExploreConfig, seed: int
) -> tuple[WalkRecord, ExplorationResult]:
    result = explore(task.adapter, item.raw, ecfg, seed=seed)
    if result.stop_reason.startswith("interrupted"):  # Ctrl-C: keep no partial row
        raise KeyboardInterrupt
    t0 = time.perf_counter()
    record = measure_run(result, task.interpreter(result, item.raw))
    done = max(result.steps_completed, 1)
    walk = WalkRecord(
        algorithm=ecfg.algorithm,
        seconds=result.elapsed_seconds,
        measure_seconds=time.perf_counter() - t0,
        steps_completed=result.steps_completed,
        stop_reason=result.stop_reason,
        seconds_per_iteration=result.elapsed_seconds / done,
        seconds_per_segment_iteration=result.elapsed_seconds / done / len(ecfg.segments or ()),
        measures=_rounded(record.to_dict()),
    )
    return walk, result


def _row(
    task: Task,
    cfg: InterpretationsConfig,
    item: Input,
    predicted: int,
    segments: list[int],
    *,
    repetition: int,
    eta: float,
    segment_set: str,
) -> InterpretationRow:
    seed = cfg.seed + 1000 * repetition + item.index
    walks = {}
    results = {}
    for algorithm in ("simec", "simexp"):
        ecfg = cfg.explore_config(algorithm, eta, segments)
        walks[algorithm], results[algorithm] = _walk(task, item, ecfg, seed)
    rho = run_volume_ratios(results["simexp"], results["simec"])
    volumes = run_log_volumes(results["simexp"], results["simec"])
    return InterpretationRow(
        kind=task.kind,
        input_id=item.key,
        index=item.index,
        label=item.label,
        predicted=predicted,
        repetition=repetition,
        seed=seed,
        eta=float(eta),
        segment_set=segment_set,
        segments=list(segments),
        simec=walks["simec"],
        simexp=walks["simexp"],
        rho_v=[float(f"{v:.6g}") if math.isfinite(v) else None for v in rho],
        load_average=[round(v, 2) for v in os.getloadavg()],
        machine=row_machine(cfg.device),
        log10_volumes={
            name: [float(f"{v:.6g}") if math.isfinite(v) else None for v in volumes[k]]
            for k, name in enumerate(("simexp", "simec"))
        },
    )


def row_machine(device: str) -> dict[str, Any]:
    """Where a row is made: CPU model and cores, torch device (and its GPU), torch threads."""
    import torch

    machine: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.device(device).type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return machine


def _row_name(key: str, repetition: int, eta: float, segment_set: str) -> str:
    return f"{key}-r{repetition}-eta{eta:g}-{segment_set}.json"


def run_interpretations(cfg: InterpretationsConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the experiment; writes rows/, table.md, results.json and the M1 figures
    ``m1_<set>_eta<eta>.png``. Returns the aggregate (paths and counts)."""
    from ...report.plots import save_figure

    check_config(cfg)
    task = load_task(cfg)
    if task.mlm is not None:
        cfg = replace(cfg, mlm=task.mlm)  # the masked LM used, recorded in config.json
    out = Path(cfg.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    start_or_resume(out, cfg, upgrade=upgrade_config)
    # segment sets per input, from the attribution method (cheap: one explanation each)
    chosen: dict[str, tuple[int, dict[str, list[int]]]] = {}
    for item in task.inputs:
        explanation = explain(task.adapter, item.raw, cfg.attribution)
        names = explanation.segment_names
        chosen[item.key] = (
            explanation.target,
            choose_segments(explanation.scores.tolist(), names, task.special),
        )
    # input-major within a repetition: a stopped run has every (eta, set) cell for its inputs
    jobs = [
        (rep, eta, s, item)
        for rep in range(cfg.repetitions)
        for item in task.inputs
        for eta in cfg.etas
        for s in cfg.segment_sets
    ]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="interpretations", unit="row")

    def maker(rep: int, eta: float, s: str, item: Input) -> Callable[[], InterpretationRow]:
        predicted, sets = chosen[item.key]
        return lambda: _row(
            task, cfg, item, predicted, sets[s], repetition=rep, eta=eta, segment_set=s
        )

    try:  # several processes may share the folder: each row is made by one of them
        make_rows(
            [
                (out / "rows" / _row_name(item.key, rep, eta, s), maker(rep, eta, s, item))
                for rep, eta, s, item in jobs
            ],
            done=None if bar is None else lambda: bar.update(1),
        )
    finally:
        if bar is not None:
            bar.close()
    wanted = {_row_name(item.key, rep, eta, s) for rep, eta, s, item in jobs}
    rows = [
        r
        for r in load_rows(out / "rows", InterpretationRow)
        if _row_name(r.input_id, r.repetition, r.eta, r.segment_set) in wanted
    ]
    return write_tables(rows, cfg, out, save_figure=save_figure)
