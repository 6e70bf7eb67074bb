"""Experiment: which pairs of inputs does a vision model treat as the same?

Four kinds of pairs from an IDX data set (``--pairs`` of each, seeded), each bounded by
``simec.structure.equivalence_run.compare_pair`` in the embedding space:

* ``simec-endpoint``: an image and the end of a SiMEC walk from it (K steps, corrector on; the
  walk itself is an extra starting curve): the paper's equivalence class, by construction;
* ``matched``: an embedding-matched image (``structure.match_embedding`` on the CLS embedding:
  the source image changed until its CLS embedding matches a target of another class) and
  that target: one output, or one class in the paper's sense?
* ``same-class``: two images of one predicted class;
* ``different-class``: two images of different predicted classes.

One row per pair in ``out/rows`` (resumable; several processes may share the folder, each
claiming the rows it makes); ``table.md`` and ``results.json`` at the end.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_bytes, atomic_write_json
from ..errors import InputError
from ..stats import mean_std
from . import start_or_resume
from .rows import load_rows, make_rows

__all__ = ["EquivalencePairsConfig", "PairRow", "run_equivalence_pairs"]

KINDS = ("simec-endpoint", "matched", "same-class", "different-class")


@dataclass(frozen=True)
class EquivalencePairsConfig:
    model: str = field(metadata={"help": "image classifier directory", "metavar": "DIR"})
    data: str = field(metadata={"help": "IDX image folder (MNIST layout)", "metavar": "DIR"})
    out: str = field(default="results/equivalence-mnist", metadata={"metavar": "DIR"})
    pairs: int = field(default=20, metadata={"help": "pairs of each kind", "min": 1})
    walk_steps: int = field(
        default=100, metadata={"help": "SiMEC steps to the endpoint of simec-endpoint pairs"}
    )
    guided_steps: int = field(
        default=20, metadata={"help": "steps of each guided walk (A->B, B->A)", "min": 0}
    )
    segments: int = field(default=8, metadata={"help": "segments of the optimised curve"})
    energy_iterations: int = field(default=20, metadata={"help": "L-BFGS iterations per level"})
    max_segments: int = field(default=64, metadata={"help": "finest curve subdivision"})
    match_steps: int = field(default=1000, metadata={"help": "Adam steps of embedding matching"})
    tol: float = field(default=1e-3, metadata={"help": "verdict tolerance (output units)"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    device: str = field(default="cpu", metadata={"help": "torch device"})


@dataclass(frozen=True)
class PairRow:
    kind: str
    index: int
    a: int
    b: int
    class_a: int
    class_b: int
    lower_bound: float
    upper_bound: float
    upper_converged: bool
    straight_line: float
    verdict: str
    best_curve: str
    closest_approach: float | None
    seconds: float
    note: str = ""
    device: str = "cpu"  # where the row was computed (rows older than this field: the CPU)


def _pairs(predicted: np.ndarray, count: int, rng: np.random.Generator, same: bool) -> list:
    out: list[tuple[int, int]] = []
    while len(out) < count:
        i, j = (int(v) for v in rng.choice(len(predicted), 2, replace=False))
        if (predicted[i] == predicted[j]) == same:
            out.append((i, j))
    return out


def _row(
    adapter: Any, images: np.ndarray, predicted: np.ndarray, kind: str, n: int, i: int, j: int, cfg
) -> PairRow:
    from ..explore import explore
    from ..structure.analyses import match_embedding, vision_embedding_fn
    from ..structure.equivalence import Embedded, EquivalenceConfig
    from ..structure.equivalence_run import compare_pair

    eq = EquivalenceConfig(
        tol=cfg.tol,
        segments=cfg.segments,
        energy_iterations=cfg.energy_iterations,
        max_segments=cfg.max_segments,
        seed=cfg.seed + n,
        budget_seconds=0,  # no wall-clock budget: the table does not depend on the machine's load
    )
    t0 = time.perf_counter()
    note, a, b = "", images[i], images[j]
    if kind == "simec-endpoint":
        walk = explore(
            adapter, a, steps=cfg.walk_steps, corrector=True, projection="none", seed=cfg.seed + n
        )
        end = walk.trajectory[-1]
        from ..structure.equivalence import compare_inputs

        res = compare_inputs(adapter, a, Embedded(end), eq, curves={"simec walk": walk.trajectory})
        note = f"walk drift {max(walk.drift):.2e}"
        closest = None
    else:
        if kind == "matched":
            fn = vision_embedding_fn(adapter, "cls")
            src, tgt = adapter.fit_image(a), adapter.fit_image(b)
            match = match_embedding(
                fn, src, tgt, tolerance=1e-2, max_steps=cfg.match_steps, to_model=adapter.normalize
            )
            a = match.result.detach()
            note = f"CLS relative error {match.relative_error:.2e}"
        res = compare_pair(adapter, a, b, eq, guided_steps=cfg.guided_steps)
        walks = [res.extras.get(k) for k in ("guided A->B", "guided B->A")]
        closest = min((w["closest_approach"] for w in walks if w), default=None)
    pred = [int(predicted[i]), int(predicted[j])]
    if kind == "matched":  # the matched image is new: classify it
        pred[0] = int(adapter.classify([a]).argmax(-1)[0])
    bounds = {k: getattr(res, k) for k in ("lower_bound", "upper_bound", "upper_converged")}
    return PairRow(
        kind,
        n,
        i,
        j,
        pred[0],
        pred[1],
        **bounds,
        straight_line=res.straight_line,
        verdict=res.verdict,
        best_curve=res.best_curve,
        closest_approach=closest,
        seconds=time.perf_counter() - t0,
        note=note,
        device=str(adapter.device),
    )


def run_equivalence_pairs(cfg: EquivalencePairsConfig, *, progress: bool = True) -> dict:
    """Run (or resume) the experiment; writes rows/, table.md and results.json."""
    from ..data import load_idx_dataset
    from ..models import load_adapter

    adapter = load_adapter(cfg.model, device=cfg.device)
    if adapter.modality != "image":
        raise InputError("the equivalence experiment needs an image classifier")
    data = load_idx_dataset(cfg.data)
    rng = np.random.default_rng(cfg.seed)
    pool = rng.choice(len(data.images), size=min(len(data.images), 400), replace=False)
    images = data.images[pool]
    predicted = adapter.classify(list(images)).argmax(-1).cpu().numpy()
    plan = [("simec-endpoint", (int(i), int(i))) for i in range(cfg.pairs)]
    plan += [("matched", p) for p in _pairs(predicted, cfg.pairs, rng, same=False)]
    plan += [("same-class", p) for p in _pairs(predicted, cfg.pairs, rng, same=True)]
    plan += [("different-class", p) for p in _pairs(predicted, cfg.pairs, rng, same=False)]
    out = Path(cfg.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    start_or_resume(out, cfg)  # refuses rows made with other settings
    from tqdm.auto import tqdm

    def make(kind: str, n: int, i: int, j: int):
        def one() -> PairRow:
            torch.manual_seed(cfg.seed + n)
            return _row(adapter, images, predicted, kind, n, i, j, cfg)

        return one

    jobs = [
        (out / "rows" / f"{kind}-{n:03d}.json", make(kind, n, i, j))
        for n, (kind, (i, j)) in enumerate(plan)
    ]
    # several processes may share the folder: each claims a row before making it
    with tqdm(total=len(jobs), desc="equivalence pairs", unit="pair", disable=not progress) as bar:
        make_rows(jobs, done=bar.update)
    rows = load_rows(out / "rows", PairRow)
    table, agg = summarize(rows)
    atomic_write_bytes(out / "table.md", table.encode())
    atomic_write_json(out / "results.json", {"aggregate": agg, "rows": [asdict(r) for r in rows]})
    return agg


def _seconds(group: list[PairRow], secs: dict[str, Any]) -> str:
    """Seconds per pair, per device when the rows were made on several (they differ 100x)."""
    if len(secs) == 1:
        return next(iter(secs.values())).text(".3g")
    return "; ".join(
        f"{d}: {m.text('.3g')} (n={sum(r.device == d for r in group)})" for d, m in secs.items()
    )


def summarize(rows: list[PairRow]) -> tuple[str, dict[str, Any]]:
    agg: dict[str, Any] = {}
    lines = [
        "| pairs | n | lower bound | upper bound | equivalent / not / undetermined | "
        "closest approach of the guided walks | s per pair |",
        "| --- | ---: | --- | --- | --- | --- | --- |",
    ]
    for kind in KINDS:
        group = [r for r in rows if r.kind == kind]
        if not group:
            continue
        counts = {
            v: sum(r.verdict == v for r in group)
            for v in ("equivalent", "not equivalent", "undetermined")
        }
        lo, up = mean_std([r.lower_bound for r in group]), mean_std([r.upper_bound for r in group])
        close = mean_std([r.closest_approach for r in group if r.closest_approach is not None])
        devices = sorted({r.device for r in group})
        secs = {d: mean_std([r.seconds for r in group if r.device == d]) for d in devices}
        agg[kind] = {
            "n": len(group),
            "verdicts": counts,
            "lower": lo.as_dict(),
            "upper": up.as_dict(),
            "closest_approach": close.as_dict(),
            "seconds": {d: m.as_dict() for d, m in secs.items()},
        }
        lines.append(
            f"| {kind} | {len(group)} | {lo.text('.3g')} | {up.text('.3g')} | "
            f"{counts['equivalent']} / {counts['not equivalent']} / {counts['undetermined']} | "
            f"{close.text('.3g')} | {_seconds(group, secs)} |"
        )
    return "\n".join(lines) + "\n", agg
