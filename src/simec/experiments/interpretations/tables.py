"""The final (NeurIPS 2025) version's experiment: do decoded inputs agree with the walk?

Reference 003 (``shared/reference/003_final_version_notes.md``), sections 2-4. For each input
(MNIST: one image per class; text: HateXplain validation posts labelled hate speech or
offensive), each repetition (seed), each eta and each segment set (``all`` / ``one`` = the
top-attribution patch or token / ``q2`` = those above the input's median attribution), SiMEC
and SiMExp walk K steps with the final version's step rule (delta = eta*sqrt(lmin/lmax)), its
box (the embedding layer's analytic bounds) projected after every step, and the identity
metric on the logits (the paper's code). Every ``record_every``-th point (k̂ = 10) is decoded
(ViT: the embedding layer's pseudo-inverse; text: the masked LM's top-1 token) and
re-classified, and ``simec.interpret.walk_measures.measure_run`` records M1-M3 and M6-M9 per
walk; M4 (rho_V, SiMExp over SiMEC) compares the two walks of a row.

Attribution (which patches/tokens ``one`` and ``q2`` explore): a method of the explainer
registry, by default ``relevancy`` (Chefer et al. 2021, which the paper's code uses). Special
positions ([CLS], [SEP]) are never explored: the decoders cannot turn them back into input.

One row (both walks on one input, repetition, eta and segment set) is written atomically to
``out/rows/`` as soon as it is done; a run resumes where it stopped and refuses rows made with
other settings (``start_or_resume``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes, atomic_write_json, environment
from ..errors import InputError
from ..explainers import explain, explainer_names
from ..explore import ExplorationResult, ExploreConfig, explore
from ..interpret import measures as m
from ..interpret.walk_measures import (
    InterpretationRecord,
    Interpreter,
    measure_run,
    run_volume_ratios,
    text_interpreter,
    vision_interpreter,
)
from ..models import as_masked_lm, load_adapter
from ..models.cache import cache_dir, resolve_model_path
from ..models.hf_text import HFSequenceClassifierAdapter
from ..stats import mean_std
from . import start_or_resume
from .rows import load_rows, make_rows

__all__ = [
    "PAPER",
    "SEGMENT_SETS",
    "InterpretationRow",
    "InterpretationsConfig",
    "WalkRecord",
    "choose_segments",
    "plot_original_vs_top",
    "run_interpretations",
    "summarize",
    "tables_from_rows",
    "write_tables",
]

SEGMENT_SETS = ("all", "one", "q2")
#: the masked LM trained for issue 14 (item 1), used when it is in the cache
MLM_PREFERRED = "minilm-mlm-hatexplain"
MLM_FALLBACK = "minilm-mlm-full"

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
# M2 beside the paper's count: inversions in which some class reaches this probability
NOTICEABLE = 0.01


def paper_final_walk() -> ExploreConfig:
    """The final version's walk (reference 003, section 2): its step rule and box projected
    after every step, the identity metric on the logits, K = 1000, every 10th point measured."""
    return ExploreConfig(
        steps=1000,
        step_rule="paper-final",
        box="embedding-bounds",
        projection="step",
        output_metric="euclidean-logits",
        max_step=None,
        record_every=10,
        jacobian_reuse="off",
        compile=False,
    )


@dataclass
class InterpretationsConfig:
    model: str = field(
        metadata={
            "help": "an image classifier (ViT, with --data an IDX folder) or a sequence "
            "classifier (with --data a HateXplain JSONL): a directory or a cached name",
            "metavar": "DIR|NAME",
        }
    )
    data: str = field(
        metadata={"help": "IDX folder of the images, or HateXplain JSONL", "metavar": "PATH"}
    )
    out: str = field(metadata={"metavar": "DIR"})
    mlm: str = field(
        default="auto",
        metadata={
            "help": "text: masked LM decoding the explored embeddings; auto = "
            f"{MLM_PREFERRED} if it is in the cache, else {MLM_FALLBACK} (the one used is "
            "recorded in config.json)",
            "metavar": "DIR|NAME",
        },
    )
    images: int = field(
        default=10,
        metadata={"help": "images: one per class, classes 0..N-1", "metavar": "N", "min": 1},
    )
    posts: int = field(default=8, metadata={"metavar": "N", "min": 1})
    repetitions: int = field(
        default=3, metadata={"help": "walks per input (seeds)", "metavar": "R", "min": 1}
    )
    etas: tuple[float, ...] = field(
        default=(1.0, 10.0),
        metadata={"help": "the step rule's eta values", "metavar": "ETA,..."},
    )
    segment_sets: tuple[str, ...] = field(
        default=SEGMENT_SETS,
        metadata={
            "help": "all = every patch/token; one = the top-attribution one; q2 = those above "
            "the input's median attribution",
            "choices": SEGMENT_SETS,
        },
    )
    attribution: str = field(
        default="relevancy",
        metadata={
            "help": "explainer choosing the one/q2 segments (relevancy: Chefer et al., the "
            "paper's code)",
            "choices": explainer_names,
        },
    )
    max_tokens: int = field(
        default=40, metadata={"help": "text: skip posts with more word pieces", "min": 1}
    )
    dataset: str = field(default="mnist", metadata={"choices": ("mnist", "fashion-mnist")})
    seed: int = 0
    device: str = "cpu"
    #: every walk's settings: the final version's (``paper_final_walk``); algorithm, eta and
    #: segments are set per walk, jacobian_reuse applies to SiMEC only
    explore: ExploreConfig = field(default_factory=lambda: paper_final_walk())

    def explore_config(self, algorithm: str, eta: float, segments: Sequence[int]) -> ExploreConfig:
        return replace(
            self.explore,
            algorithm=algorithm,
            eta=eta,
            segments=tuple(segments),
            jacobian_reuse=self.explore.jacobian_reuse if algorithm == "simec" else "off",
        )


#: the walk settings a config.json written before ``explore`` was nested held at its top level
FLAT_WALK_KEYS = (
    "steps",
    "record_every",
    "jacobian_reuse",
    "step_rule",
    "box",
    "projection",
    "output_metric",
    "max_step",
)


def config_from_dict(saved: dict[str, Any]) -> InterpretationsConfig:
    """The config of a saved ``config.json`` (either form, ``upgrade_config``)."""
    saved = upgrade_config(saved)
    walk: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in saved["explore"].items()
    }
    return InterpretationsConfig(
        **{
            **saved,
            "etas": tuple(saved["etas"]),
            "segment_sets": tuple(saved["segment_sets"]),
            "explore": ExploreConfig(**walk),
        }
    )


def upgrade_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config (``asdict``) in today's form: one written before ``explore`` was nested
    has its walk settings (``FLAT_WALK_KEYS``) moved into ``explore``."""
    if "explore" in saved:
        return saved
    flat = {k: saved[k] for k in FLAT_WALK_KEYS if k in saved}
    walk = asdict(replace(paper_final_walk(), **flat))
    return {**{k: v for k, v in saved.items() if k not in FLAT_WALK_KEYS}, "explore": walk}


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


# ---- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    key: str
    index: int
    label: int
    raw: Any


@dataclass(frozen=True)
class _Task:
    kind: str
    adapter: Any
    inputs: list[_Input]
    special: frozenset[str]
    interpreter: Callable[[ExplorationResult, Any], Interpreter]
    mlm: str | None


def resolve_mlm(name: str) -> str:
    """``auto`` -> the preferred masked LM if it is in the cache, else the fallback."""
    if name != "auto":
        return name
    preferred = cache_dir() / "models" / MLM_PREFERRED / "config.json"
    return MLM_PREFERRED if preferred.is_file() else MLM_FALLBACK


def _images(cfg: InterpretationsConfig) -> list[_Input]:
    from ..data import load_idx_dataset

    data = load_idx_dataset(cfg.data, split="test", kind=cfg.dataset)
    split_file = resolve_model_path(cfg.model) / "split.json"
    pool = np.arange(len(data))
    if split_file.is_file():  # the shipped models: images they were not trained on
        pool = np.array(json.loads(split_file.read_text())["validation_indices"])
    chosen = []
    for cls in range(cfg.images):
        hits = [int(i) for i in pool if int(data.labels[i]) == cls]
        if not hits:
            raise InputError(f"{cfg.data} has no image of class {cls} to explore")
        i = hits[0]
        chosen.append(_Input(f"{i:05d}", i, cls, data.images[i]))
    return chosen


def _posts(cfg: InterpretationsConfig, adapter: HFSequenceClassifierAdapter) -> list[_Input]:
    from ..data import load_hatexplain_posts

    data = load_hatexplain_posts(cfg.data, labels=("hate speech", "offensive"))
    chosen = []
    for position, (text, label, pid) in enumerate(zip(data.texts, data.labels, data.ids)):
        if len(adapter.tokenizer(text)["input_ids"]) <= cfg.max_tokens:
            chosen.append(_Input(str(pid), position, int(label), text))
        if len(chosen) == cfg.posts:
            break
    if not chosen:
        raise InputError(f"no hate-speech/offensive post has at most {cfg.max_tokens} tokens")
    return chosen


def _check(cfg: InterpretationsConfig) -> None:
    if not cfg.etas or any(
        not (isinstance(e, (int, float)) and 0 < e < math.inf) for e in cfg.etas
    ):
        raise InputError(f"etas must be positive numbers, got {cfg.etas!r}")
    if len(set(cfg.etas)) != len(cfg.etas):
        raise InputError(f"etas has repeated values: {cfg.etas!r}")
    bad = [s for s in cfg.segment_sets if s not in SEGMENT_SETS]
    if not cfg.segment_sets or bad:
        raise InputError(f"segment_sets must be taken from {list(SEGMENT_SETS)}, got {bad or '()'}")
    if cfg.attribution not in explainer_names():
        raise InputError(f"attribution {cfg.attribution!r} is not one of {explainer_names()}")
    walk = cfg.explore
    for name, value in (
        *((n, getattr(cfg, n)) for n in ("images", "posts", "repetitions")),
        *((n, getattr(walk, n)) for n in ("steps", "record_every")),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive whole number, got {value!r}")
    if walk.record_every > walk.steps:
        raise InputError(f"record_every={walk.record_every} exceeds steps={walk.steps}")
    cfg.explore_config("simec", cfg.etas[0], (0,)).validate()  # the explorer's own checks
    if not Path(cfg.data).exists():
        raise InputError(f"--data {cfg.data} does not exist")


def _task(cfg: InterpretationsConfig) -> _Task:
    adapter: Any = load_adapter(cfg.model, device=cfg.device)  # narrowed by its modality
    if adapter.modality == "image":
        if Path(cfg.data).is_file():
            raise InputError(f"{cfg.model} classifies images: --data must be an IDX folder")
        from ..interpret import ViTDecoder

        decoder = ViTDecoder(adapter)

        def vision(result: ExplorationResult, raw: Any) -> Interpreter:
            return vision_interpreter(adapter, raw, result.explored_segments, decoder=decoder)

        return _Task("vision", adapter, _images(cfg), frozenset({"[CLS]"}), vision, None)
    if adapter.modality == "text":
        if Path(cfg.data).is_dir():
            raise InputError(f"{cfg.model} classifies text: --data must be a HateXplain JSONL")
        from ..interpret.decode_text import MLMDecoder

        mlm_name = resolve_mlm(cfg.mlm)
        mlm_adapter = as_masked_lm(load_adapter(mlm_name, device=cfg.device))
        if mlm_adapter is None:
            raise InputError(f"--mlm {mlm_name} is not a masked LM (a *ForMaskedLM model)")
        mlm = MLMDecoder(mlm_adapter)

        def text(result: ExplorationResult, raw: Any) -> Interpreter:
            prepared = adapter.prepare(raw)
            return text_interpreter(adapter, prepared, mlm, result.explored_segments)

        special = frozenset(adapter.tokenizer.all_special_tokens)
        return _Task("text", adapter, _posts(cfg, adapter), special, text, mlm_name)
    raise InputError(f"{cfg.model} is neither an image nor a sequence classifier")


# ---- one row -------------------------------------------------------------------------------


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
    task: _Task, item: _Input, ecfg: ExploreConfig, seed: int
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
    task: _Task,
    cfg: InterpretationsConfig,
    item: _Input,
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
    )


def _row_name(key: str, repetition: int, eta: float, segment_set: str) -> str:
    return f"{key}-r{repetition}-eta{eta:g}-{segment_set}.json"


# ---- tables --------------------------------------------------------------------------------


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


def plot_original_vs_top(
    curves: dict[str, dict[str, np.ndarray]], *, ax: Any = None, title: str | None = None
) -> tuple[Any, Any]:
    """M1: mean ± sd over runs of p(original class) (solid) and max_c p(c) (dashed) along the
    walks, one colour per algorithm (``curves``: name -> ``_curves`` output)."""
    from ..report import plots

    if ax is None:
        fig, ax = plots.subplots(figsize=(6, 3.4))
    else:
        fig = ax.figure
    for n, (name, c) in enumerate(curves.items()):
        colour = f"C{n}"
        for key, style in (("orig", "-"), ("top", "--")):
            mean, sd = c[f"{key}_mean"], c[f"{key}_sd"]
            label = f"{name} {'original class' if key == 'orig' else 'top class'}"
            ax.plot(c["steps"], mean, style, color=colour, label=label)
            ax.fill_between(c["steps"], mean - sd, mean + sd, color=colour, alpha=0.12)
    ax.set_xlabel("iteration")
    ax.set_ylabel("probability (from embeddings)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig, ax


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
            main = "all" if paper is PAPER["vision"] else "one"
            pe, px = paper["m1_end"]["simec"], paper["m1_end"]["simexp"]
            p_simec = f"{pe[0]:.3f} / {pe[1]:.3f}" if s == main else ""
            p_simexp = f"{px[0]:.3f} / {px[1]:.3f}" if s == main else ""
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
) -> tuple[list[float], list[float], list[float]]:
    """Per row: the mean of rho_V over its explored segments, log10 of their median, and the
    mean of their log10 (log10 of the geometric mean: the paired test's sample)."""
    means, logs, mean_logs = [], [], []
    for r in rows:
        values = np.array([v for v in r.rho_v if v is not None], dtype=float)
        if len(values):
            means.append(float(values.mean()))
            med = float(np.median(values))
            logs.append(math.log10(med) if med > 0 else -math.inf)
            positive = values[values > 0]
            if len(positive):
                mean_logs.append(float(np.log10(positive).mean()))
    return means, logs, mean_logs


def _t_cell(values: Sequence[float]) -> str:
    test = m.one_sample_t_test(values)
    if math.isnan(test["t"]):
        return "–"
    return f"{test['t']:.2f} (p = {test['p']:.1e}, n = {int(test['n'])})"


def _m4_table(rows: Sequence[InterpretationRow], cfg: InterpretationsConfig, paper: dict) -> str:
    lines = [
        "| η | segments | rows | ρ_V: mean over segments, then mean (sd) over rows | log10 of the median over segments, mean (sd) | rows with ρ_V > 1 (median) | t-test: mean log10 ρ_V per row vs 0 (paired) | paper (Supp. Table 6: t-statistics) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for eta in cfg.etas:
        for s in cfg.segment_sets:
            sel = [r for r in rows if r.eta == eta and r.segment_set == s]
            means, logs, mean_logs = _rho_summary(sel)
            above = sum(1 for v in logs if v > 0)
            ref = paper["m4_t"].get(float(eta), "–") if s == cfg.segment_sets[0] else ""
            lines.append(
                f"| {eta:g} | {s} | {len(sel)} | {_ms(means, 3)} | {_ms(logs, 2)} | "
                f"{above} / {len(logs)} | {_t_cell(mean_logs)} | {ref} |"
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


def _machine(rows: Sequence[InterpretationRow]) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    loads = [r.load_average[0] for r in rows if r.load_average]
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_1min_over_rows": (
            {"min": min(loads), "mean": float(np.mean(loads)), "max": max(loads)} if loads else None
        ),
    }


def summarize(rows: Sequence[InterpretationRow], cfg: InterpretationsConfig) -> str:
    """The markdown tables (M1, M2/M3, M4, M7, M9, time) of ``rows``."""
    kind = rows[0].kind if rows else "vision"
    paper = PAPER[kind]
    inputs = len({r.input_id for r in rows})
    reps = sorted({r.repetition for r in rows})
    walk = cfg.explore
    env = _machine(rows)
    load = env["load_average_1min_over_rows"]
    parts = [
        f"# Interpretations ({kind}; paper: {paper['dataset']})",
        "",
        f"{len(rows)} rows (each: SiMEC and SiMExp) over {inputs} inputs, repetitions {reps}, "
        f"K = {walk.steps}, k̂ = {walk.record_every}, "
        f"η ∈ {{{', '.join(f'{e:g}' for e in cfg.etas)}}}, "
        f"step rule {walk.step_rule}, box {walk.box} projected every step ({walk.projection}), "
        f"metric {walk.output_metric}, attribution {cfg.attribution}, Jacobian reuse "
        f"{walk.jacobian_reuse}" + (f", MLM {cfg.mlm}" if kind == "text" else "") + ".",
        f"Machine: {env['cpu']} ({env['cpu_count']} cores), torch threads "
        f"{environment()['torch_threads']}, 1-minute load average over the rows "
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
        "not state; the two walks of a row share input, seed and segments, so we pair them).",
        "",
        _m4_table(rows, cfg, paper),
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


# ---- the run -------------------------------------------------------------------------------


def run_interpretations(cfg: InterpretationsConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the experiment; writes rows/, table.md, results.json and the M1 figures
    ``m1_<set>_eta<eta>.png``. Returns the aggregate (paths and counts)."""
    from ..report.plots import save_figure

    _check(cfg)
    task = _task(cfg)
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

    def maker(rep: int, eta: float, s: str, item: _Input) -> Callable[[], InterpretationRow]:
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


def tables_from_rows(out: str | Path, *, repetitions: int | None = None) -> dict[str, Any]:
    """Rewrite table.md, results.json and the figures of ``out`` from the rows it holds (for
    a run that was stopped: nothing is computed); ``repetitions``: only the rows of the first
    that many repetitions (e.g. the complete ones)."""
    from ..report.plots import save_figure

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
    return write_tables(rows, cfg, folder, save_figure=save_figure)


def write_tables(
    rows: Sequence[InterpretationRow],
    cfg: InterpretationsConfig,
    out: Path,
    *,
    save_figure: Callable[[Any, Any], None],
) -> dict[str, Any]:
    """table.md, results.json (aggregate, paper, config, environment) and the M1 figures."""
    table = summarize(rows, cfg)
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
        "machine": _machine(rows),
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
            "environment": environment(),
        },
    )
    return agg
