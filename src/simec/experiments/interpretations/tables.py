"""The markdown tables of the rows (M1, M2/M3, M4, M6, M7, M9, time) beside the final paper's
numbers, results.json and the M1 figures; rewritten from saved rows without computing."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..._io import atomic_write_bytes, atomic_write_json, cpu_name, environment
from ...errors import InputError, ModelError
from ...interpret import measures as m
from ...interpret.walk_measures import InterpretationRecord
from ...stats import mean_std
from ..rows import load_rows
from .config import InterpretationsConfig, config_from_dict
from .plots import plot_original_vs_top
from .records import InterpretationRow

__all__ = [
    "NOTICEABLE",
    "PAPER",
    "PAPER_HARDWARE",
    "summarize",
    "tables_from_rows",
    "write_tables",
]


#: the final paper's numbers (reference 003, section 4); MHS is its hate-speech data set
PAPER: dict[str, dict[str, Any]] = {
    "vision": {
        "dataset": "MNIST",
        "m1_end": {"simec": (0.983, 0.983), "simexp": (0.844, 0.885)},
        "m1_simexp_eta10_orig": {"q2": 0.921, "one": 0.943},
        "m2": {
            ("simec", 1.0): "0.03 (0.18)",
            ("simec", 10.0): "0.07 (0.25)",
            ("simexp", 1.0): "1.31 (1.64)",
            ("simexp", 10.0): "11.91 (11.87)**",
        },
        "m4_t": {1.0: 99.29, 10.0: 28.18},
        "m7_simexp_eta10": {"all": 0.062, "one": 0.026, "q2": 0.041},
        # M6: one figure per algorithm in the main text, its data set, eta and set not stated
        "m6": {"simec": "2.219e-3", "simexp": "83.028e-3"},
        "seconds_per_segment_iteration": "0.050 (0.004)",
    },
    "text": {
        "dataset": "MHS",
        "m1_end": {"simec": (0.884, 0.884), "simexp": (0.439, 0.833)},
        "m1_simexp_eta10_orig": {"q2": 0.429, "all": 0.282},
        "m2": {
            ("simec", 1.0): "0.0",
            ("simec", 10.0): "0.0",
            ("simexp", 1.0): "0.75 (0.89)**",
            ("simexp", 10.0): "3.64 (3.43)**",
        },
        "m4_t": {1.0: 8.76, 10.0: 2.48},
        "m7_simexp_eta10": {"all": 0.795, "one": 0.258, "q2": 0.820},
        "seconds_per_segment_iteration": "0.310 (0.074)",
    },
}


PAPER_HARDWARE = "one NVIDIA H100 (paper)"


# the eta beside which the main text's M1 values (Fig. 2a) are shown: the paper does not state
# Fig. 2a's eta; its other main-text measures (M3, M7) are at eta = 10
M1_MAIN_ETA = 10.0

# M2 beside the paper's count: inversions in which some class reaches this probability
NOTICEABLE = 0.01


def _group(
    rows: Sequence[InterpretationRow], algorithm: str, eta: float, sets: Sequence[str]
) -> list[tuple[InterpretationRow, InterpretationRecord]]:
    return [
        (r, getattr(r, algorithm).record()) for r in rows if r.eta == eta and r.segment_set in sets
    ]


def _ms(values: Sequence[float], digits: int = 3) -> str:
    s = mean_std(values)
    return "–" if not s.n else f"{s.mean:.{digits}f} ({s.std:.{digits}f})"


def _curves(group: list[tuple[InterpretationRow, InterpretationRecord]]) -> dict[str, np.ndarray]:
    """M1 along the walks of a group: mean and sd over runs of p(original) and max p, on the
    evaluated iterations that every run reached."""
    probabilities = _stack(group, "embedding_probabilities")  # (runs, m_min, q)
    pairs = [m.original_vs_top(p, row.predicted) for (row, _), p in zip(group, probabilities)]
    o_arr, t_arr = np.array([o for o, _ in pairs]), np.array([t for _, t in pairs])
    sd = (lambda a: a.std(axis=0, ddof=1)) if len(group) > 1 else (lambda a: np.zeros(a.shape[1]))
    return {
        "steps": np.array(group[0][1].steps[: probabilities.shape[1]]),
        "orig_mean": o_arr.mean(axis=0),
        "orig_sd": sd(o_arr),
        "top_mean": t_arr.mean(axis=0),
        "top_sd": sd(t_arr),
    }


def _per_1000(rec: InterpretationRecord, count: int) -> float:
    return m.per_1000(count, max(rec.iterations, 1))


def _m1_table(rows: Sequence[InterpretationRow], cfg: InterpretationsConfig, paper: dict) -> str:
    lines = [
        "| η | segments | runs | SiMEC orig / top at k=K | SiMExp orig / top at k=K | paper SiMEC | paper SiMExp |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for eta in cfg.etas:
        for s in cfg.segment_sets:
            cells = []
            n = 0
            for alg in ("simec", "simexp"):
                group = _group(rows, alg, eta, [s])
                n = len(group)
                if not group:
                    cells.append("–")
                    continue
                orig = [rec.embedding_probabilities[-1][r.predicted] for r, rec in group]
                top = [max(rec.embedding_probabilities[-1]) for _, rec in group]
                cells.append(f"{_ms(orig)} / {_ms(top)}")
            # the main text's values (Fig. 2a) belong to one setting: shown at that eta only
            main = s == ("all" if paper is PAPER["vision"] else "one") and eta == M1_MAIN_ETA
            pe, px = paper["m1_end"]["simec"], paper["m1_end"]["simexp"]
            p_simec = f"{pe[0]:.3f} / {pe[1]:.3f}" if main else ""
            p_simexp = f"{px[0]:.3f} / {px[1]:.3f}" if main else ""
            if eta == 10 and s in paper["m1_simexp_eta10_orig"]:
                p_simexp = f"{paper['m1_simexp_eta10_orig'][s]:.3f} / –"
            lines.append(
                f"| {eta:g} | {s} | {n} | {cells[0]} | {cells[1]} | {p_simec} | {p_simexp} |"
            )
    return "\n".join(lines)


def _m2_table(rows: Sequence[InterpretationRow], cfg: InterpretationsConfig, paper: dict) -> str:
    sets = list(cfg.segment_sets)
    head = " | ".join(sets)
    lines = [
        f"| | {head} | pooled (text: inversions) | pooled, inversions with a class ≥ {NOTICEABLE:.0%} | pooled (code: positions) | pooled, interpretations | top-1 changes per run, emb / int | Spearman, emb / int | paper |",
        "| --- |" + " --- |" * (len(sets) + 7),
    ]
    for alg in ("simec", "simexp"):
        for eta in cfg.etas:
            cells = []
            for s in sets:
                g = _group(rows, alg, eta, [s])
                cells.append(
                    _ms([_per_1000(rec, rec.ranking_inversions_embedding) for _, rec in g], 2)
                )
            g = _group(rows, alg, eta, sets)
            inv = [_per_1000(rec, rec.ranking_inversions_embedding) for _, rec in g]
            seen = [
                _per_1000(
                    rec,
                    m.ranking_changes(rec.embedding_probabilities, min_probability=NOTICEABLE),
                )
                for _, rec in g
            ]
            pos = [_per_1000(rec, rec.ranking_positions_embedding) for _, rec in g]
            inv_i = [_per_1000(rec, rec.ranking_inversions_interpretation) for _, rec in g]
            star = "**" if any(rec.top1_changes_embedding for _, rec in g) else ""
            top1 = (
                f"{_ms([rec.top1_changes_embedding for _, rec in g], 2)} / "
                f"{_ms([rec.top1_changes_interpretation for _, rec in g], 2)}"
            )
            spear = (
                f"{_ms([rec.spearman_embedding for _, rec in g])} / "
                f"{_ms([rec.spearman_interpretation for _, rec in g])}"
            )
            name = "SiMEC" if alg == "simec" else "SiMExp"
            ref = paper["m2"].get((alg, float(eta)), "–")
            lines.append(
                f"| {name} η={eta:g} | {' | '.join(cells)} | {_ms(inv, 2)}{star} | "
                f"{_ms(seen, 2)} | {_ms(pos, 2)} | "
                f"{_ms(inv_i, 2)} | {top1} | {spear} | {ref} |"
            )
    return "\n".join(lines)


def _rho_summary(
    rows: Sequence[InterpretationRow],
) -> tuple[list[float], list[float], list[float], list[str]]:
    """Per row: the mean of rho_V over its explored segments, log10 of their median, and the
    mean of their log10 (log10 of the geometric mean: the paired test's sample), with the
    input of each mean log10 (to average a row's repetitions per input)."""
    means, logs, mean_logs, inputs = [], [], [], []
    for r in rows:
        values = np.array([v for v in r.rho_v if v is not None], dtype=float)
        if len(values):
            means.append(float(values.mean()))
            med = float(np.median(values))
            logs.append(math.log10(med) if med > 0 else -math.inf)
            positive = values[values > 0]
            if len(positive):
                mean_logs.append(float(np.log10(positive).mean()))
                inputs.append(r.input_id)
    return means, logs, mean_logs, inputs


def _t_cell(values: Sequence[float]) -> str:
    test = m.one_sample_t_test(values)
    if math.isnan(test["t"]):
        return "–"
    return f"{test['t']:.2f} (p = {test['p']:.1e}, n = {int(test['n'])})"


def _welch_cell(rows: Sequence[InterpretationRow]) -> str:
    """Welch's test of SiMExp's against SiMEC's log10 volumes, n = inputs: per row the mean
    over its segments (finite ones) of each walk's log10 volume, then per input the mean over
    its rows (repetitions are pseudo-replicates). Rows made before the volumes were stored
    are left out, and the cell says how many rows it used when some were."""
    have = [r for r in rows if r.log10_volumes is not None]
    if not have:
        return "– (rows made before the volumes were stored)"
    samples: dict[str, list[float]] = {}
    for name in ("simexp", "simec"):
        values, inputs = [], []
        for r in have:
            finite = [v for v in (r.log10_volumes or {}).get(name, []) if v is not None]
            if finite:
                values.append(float(np.mean(finite)))
                inputs.append(r.input_id)
        samples[name] = m.per_input_means(values, inputs)[0].tolist() if values else []
    test = m.welch_t_test(samples["simexp"], samples["simec"])
    if math.isnan(test["t"]):
        return "–"
    cell = (
        f"{test['t']:.2f} (p = {test['p']:.1e}, df = {test['df']:.1f}, "
        f"n = {int(test['n_a'])} + {int(test['n_b'])})"
    )
    if len(have) < len(rows):  # older rows mixed in: say which rows the test saw
        cell += f"; from the {len(have)} of {len(rows)} rows that store the volumes"
    return cell


def _m4_table(rows: Sequence[InterpretationRow], cfg: InterpretationsConfig, paper: dict) -> str:
    lines = [
        "| η | segments | rows | ρ_V: mean over segments, then mean (sd) over rows | log10 of the median over segments, mean (sd) | rows with ρ_V > 1 (median) | t-test, n = inputs: mean log10 ρ_V per input vs 0 (paired) | t-test, n = rows (repetitions as replicates) | Welch, n = inputs: SiMExp's vs SiMEC's mean log10 volume per input (the paper's test) | paper (Supp. Table 6: t-statistics) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for eta in cfg.etas:
        for s in cfg.segment_sets:
            sel = [r for r in rows if r.eta == eta and r.segment_set == s]
            means, logs, mean_logs, inputs = _rho_summary(sel)
            above = sum(1 for v in logs if v > 0)
            per_input: list[float] = (
                m.per_input_means(mean_logs, inputs)[0].tolist() if mean_logs else []
            )
            ref = paper["m4_t"].get(float(eta), "–")  # the paper's t for this eta, every set
            lines.append(
                f"| {eta:g} | {s} | {len(sel)} | {_ms(means, 3)} | {_ms(logs, 2)} | "
                f"{above} / {len(logs)} | {_t_cell(per_input)} | {_t_cell(mean_logs)} | "
                f"{_welch_cell(sel)} | {ref} |"
            )
    return "\n".join(lines)


def _stack(group: list[tuple[InterpretationRow, InterpretationRecord]], key: str) -> np.ndarray:
    m_min = min(len(rec.steps) for _, rec in group)
    return np.array([getattr(rec, key)[:m_min] for _, rec in group], dtype=float)


def _m7_table(rows: Sequence[InterpretationRow], cfg: InterpretationsConfig, paper: dict) -> str:
    lines = [
        "| | segments | W1 per point: median / mean (text) | L1 per point: median / mean | code: L1 of run-averaged probabilities, mean (sd) over iterations | paper (code's L1, η=10) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for alg in ("simec", "simexp"):
        for eta in cfg.etas:
            for s in cfg.segment_sets:
                g = _group(rows, alg, eta, [s])
                if not g:
                    continue
                w1 = np.concatenate([np.array(rec.w1, dtype=float) for _, rec in g])
                l1 = np.concatenate([np.array(rec.l1, dtype=float) for _, rec in g])
                code = (
                    m.code_l1_over_runs(
                        _stack(g, "embedding_probabilities"),
                        _stack(g, "interpretation_probabilities"),
                    )
                    if len(g) > 1
                    else {"mean": float(np.nanmean(l1)), "sd": math.nan}
                )
                ref = ""
                if eta == 10:
                    ref = (
                        f"{paper['m7_simexp_eta10'].get(s, '–')}" if alg == "simexp" else "≤ 0.012"
                    )
                name = "SiMEC" if alg == "simec" else "SiMExp"
                lines.append(
                    f"| {name} η={eta:g} | {s} | {np.nanmedian(w1):.3f} / {np.nanmean(w1):.3f} | "
                    f"{np.nanmedian(l1):.3f} / {np.nanmean(l1):.3f} | "
                    f"{code['mean']:.3f} ({code['sd']:.3f}) | {ref} |"
                )
    return "\n".join(lines)


def patch_count(model: str) -> int | None:
    """The number of patches of an image model, read from its config.json (None when there is
    none, or the model is not a square-patch image model)."""
    from ...models.cache import resolve_model_path

    try:
        c = json.loads((resolve_model_path(model) / "config.json").read_text())
        size, patch = c["image_size"], c["patch_size"]
        if isinstance(size, int) and isinstance(patch, int) and patch > 0:
            return (size // patch) ** 2
    except (OSError, ValueError, KeyError, TypeError, InputError, ModelError):
        pass
    return None


def _m6_table(
    rows: Sequence[InterpretationRow], cfg: InterpretationsConfig, paper: dict, patches: int | None
) -> str:
    """M6 per run = the mean over iterations of the diversity the rows store: for images the
    mean |pixel difference| of consecutive decoded images over the *whole* image. Only explored
    patches change, so the mean over the explored pixels (the paper's code) is that times
    patches / explored patches, exactly."""
    vision = rows[0].kind == "vision" if rows else True
    if vision:
        lines = [
            "| | segments | explored pixels (the code), mean (sd) over runs | whole image | "
            "paper (one figure; data set, η and set not stated) |",
            "| --- | --- | --- | --- | --- |",
        ]
    else:
        lines = [
            "| | segments | explored tokens changed per iteration (the code), mean (sd) over runs "
            "|",
            "| --- | --- | --- |",
        ]

    def cell(values: list[float]) -> str:
        s = mean_std(values)
        return "–" if not s.n else f"{s.mean:.3g} ({s.std:.2g})"

    for alg in ("simec", "simexp"):
        name = "SiMEC" if alg == "simec" else "SiMExp"
        for eta in cfg.etas:
            for s in cfg.segment_sets:
                g = _group(rows, alg, eta, [s])
                if not g:
                    continue
                per_run = [(r, float(np.nanmean(rec.diversity))) for r, rec in g if rec.diversity]
                whole = [v for _, v in per_run]
                if not vision:
                    lines.append(f"| {name} η={eta:g} | {s} | {cell(whole)} |")
                    continue
                explored = (
                    cell([v * patches / len(r.segments) for r, v in per_run]) if patches else "n/a"
                )
                ref = paper.get("m6", {}).get(alg, "")
                lines.append(f"| {name} η={eta:g} | {s} | {explored} | {cell(whole)} | {ref} |")
    return "\n".join(lines)


def _m9_table(rows: Sequence[InterpretationRow], cfg: InterpretationsConfig) -> str:
    lines = [
        "| | embedding changes | realigned by the interpretation | mean delay | Pearson r of top-class probabilities, mean (sd) over runs where both vary | runs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for alg in ("simec", "simexp"):
        for eta in cfg.etas:
            g = _group(rows, alg, eta, cfg.segment_sets)
            r_values = [rec.top_class_pearson for _, rec in g]
            events = [e for _, rec in g for e in rec.catch_up]
            caught = [e for e in events if e.get("delay") is not None]
            delay = mean_std([e["delay"] for e in caught]).text(".1f", ".1f", empty="–")
            name = "SiMEC" if alg == "simec" else "SiMExp"
            lines.append(
                f"| {name} η={eta:g} | {len(events)} | {len(caught)} | {delay} | "
                f"{_ms(r_values, 2)} | {mean_std(r_values).n} of {len(g)} |"
            )
    return "\n".join(lines)


def _time_table(rows: Sequence[InterpretationRow], cfg: InterpretationsConfig, paper: dict) -> str:
    lines = [
        "| segments | explored per walk | s per iteration, SiMEC | s per iteration, SiMExp | s per segment per iteration (both) |",
        "| --- | --- | --- | --- | --- |",
    ]
    per_set = []
    for s in cfg.segment_sets:
        sel = [r for r in rows if r.segment_set == s]
        if not sel:
            continue
        width = _ms([len(r.segments) for r in sel], 1)
        per_seg = [w.seconds_per_segment_iteration for r in sel for w in (r.simec, r.simexp)]
        per_set.append(float(np.mean(per_seg)))
        lines.append(
            f"| {s} | {width} | {_ms([r.simec.seconds_per_iteration for r in sel], 4)} | "
            f"{_ms([r.simexp.seconds_per_iteration for r in sel], 4)} | {_ms(per_seg, 5)} |"
        )
    mean_over = f"{np.mean(per_set):.5f}" if per_set else "–"
    lines.append(
        f"| mean over the sets (the paper's figure) | | | | {mean_over} (paper: "
        f"{paper['seconds_per_segment_iteration']} on {PAPER_HARDWARE.split(' (')[0]}) |"
    )
    return "\n".join(lines)


def _machine(
    rows: Sequence[InterpretationRow], recorded: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The machine of the run (``recorded``: as the run wrote it in results.json, for tables
    remade elsewhere; else this one) and the load averages over the rows."""
    loads = [r.load_average[0] for r in rows if r.load_average]
    load = {"min": min(loads), "mean": float(np.mean(loads)), "max": max(loads)} if loads else None
    if recorded is not None and "cpu" in recorded:
        return {
            "cpu": recorded["cpu"],
            "cpu_count": recorded.get("cpu_count"),
            "load_average_1min_over_rows": load,
        }
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "load_average_1min_over_rows": load}


def _machine_label(machine: dict[str, Any]) -> str:
    label = f"{machine.get('cpu')} ({machine.get('cpu_count')} cores)"
    if machine.get("gpu"):
        label += f" with {machine['gpu']} ({machine.get('device')})"
    return label + f", torch threads {machine.get('torch_threads')}"


def _machines_line(rows: Sequence[InterpretationRow]) -> str | None:
    """The header's machines from the rows' own records, each with its row count; None when no
    row has one (rows made before rows recorded their machine: the run's machine is stated)."""
    if not any(r.machine for r in rows):
        return None
    counts: dict[str, int] = {}
    for r in rows:
        label = _machine_label(r.machine) if r.machine else "not recorded (older rows)"
        counts[label] = counts.get(label, 0) + 1
    return "Machines, as each row recorded it: " + "; ".join(
        f"{label} ({n} row{'s' if n != 1 else ''})" for label, n in counts.items()
    )


def summarize(
    rows: Sequence[InterpretationRow],
    cfg: InterpretationsConfig,
    *,
    recorded: dict[str, Any] | None = None,
) -> str:
    """The markdown tables (M1, M2/M3, M4, M6, M7, M9, time) of ``rows``; ``recorded``: the run's
    results.json, whose machine and torch threads the tables state (else this process's)."""
    kind = rows[0].kind if rows else "vision"
    paper = PAPER[kind]
    inputs = len({r.input_id for r in rows})
    reps = sorted({r.repetition for r in rows})
    walk = cfg.explore
    recorded = recorded or {}
    env = _machine(rows, recorded.get("aggregate", {}).get("machine"))
    threads = recorded.get("environment", environment())["torch_threads"]
    load = env["load_average_1min_over_rows"]
    machines = _machines_line(rows)
    parts = [
        f"# Interpretations ({kind}; paper: {paper['dataset']})",
        "",
        f"{len(rows)} rows (each: SiMEC and SiMExp) over {inputs} inputs, repetitions {reps}, "
        f"K = {walk.steps}, k̂ = {walk.record_every}, "
        f"η ∈ {{{', '.join(f'{e:g}' for e in cfg.etas)}}}, "
        f"step rule {walk.step_rule}, metric blocks {walk.metric_blocks}, "
        + ("SiMExp sign fixed, " if walk.direction_sign == "fixed" else "")
        + f"box {walk.box} projected every step ({walk.projection}), "
        f"metric {walk.output_metric}, attribution {cfg.attribution}, Jacobian reuse "
        f"{walk.jacobian_reuse}" + (f", MLM {cfg.mlm}" if kind == "text" else "") + ".",
        (
            f"{machines};"
            if machines
            else f"Machine: {env['cpu']} ({env['cpu_count']} cores), torch threads {threads},"
        )
        + " 1-minute load average over the rows "
        + (f"{load['min']:.2f}-{load['max']:.2f} (mean {load['mean']:.2f})." if load else "n/a."),
        "Values are mean (sd) over runs (inputs × repetitions) unless stated.",
        "",
        "## M1: original vs top class probability at k = K (from embeddings)",
        "",
        _m1_table(rows, cfg, paper),
        "",
        "## M2/M3: class-ranking changes per 1000 iterations (from embeddings)",
        "",
        "Columns per set and pooled over the sets (the paper's Table 1 pools all/one/q2); ** = "
        f'at least one top-1 change. "With a class ≥ {NOTICEABLE:.0%}": only the inversions in '
        "which one of the two classes reaches that probability before or after (ours, not the "
        "paper's: it leaves out swaps among near-zero classes).",
        "",
        _m2_table(rows, cfg, paper),
        "",
        "## M4: explored hyper-volume ratio ρ_V (SiMExp / SiMEC, same input, seed, η, segments)",
        "",
        "Per explored segment: PCA to 90% variance fitted on both walks' stored points at that "
        "segment, bounding cuboids, ρ_V = their volume ratio. t-test: Student's one-sample test "
        "of the rows' mean log10 ρ_V (over their segments) against 0, i.e. the paired test of "
        "SiMExp's against SiMEC's log volumes (the paper runs Welch's test on samples it does "
        "not state; the two walks of a row share input, seed and segments, so we pair them). "
        "Repetitions of one input are pseudo-replicates: the first test averages them per "
        "input (n = inputs); the second treats every row as a sample (n = rows), as before. "
        "The paper's t (one per η, its sets pooled or not stated) stands beside every set. "
        "Welch's test, as the paper names it, compares the two walks' log10 volumes as "
        "independent samples (rows store both volumes since this column was added).",
        "",
        _m4_table(rows, cfg, paper),
        "",
        "## M6: interpretation diversity (consecutive decoded outputs)",
        "",
        _m6_table(rows, cfg, paper, patch_count(cfg.model) if kind == "vision" else None),
        "",
        "## M7: distance between the distributions from embeddings and from interpretations",
        "",
        "W1: classes on the index line (unit ground distance); L1 = the paper's code (cityblock).",
        "",
        _m7_table(rows, cfg, paper),
        "",
        "## M9: catch-up and correlation (all sets pooled)",
        "",
        _m9_table(rows, cfg),
        "",
        "## Time per patch/token per iteration (walk wall time / iterations / explored segments)",
        "",
        _time_table(rows, cfg, paper),
        "",
    ]
    return "\n".join(parts)


def tables_from_rows(out: str | Path, *, repetitions: int | None = None) -> dict[str, Any]:
    """Rewrite table.md, results.json and the figures of ``out`` from the rows it holds (for
    a run that was stopped: nothing is computed); ``repetitions``: only the rows of the first
    that many repetitions (e.g. the complete ones)."""
    from ...report.plots import save_figure

    folder = Path(out)
    try:
        saved = json.loads((folder / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{folder} holds no readable config.json ({err})") from None
    cfg = config_from_dict(saved)
    rows = [
        r
        for r in load_rows(folder / "rows", InterpretationRow)
        if repetitions is None or r.repetition < repetitions
    ]
    if not rows:
        raise InputError(f"{folder}/rows holds no rows")
    recorded = None
    try:  # the run's own machine and environment, when its results.json says them
        recorded = json.loads((folder / "results.json").read_text())
    except (OSError, ValueError):
        pass
    return write_tables(rows, cfg, folder, save_figure=save_figure, recorded=recorded)


def write_tables(
    rows: Sequence[InterpretationRow],
    cfg: InterpretationsConfig,
    out: Path,
    *,
    save_figure: Callable[[Any, Any], None],
    recorded: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """table.md, results.json (aggregate, paper, config, environment) and the M1 figures;
    ``recorded``: the run's earlier results.json (its machine and environment are kept)."""
    recorded = recorded if isinstance(recorded, dict) else None
    table = summarize(rows, cfg, recorded=recorded)
    atomic_write_bytes(out / "table.md", table.encode())
    figures = []
    for eta in cfg.etas:
        for s in cfg.segment_sets:
            curves = {}
            for alg in ("simec", "simexp"):
                group = _group(rows, alg, eta, [s])
                if group:
                    curves["SiMEC" if alg == "simec" else "SiMExp"] = _curves(group)
            if not curves:
                continue
            n = len(_group(rows, "simec", eta, [s]))
            fig, _ = plot_original_vs_top(curves, title=f"{s} segments, η = {eta:g} ({n} runs)")
            name = f"m1_{s}_eta{eta:g}.png"
            save_figure(fig, out / name)
            figures.append(name)
    agg = {
        "rows": len(rows),
        "inputs": len({r.input_id for r in rows}),
        "repetitions": sorted({r.repetition for r in rows}),
        "figures": figures,
        "machine": _machine(rows, (recorded or {}).get("aggregate", {}).get("machine")),
    }
    atomic_write_json(
        out / "results.json",
        {
            "aggregate": agg,
            "paper": {
                k: {kk: (str(vv) if isinstance(vv, dict) else vv) for kk, vv in v.items()}
                for k, v in PAPER.items()
            },
            "config": asdict(cfg),
            "environment": (recorded or {}).get("environment") or environment(),
        },
    )
    return agg
