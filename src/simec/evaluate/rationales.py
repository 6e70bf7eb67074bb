"""``simec evaluate plausibility``: explainers scored against HateXplain's human rationales.

:class:`PlausibilityConfig` is the command's one source of options, defaults and help. Two
sources of scores: a model run (:func:`evaluate_model`: every explainer on every post with
rationales, the target class = the model's prediction on the whole post; one :class:`PostRow`
per post is written to ``out/rows/`` through ``simec.experiments.rows`` as soon as it is done,
and a rerun keeps the finished posts) or a score file from any tool (:func:`evaluate_scores`, no
model needed; format in ``scores``). Faithfulness (model runs only) is AOPC over words, removed
words replaced by the tokenizer's mask token, and the top-5 pieces' hard comprehensiveness and
sufficiency as HateXplain runs them (``faithfulness``). Posts and units: ``hatexplain``; the
table and its files: ``table``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_json, environment
from ..errors import InputError
from ..experiments.rows import load_row, make_rows
from ..explainers import explain, explainer_names
from ..fields import option
from ..models.base import ModelAdapter, eval_mode
from .faithfulness import (
    FAITHFULNESS,
    aopc_comprehensiveness,
    aopc_sufficiency,
    hard_comprehensiveness,
    hard_sufficiency,
)
from .hatexplain import UNITS, load_hatexplain, post_ids
from .plausibility import top_k
from .protocols import PROTOCOLS, Protocol
from .scores import ScoreLine, read_scores, word_scores, write_scores
from .table import score_lines, summarize, write_results

__all__ = [
    "ExplainerScores",
    "PlausibilityConfig",
    "PostRow",
    "evaluate_model",
    "evaluate_scores",
    "run_plausibility",
]

#: the explainers run by default
DEFAULT_EXPLAINERS = ("simec", "rollout", "relevancy", "grad_x_input", "random")
#: options that only apply with --model
MODEL_ONLY = ("limit", "faithfulness_posts", "save_scores")
#: the rows' format (rows of another format are made again)
ROW_FORMAT = 2


@dataclass
class PlausibilityConfig:
    """Options of ``simec evaluate plausibility`` (the source of the explanations: ``model``
    or ``scores``, exactly one)."""

    data: str = field(
        metadata={
            "help": "HateXplain JSONL (e.g. ../shared/data/hatexplain/validation.jsonl)",
            "metavar": "FILE.jsonl",
        }
    )
    out: str = field(
        metadata={"help": "folder for results.json, the table and plot", "metavar": "DIR"}
    )
    model: str | None = option(None, "a sequence classifier to explain", metavar="DIR")
    scores: str | None = option(
        None,
        'explanations from any tool: one line {"id": post id, "explainer": name, '
        '"scores": [one float per unit]} per post and explainer; with --unit pieces also '
        '"word_ids" (word index per piece, null for specials)',
        metavar="SCORES.jsonl",
    )
    protocol: str = option(
        "hatexplain",
        "how gold, hard rationale and metrics are defined",
        choices=PROTOCOLS.names,
    )
    unit: str = option(
        "pieces",
        "pieces: the classifier's word pieces with [CLS]/[SEP] (as HateXplain); words: "
        "HateXplain's words, a word scoring the max over its pieces",
        choices=UNITS,
    )
    explainers: tuple[str, ...] = option(
        DEFAULT_EXPLAINERS, "with --model: the explainers to run", choices=explainer_names
    )
    limit: int | None = option(
        None, "with --model: only the first N posts with rationales", metavar="N", min=1
    )
    faithfulness: bool = option(
        True,
        "with --model: comprehensiveness/sufficiency too",
        help_off="with --model: skip comprehensiveness/sufficiency (faster)",
    )
    faithfulness_posts: int | None = option(
        None,
        "with --model: faithfulness on the first N posts only (it costs ~10 model calls per "
        "explainer and post)",
        metavar="N",
        min=1,
    )
    save_scores: str | None = option(
        None,
        "with --model: also write the explanations in the --scores format (per --unit), to "
        "re-score them later without the model",
        metavar="FILE.jsonl",
    )
    device: str = option("cpu", "with --model: torch device: cpu, cuda, cuda:1, ...")
    truncate: bool = option(False, "with --model: truncate over-long posts")

    def validate(self) -> PlausibilityConfig:
        """One-line errors for options that do not fit together or are unknown."""
        if (self.model is None) == (self.scores is None):
            raise InputError("give exactly one of --model DIR and --scores SCORES.jsonl")
        if self.scores is not None:
            used = [n for n in MODEL_ONLY if getattr(self, n) is not None]
            if used:
                flags = ", ".join("--" + n.replace("_", "-") for n in used)
                raise InputError(f"{flags} only apply with --model")
        PROTOCOLS.get(self.protocol)
        if self.unit not in UNITS:
            raise InputError(f"unknown unit {self.unit!r}; choose from {list(UNITS)}")
        unknown = [e for e in self.explainers if e not in explainer_names()]
        if unknown:
            raise InputError(f"unknown explainers {unknown}; choose from {explainer_names()}")
        if not self.explainers:
            raise InputError("no explainers given")
        return self


@dataclass(frozen=True)
class ExplainerScores:
    """One explainer on one post: its per-piece scores, wall time and faithfulness (None: not
    computed for this post)."""

    seconds: float
    piece_scores: list[float]
    comprehensiveness: float | None = None
    sufficiency: float | None = None
    comprehensiveness_top5: float | None = None
    sufficiency_top5: float | None = None


@dataclass(frozen=True)
class PostRow:
    """Every explainer on one post (``out/rows/NNNNN.json``)."""

    id: str
    label: str  # the annotators' majority label
    words: int
    predicted: str  # the model's class on the whole post: the explainers' target
    tokens: list[str]
    word_ids: list[int | None]
    explainers: dict[str, ExplainerScores]
    format: int = ROW_FORMAT


def run_plausibility(cfg: PlausibilityConfig, *, progress: bool = True) -> dict[str, Any]:
    """Check ``cfg``, then score a model's explainers (``cfg.model``) or a score file
    (``cfg.scores``); returns the table (explainer -> metric -> value, std, n)."""
    cfg.validate()
    if cfg.scores is not None:
        return evaluate_scores(cfg)
    from ..models import load_adapter

    assert cfg.model is not None  # validate(): exactly one source
    adapter = load_adapter(cfg.model, device=cfg.device, truncation=cfg.truncate)
    if adapter.modality != "text" or adapter.task != "classifier":
        raise InputError(
            f"--model {cfg.model!r} is a {type(adapter).__name__}: plausibility against "
            "HateXplain rationales needs a text classifier (*ForSequenceClassification)"
        )
    return evaluate_model(adapter, cfg, progress=progress)


def evaluate_scores(cfg: PlausibilityConfig) -> dict[str, Any]:
    """Score the file ``cfg.scores`` against the posts of ``cfg.data`` (no model needed)."""
    assert cfg.scores is not None
    proto = PROTOCOLS.get(cfg.protocol)
    posts = load_hatexplain(cfg.data)
    with_rationale = {p["id"]: p for p in posts}
    lines = read_scores(cfg.scores, post_ids(cfg.data), with_rationale, unit=cfg.unit)
    if not lines:
        raise InputError(f"{cfg.scores}: no scores for any post with rationales in {cfg.data}")
    table = summarize(proto, score_lines(proto, with_rationale, lines, cfg.unit))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    scored = len({line.id for line in lines})
    write_results(out, table, proto, cfg.unit, scored, data=str(cfg.data), scores=str(cfg.scores))
    return table


def _predictor(adapter: ModelAdapter, words: list[str], filler: str):
    seen: dict[tuple[bool, ...], np.ndarray] = {}  # the full post is asked for by every metric

    def predict(keep: np.ndarray) -> np.ndarray:
        key = tuple(bool(k) for k in keep)
        if key not in seen:
            kept = [w if k else filler for w, k in zip(words, keep)]
            prepared = adapter.prepare(kept)
            with torch.no_grad():
                logits = adapter.logits(prepared.embeddings, prepared)
            seen[key] = torch.softmax(logits, -1).cpu().numpy()
        return seen[key]

    return predict


def _piece_predictor(adapter: ModelAdapter, prepared: Any):
    """p(classes | pieces) for a keep mask over the post's pieces, as HateXplain's
    ``convert_data``: comprehensiveness deletes pieces (the rest, specials included, is run
    as is); sufficiency (``only=True``) runs [CLS] + the kept pieces + [SEP]. An empty
    remainder is run as [CLS] [SEP]."""
    model = getattr(adapter, "model", None)
    tokenizer = getattr(adapter, "tokenizer", None)
    ids = prepared.model_inputs.get("input_ids")
    if model is None or tokenizer is None or ids is None:
        return None
    ids = ids[0]
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id

    seen: dict[tuple[int, ...], np.ndarray] = {}  # the full post is asked for by every metric

    def run(selected: list[int]) -> np.ndarray:
        key = tuple(selected)
        if key not in seen:
            tensor = torch.tensor([selected], dtype=ids.dtype, device=ids.device)
            with torch.no_grad(), eval_mode(model):
                out = model(input_ids=tensor)
            logits = out.logits if hasattr(out, "logits") else out[0]
            seen[key] = torch.softmax(logits[0].float(), -1).cpu().numpy()
        return seen[key]

    def predict(keep: np.ndarray, only: bool = False) -> np.ndarray:
        kept = [int(t) for t, k in zip(ids.tolist(), keep) if k]
        if only or not kept:
            kept = [cls_id, *kept, sep_id]
        return run(kept)

    return predict


def _post_row(
    adapter: ModelAdapter,
    post: dict,
    explainers: tuple[str, ...],
    faithful: bool,
    filler: str,
    faithful_top5: bool = False,
) -> PostRow:
    """Every explainer on ``post`` (faithful: AOPC over words; faithful_top5: HateXplain's
    top-5 comprehensiveness and sufficiency over pieces)."""
    words = post["words"]
    prepared = adapter.prepare(words)
    if prepared.word_ids is None:
        raise InputError("the tokenizer gives no word ids (a fast tokenizer is needed)")
    with torch.no_grad():
        probs = torch.softmax(adapter.logits(prepared.embeddings, prepared), -1)
    target = int(probs.argmax())
    predict = _predictor(adapter, words, filler) if faithful else None
    by_piece = _piece_predictor(adapter, prepared) if faithful_top5 else None
    results = {}
    for name in explainers:
        t0 = time.perf_counter()
        exp = explain(adapter, words, name, target=target)
        seconds = time.perf_counter() - t0
        pieces = [float(v) for v in exp.scores.tolist()]
        values: dict[str, float] = {}
        if predict is not None:
            scores = word_scores(pieces, prepared.word_ids, len(words))
            values["comprehensiveness"] = aopc_comprehensiveness(predict, scores, target)
            values["sufficiency"] = aopc_sufficiency(predict, scores, target)
        if by_piece is not None:
            hard = top_k(np.asarray(pieces), 5)
            values["comprehensiveness_top5"] = hard_comprehensiveness(by_piece, hard, target)
            values["sufficiency_top5"] = hard_sufficiency(
                by_piece, hard, target, alone=lambda keep: by_piece(keep, only=True)
            )
        results[name] = ExplainerScores(seconds, pieces, **values)
    return PostRow(
        id=post["id"],
        label=post["label"],
        words=len(words),
        predicted=adapter.labels[target],
        tokens=list(prepared.segment_names),
        word_ids=list(prepared.word_ids),
        explainers=results,
    )


def _stale(post: dict, explainers: tuple[str, ...]):
    """Whether the row on disk is not this post's, or lacks an explainer (it is made again)."""

    def stale(path: Path) -> bool:
        try:
            row = load_row(path, PostRow)
        except InputError:  # unreadable, or of another shape
            return True
        return (
            row.format != ROW_FORMAT
            or row.id != post["id"]
            or any(e not in row.explainers for e in explainers)
        )

    return stale


def evaluate_model(
    adapter: ModelAdapter, cfg: PlausibilityConfig, *, progress: bool = True
) -> dict[str, Any]:
    """Run ``cfg.explainers`` on every post with rationales and score them (module docstring).

    Faithfulness (about 10 model calls per explainer and post) is computed on the first
    ``cfg.faithfulness_posts`` posts only when given; the table states n for every metric.
    """
    proto: Protocol = PROTOCOLS.get(cfg.protocol)
    explainers = tuple(cfg.explainers)
    posts = load_hatexplain(cfg.data)[: cfg.limit]
    out = Path(cfg.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    tokenizer = getattr(adapter, "tokenizer", None)
    filler = (
        getattr(tokenizer, "mask_token", None) or getattr(tokenizer, "unk_token", None) or "[UNK]"
    )
    config = {
        "data": str(cfg.data),
        "explainers": list(explainers),
        "protocol": cfg.protocol,
        "unit": cfg.unit,
        "limit": cfg.limit,
        "faithfulness": cfg.faithfulness,
        "faithfulness_posts": cfg.faithfulness_posts,
        "filler": filler,
        "model": adapter.describe(),
        "environment": environment(),
    }
    atomic_write_json(out / "config.json", config)
    paths = [out / "rows" / f"{i:05d}.json" for i in range(len(posts))]

    def make(i: int, post: dict):
        faithful = cfg.faithfulness and (
            cfg.faithfulness_posts is None or i < cfg.faithfulness_posts
        )
        return lambda: _post_row(adapter, post, explainers, faithful, filler, cfg.faithfulness)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(posts), desc="plausibility", unit="post")
    stale = {path: _stale(post, explainers) for path, post in zip(paths, posts)}
    make_rows(
        [(path, make(i, post)) for i, (path, post) in enumerate(zip(paths, posts))],
        done=bar.update if bar is not None else None,
        stale=lambda path: stale[path](path),
    )
    if bar is not None:
        bar.close()
    rows = [load_row(path, PostRow) for path in paths]
    lines = [
        ScoreLine(r.id, name, r.explainers[name].piece_scores, "pieces", r.word_ids)
        for r in rows
        for name in explainers
    ]
    if cfg.save_scores is not None:
        write_scores(
            cfg.save_scores, lines, unit=cfg.unit, words={p["id"]: len(p["words"]) for p in posts}
        )
    extra = {
        name: {
            key: [v for r in rows if (v := asdict(r.explainers[name]).get(key)) is not None]
            for key in [*FAITHFULNESS, "seconds"]
        }
        for name in explainers
    }
    by_id = {p["id"]: p for p in posts}
    table = summarize(proto, score_lines(proto, by_id, lines, cfg.unit), extra)
    write_results(out, table, proto, cfg.unit, len(rows), config=config)
    return table
