"""The SiMEC paper's text experiments: alternative prompts along SiMEC/SiMExp walks (Figure 4)
and token importance for a classifier and a masked LM (Figure 2).

For each of N HateXplain posts labelled hate speech or offensive: SiMEC and SiMExp for K steps
on the classifier's embeddings (every word piece explored, [CLS]/[SEP] kept), each explored
point p_0..p_K capped to the original embeddings' per-dimension box (Algorithm 5, line 10) and
decoded by the masked-LM decoder into k alternative tokens per explored position; alternative
prompt j takes the j-th candidate everywhere. Every prompt is classified; those whose
prediction differs from i* (the prediction on the original post) form Y_c, the others Y_s.

One JSON row per post is written atomically to ``out/rows/`` as soon as the post is done, so
an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_bytes, atomic_write_json, environment
from ..data import load_hatexplain_posts
from ..errors import InputError
from ..explore import ExplorationResult, explore
from ..interpret import segment_importance
from ..interpret.decode_text import MLMDecoder, NearestTokenDecoder, alternative_prompts
from ..models import as_masked_lm, as_text_model, load_adapter
from ..models.hf_text import HFMaskedLMAdapter, HFSequenceClassifierAdapter
from ..stats import mean_std
from . import start_or_resume
from .rows import load_rows, save_row

__all__ = [
    "PIZZA",
    "FinalPrompt",
    "PostRow",
    "PromptSeries",
    "TextExplorationConfig",
    "TextWalk",
    "run_text_exploration",
]

PAPER = {
    "seconds_per_sentence": 7089.0,
    "hardware": "one NVIDIA A100 (paper), BERT-base",
}
#: the masked-LM example of Figure 2 (right): a sentence about pizza and cheese with a [MASK]
PIZZA = "i ordered a pizza with extra cheese and [MASK] ."


@dataclass
class TextExplorationConfig:
    model: str = field(
        default="minilm-hate",
        metadata={"help": "sequence classifier: a directory or a cached name"},
    )
    mlm: str = field(
        default="minilm-mlm",
        metadata={"help": "masked LM sharing the classifier's embeddings"},
    )
    data: str | None = field(  # required
        default=None,
        metadata={"help": "HateXplain JSONL (e.g. its validation.jsonl)", "metavar": "FILE.jsonl"},
    )
    out: str = field(default="results/text-exploration", metadata={"metavar": "DIR"})
    posts: int = field(default=8, metadata={"metavar": "N", "min": 1})
    steps: int = field(default=1000, metadata={"metavar": "K", "min": 1})
    alternatives: int = 5
    max_tokens: int = field(  # time per step grows with the number of word pieces
        default=40, metadata={"help": "skip posts with more word pieces", "min": 1}
    )
    seed: int = 0
    mlm_example: str = PIZZA
    top_k: int = 10  # masked-LM output restricted to its top-k tokens
    device: str = "cpu"


@dataclass(frozen=True)
class FinalPrompt:
    """An alternative prompt decoded at step K, and how the classifier sees it."""

    text: str
    predicted: str
    p_original: float  # probability of i*, the prediction on the original post


@dataclass(frozen=True)
class PromptSeries:
    """Figure 4 data: one entry per alternative prompt of every step."""

    iteration: list[int]
    p_original: list[float]
    changed: list[int]  # 1 if the prompt's prediction differs from i*


@dataclass(frozen=True)
class TextWalk:
    """One SiMEC or SiMExp walk on a post, its alternative prompts decoded and classified."""

    seconds: float
    decode_seconds: float
    steps: int
    stop_reason: str
    p_original_embedding_end: float
    class_embedding_end: str
    prompts: int
    changed: int  # |Y_c|
    kept: int  # |Y_s|
    distinct_prompts: int
    prompts_equal_to_original: int
    final_prompts: list[FinalPrompt]
    nearest_token_end: str
    nearest_tokens_changed_end: int
    embedding_mismatch: float
    series: PromptSeries
    p_original_embedding: list[float]


@dataclass(frozen=True)
class PostRow:
    """One post's row (``out/rows/<post id>.json``)."""

    id: str
    text: str
    label: int
    seed: int
    tokens: list[str]
    predicted: str
    label_name: str
    simec: TextWalk
    simexp: TextWalk


def _select_posts(cfg: TextExplorationConfig, adapter: HFSequenceClassifierAdapter):
    assert cfg.data is not None  # checked by run_text_exploration
    data = load_hatexplain_posts(cfg.data, labels=("hate speech", "offensive"))
    chosen = []
    for position, (text, label, pid) in enumerate(zip(data.texts, data.labels, data.ids)):
        n = len(adapter.tokenizer(text)["input_ids"])
        if n <= cfg.max_tokens:
            chosen.append((pid, text, int(label), position))
        if len(chosen) == cfg.posts:
            break
    if not chosen:
        raise InputError(f"no hate-speech/offensive post has at most {cfg.max_tokens} tokens")
    return chosen


def _walk(
    classifier: HFSequenceClassifierAdapter,
    decoder: MLMDecoder,
    nearest: NearestTokenDecoder,
    text: str,
    algorithm: str,
    cfg: TextExplorationConfig,
    seed: int,
) -> tuple[TextWalk, ExplorationResult]:
    """One walk of the post and its decoded prompts; also the run itself (for the viewer)."""
    prepared = classifier.prepare(text)
    words = [i for i, t in enumerate(prepared.segment_names) if t not in _specials(classifier)]
    result = explore(
        classifier, text, algorithm=algorithm, steps=cfg.steps, seed=seed, segments=tuple(words)
    )
    p0 = int(result.predicted[0])
    t0 = time.perf_counter()
    decoded = decoder.decode(result.trajectory, prepared, segments=words, k=cfg.alternatives)
    probs = alternative_prompts(classifier, decoded)  # (K+1, k, q)
    decode_seconds = time.perf_counter() - t0
    nearest_last = nearest.decode(result.trajectory[-1], prepared, segments=words)
    original = prepared.model_inputs["input_ids"][0].cpu()
    p_orig = probs[..., p0]
    changed = probs.argmax(-1) != p0
    iters = torch.tensor(result.trajectory_steps).unsqueeze(1).expand_as(p_orig)
    distinct = {tuple(row.tolist()) for row in decoded.ids.reshape(-1, decoded.ids.shape[-1])}
    tok = classifier.tokenizer
    final = [
        FinalPrompt(
            text=tok.decode(decoded.ids[-1, j].tolist(), skip_special_tokens=True),
            predicted=classifier.labels[int(probs[-1, j].argmax())],
            p_original=float(p_orig[-1, j]),
        )
        for j in range(decoded.ids.shape[1])
    ]
    walk = TextWalk(
        seconds=result.elapsed_seconds,
        decode_seconds=decode_seconds,
        steps=len(result.trajectory_steps) - 1,
        stop_reason=result.stop_reason,
        p_original_embedding_end=float(result.probabilities[-1, p0]),
        class_embedding_end=classifier.labels[int(result.predicted[-1])],
        prompts=int(p_orig.numel()),
        changed=int(changed.sum()),
        kept=int((~changed).sum()),
        distinct_prompts=len(distinct),
        prompts_equal_to_original=int((decoded.ids == original).all(-1).sum()),
        final_prompts=final,
        nearest_token_end=tok.decode(nearest_last.ids[0, 0].tolist(), skip_special_tokens=True),
        nearest_tokens_changed_end=int((nearest_last.ids[0, 0] != original).sum()),
        embedding_mismatch=decoder.embedding_mismatch(prepared),
        series=PromptSeries(
            iteration=iters.reshape(-1).tolist(),
            p_original=[round(float(v), 5) for v in p_orig.reshape(-1)],
            changed=changed.reshape(-1).int().tolist(),
        ),
        p_original_embedding=[round(float(v), 5) for v in result.probabilities[:, p0]],
    )
    return walk, result


def _specials(adapter: HFSequenceClassifierAdapter) -> set[str]:
    return set(adapter.tokenizer.all_special_tokens)


def summarize(rows: list[PostRow], cfg: TextExplorationConfig) -> tuple[str, dict]:
    agg: dict[str, Any] = {"posts": len(rows), "steps": cfg.steps}
    lines = [
        f"| measure (N={len(rows)} posts, K={cfg.steps}) | SiMEC | SiMExp | paper |",
        "| --- | --- | --- | --- |",
    ]
    cells: dict[str, list[str]] = {}
    for alg in ("simec", "simexp"):
        walks: list[TextWalk] = [getattr(r, alg) for r in rows]
        prompts = sum(w.prompts for w in walks)
        changed = sum(w.changed for w in walks)
        agg[alg] = {
            "seconds_per_sentence": mean_std([w.seconds for w in walks]).text(),
            "decode_seconds_per_sentence": mean_std([w.decode_seconds for w in walks]).text(),
            "prompts": prompts,
            "changed": changed,
            "kept": prompts - changed,
            "distinct_prompts": sum(w.distinct_prompts for w in walks),
            "prompts_equal_to_original": sum(w.prompts_equal_to_original for w in walks),
            "p_original_embedding_end": mean_std(
                [w.p_original_embedding_end for w in walks]
            ).text(),
            "walks_leaving_class": sum(
                1 for r, w in zip(rows, walks) if w.class_embedding_end != r.predicted
            ),
        }
        a = agg[alg]
        share = f"{100 * changed / prompts:.1f}%" if prompts else "n/a"
        cells.setdefault("time", []).append(a["seconds_per_sentence"])
        cells.setdefault("decode", []).append(a["decode_seconds_per_sentence"])
        cells.setdefault("prompts", []).append(f"{prompts:,}")
        cells.setdefault("changed", []).append(f"{changed:,} ({share})")
        cells.setdefault("kept", []).append(f"{prompts - changed:,}")
        cells.setdefault("distinct", []).append(f"{a['distinct_prompts']:,}")
        cells.setdefault("same", []).append(f"{a['prompts_equal_to_original']:,}")
        cells.setdefault("p_end", []).append(a["p_original_embedding_end"])
        cells.setdefault("left", []).append(f"{a['walks_leaving_class']} / {len(rows)}")
    names = {
        "time": ("seconds per sentence (walk)", "7,089 (A100, BERT-base)"),
        "decode": ("seconds per sentence (decode + classify prompts)", "–"),
        "prompts": ("alternative prompts (5 per iteration)", "–"),
        "changed": ("Y_c: prompts that change the prediction", "–"),
        "kept": ("Y_s: prompts that keep the prediction", "–"),
        "distinct": ("distinct prompts (summed over posts)", "–"),
        "same": ("prompts identical to the original post", "–"),
        "p_end": ("p(i*) of the explored embedding at step K", "–"),
        "left": ("walks whose embedding left class i* by step K", "–"),
    }
    for key, (label, paper) in names.items():
        lines.append(f"| {label} | {cells[key][0]} | {cells[key][1]} | {paper} |")
    return "\n".join(lines) + "\n", agg


def _figures(rows: list[PostRow], out: Path) -> None:
    from ..report import plots

    series = {}
    for alg, name in (("simec", "SiMEC"), ("simexp", "SiMExp")):
        walks: list[TextWalk] = [getattr(r, alg) for r in rows]
        it = [v for w in walks for v in w.series.iteration]
        p = [v for w in walks for v in w.series.p_original]
        c = [v for w in walks for v in w.series.changed]
        series[name] = (it, p, c)
    fig, _ = plots.plot_prompt_probabilities(series, label="i*")
    plots.save_figure(fig, out / "figure4_alternative_prompts.png")
    fig, ax = plots.subplots(figsize=(6, 3.2))
    for alg, colour in (("simec", "tab:blue"), ("simexp", "tab:orange")):
        for n, r in enumerate(rows):
            ax.plot(
                getattr(r, alg).p_original_embedding,
                color=colour,
                alpha=0.6,
                lw=1,
                label=("SiMEC" if alg == "simec" else "SiMExp") if n == 0 else None,
            )
    ax.set_xlabel("iteration")
    ax.set_ylabel("p(i*) of the explored embedding")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plots.save_figure(fig, out / "probability_along_walks.png")


def _importance_figures(
    classifier: HFSequenceClassifierAdapter,
    mlm: HFMaskedLMAdapter,
    text: str,
    cfg: TextExplorationConfig,
    out: Path,
) -> dict[str, Any]:
    """Figure 2: token importance for the classifier (one post) and the masked LM (pizza)."""
    from ..report import plots

    info: dict[str, Any] = {}
    for name, adapter, raw in (("classifier", classifier, text), ("mlm", mlm, cfg.mlm_example)):
        imp = segment_importance(adapter, raw)
        label = imp.labels[imp.predicted]
        vmax = plots.mask_scale(imp.segment_names, imp.scores, adapter.tokenizer.mask_token)
        note = "" if vmax is None else " (colours scaled without [MASK])"
        fig, _ = plots.plot_token_importance(
            imp.segment_names, imp.scores, title=f"predicted: {label}{note}", vmax=vmax
        )
        plots.save_figure(fig, out / f"figure2_importance_{name}.png")
        info[name] = {
            "text": raw,
            "tokens": imp.segment_names,
            "scores": imp.scores.tolist(),
            "predicted": label,
            "probabilities": dict(zip(imp.labels, imp.probabilities.tolist())),
            "top_tokens": [t for t, _ in imp.ranking()[:5]],
        }
    return info


def run_text_exploration(cfg: TextExplorationConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the experiment; writes rows/, table.md, results.json, figures, report
    and viewer.html (the SiMEC and SiMExp walks of the first post explored, side by side)."""
    from ..report.viewer import write_viewer

    if not cfg.data:
        raise InputError("text-exploration needs the HateXplain posts: pass --data FILE.jsonl")
    out = Path(cfg.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    start_or_resume(out, cfg)
    classifier = as_text_model(load_adapter(cfg.model, device=cfg.device))
    if classifier is None or classifier.task != "classifier":
        raise InputError(f"{cfg.model!r} is not a sequence classifier")
    mlm = as_masked_lm(load_adapter(cfg.mlm, device=cfg.device, top_k=cfg.top_k))
    if mlm is None:
        raise InputError(f"{cfg.mlm!r} is not a masked LM")
    decoder, nearest = MLMDecoder(mlm), NearestTokenDecoder(classifier)
    posts = _select_posts(cfg, classifier)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(posts), desc="text-exploration", unit="post")
    # the n-th selected post (in file order) walks with seed + n, whatever order posts run in
    rank = {p[0]: n for n, p in enumerate(sorted(posts, key=lambda p: p[3]))}
    for pid, text, label, _ in posts:
        path = out / "rows" / f"{pid}.json"
        if not path.is_file():
            seed = cfg.seed + rank[pid]
            prepared = classifier.prepare(text)
            with torch.no_grad():
                p = torch.softmax(classifier.logits(prepared.embeddings, prepared), -1)
            simec, simec_run = _walk(classifier, decoder, nearest, text, "simec", cfg, seed)
            simexp, simexp_run = _walk(classifier, decoder, nearest, text, "simexp", cfg, seed)
            row = PostRow(
                id=pid,
                text=text,
                label=label,
                seed=seed,
                tokens=prepared.segment_names,
                predicted=classifier.labels[int(p.argmax())],
                label_name=["hate speech", "offensive", "normal"][label],
                simec=simec,
                simexp=simexp,
            )
            if not (out / "viewer.html").is_file():  # the first post explored: both walks
                write_viewer(
                    [simec_run, simexp_run],
                    out / "viewer.html",
                    adapter=classifier,
                    inputs=[text] * 2,
                    mlm=mlm,
                    alternatives=cfg.alternatives,
                )
            save_row(path, row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    wanted = {p[0] for p in posts}
    rows = [r for r in load_rows(out / "rows", PostRow) if r.id in wanted]
    table, agg = summarize(rows, cfg)
    _figures(rows, out)
    importance = _importance_figures(classifier, mlm, rows[0].text, cfg, out)
    examples = [
        {
            "id": r.id,
            "text": r.text,
            "predicted": r.predicted,
            "simec_final_prompts": [asdict(p) for p in r.simec.final_prompts],
            "simexp_final_prompts": [asdict(p) for p in r.simexp.final_prompts],
            "simec_nearest_token_end": r.simec.nearest_token_end,
            "simexp_nearest_token_end": r.simexp.nearest_token_end,
        }
        for r in rows
    ]
    atomic_write_bytes(out / "table.md", table.encode())
    result = {
        "aggregate": agg,
        "paper": PAPER,
        "importance": importance,
        "examples": examples,
        "config": asdict(cfg),
        "environment": environment(),
    }
    atomic_write_json(out / "results.json", result)
    _report(out, table, importance, examples)
    return result


def _report(out: Path, table: str, importance: dict, examples: list[dict]) -> None:
    from ..report.html import Report

    rep = Report("simec: text exploration (alternative prompts)")
    rep.heading("Alternative prompts along SiMEC and SiMExp (Figure 4)")
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    rep.table(header, body)
    rep.image("figure4_alternative_prompts.png", "p(i*) of the alternative prompts")
    rep.image("probability_along_walks.png", "p(i*) along the walks")
    rep.heading("Token importance (Figure 2)")
    for name in ("classifier", "mlm"):
        info = importance[name]
        rep.tokens(
            info["tokens"], info["scores"], caption=f"{name}: predicted {info['predicted']!r}"
        )
    rep.heading("Prompts decoded at the last iteration")
    for ex in examples:
        rep.paragraph(f"{ex['id']} ({ex['predicted']}): {ex['text']}")
        rows = [
            [alg, p["text"], p["predicted"], f"{p['p_original']:.3f}"]
            for alg in ("simec", "simexp")
            for p in ex[f"{alg}_final_prompts"]
        ]
        rep.table(["walk", "prompt", "predicted", "p(i*)"], rows)
    rep.write(out / "report.html")
