"""Does a less confident model let SiMExp (the official code's settings) move the output?

Issue 25, M7 for `one`/`q2`. Our SiMExp walks with the code's per-token blocks and step rule end
at p(original) 0.991-0.992, against the paper's 0.943 / 0.921. With the code's step rule one step
changes the logits by about eta * 1e-3, whatever the model. A model with smaller logit margins
should then lose more probability in the same 1000 steps. This script tests that directly. It
divides the shipped model's logits by a temperature T: a copy of the model's folder whose
classifier weight and bias are divided by T, so the classes and their order are unchanged and
only the margins shrink. Then it reruns the committed rows' SiMExp walks (same inputs,
segments, seed and walk settings, read from the rows and their config.json) and reports
p(original) at the start, at the end, and at its lowest point along the walk.

    python benchmarks/diag_m7_temperature.py --temperatures 1,2 --rows \
        results/interpretations-mnist-token-one-q2

``--sign`` chooses how SiMExp's per-block direction gets its sign: ``random`` (ours, the
default: a random sign per step), ``eigh`` (the official code's: the eigenvector exactly as
``torch.linalg.eigh`` of the block g_i returns it, float64, so its sign is LAPACK's and changes
little from one step to the next). Both draw the eigenvector uniformly among the block's non-null
ones with one ``rand`` per block, as the code does. ``fixed``: the toolkit's option
``--direction-sign fixed`` (the same draw, with the sign our decomposition fixes: largest-magnitude
entry positive), also the same from one step to the next.

How often a solver's sign flips from one step to the next depends on the solver (the blocks
have rank <= q < h, and LAPACK builds fix the sign of such eigenvectors differently; the
official code decomposes on the GPU, with cuSOLVER). ``eigh-numpy`` and ``eigh-evr`` take the
sign of ``numpy.linalg.eigh`` (its own LAPACK, OpenBLAS in the PyPI wheels) and of SciPy's
``eigh(driver="evr")`` instead of torch's (MKL in the CPU wheels), ``eigh-cuda`` that of
``torch.linalg.eigh`` on a CUDA GPU (cuSOLVER, the official code's); the same block, the same
draw. ``persistent:P`` is a synthetic sign with a known persistence: per block and eigenvector
(counted from the largest) a sign that starts canonical and flips with probability P at every
step (its own generator, seeded by the row's seed, so the eigenvector draws are the same as
the other signs'): P = 0 is ``fixed``, P = 0.5 an independent random sign each step.
``benchmarks/diag_sign_persistence.py`` measures the solvers' flip rates along a walk.

Each walk is decoded and measured as the experiment does (``measure_run`` with the experiment's
vision interpreter), and per segment set the script prints M2 (the code's count of ranking
positions changed, per 1000 iterations) and M7 (the code's L1 of run-averaged probabilities).

``--index-draw code`` draws the eigenvector as the official code does (its column
``h - round(u n)``, clamped: the largest with probability 1.5/n, the n-th largest 0.5/n, the
others 1/n) instead of uniformly (``uniform``, the toolkit's and the default); it applies to the
``eigh*`` and ``persistent:P`` signs (``persistent:0.5`` is ``random``'s sign, ``persistent:0``
``fixed``'s).

``--atol 0.01`` walks with the code's absolute zero-eigenvalue threshold on the blocks (SiMExp
then never draws an eigenvector whose eigenvalue is 0.01 or less).

``--decoded-pixels clamp,raw`` measures each image walk once per decoding, the walk made once:
``clamp`` (the experiment's default) caps the decoded pixels to [0, 1] before they are
re-classified, ``raw`` (the paper's code, the experiment's ``--decoded-pixels raw``) leaves them
as decoded; each decoding gets its own M7 line, so the cap's share of M7 is isolated.

``--model DIR`` reruns image rows on another model folder (same inputs, segments, seeds and
walk settings), e.g. one trained with the paper's recipe, to see whether the model decides how
far the walks go; the original class is then that model's top class at the start.

Text rows (e.g. ``--rows results/interpretations-hatexplain-token``, T = 1 only) are rerun with
the experiment's own task: its classifier, posts and masked-LM decoder (``load_task``); M2 is
then also given as the text's count (ranking inversions per 1000 iterations).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from safetensors.torch import load_file, save_file

import simec
from simec import explore, load_adapter
from simec.data import load_idx_dataset
from simec.errors import RankZeroMetricError
from simec.experiments.interpretations.config import config_from_dict
from simec.experiments.interpretations.inputs import load_task
from simec.explore import blocks as explore_blocks
from simec.explore.config import ExploreConfig
from simec.geometry.blocks import BlockSpectra
from simec.interpret import ViTDecoder
from simec.interpret import measures as m
from simec.interpret.walk_measures import measure_run, vision_interpreter
from simec.models.cache import resolve_model_path


def rebuilt_blocks(spectra: BlockSpectra) -> torch.Tensor:
    """(m, h, h) float64: each block g_i = V diag(lambda) V^T rebuilt from its spectrum."""
    vectors = spectra.vectors.to(torch.float64)
    values = torch.where(spectra.keep, spectra.eigenvalues, 0).to(torch.float64)
    return vectors @ (values[:, :, None] * vectors.mT)


def _eigh_torch(g: torch.Tensor) -> torch.Tensor:
    return torch.linalg.eigh(g)[1]


def _eigh_numpy(g: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.linalg.eigh(g.cpu().numpy())[1]).to(g.device)


def _eigh_evr(g: torch.Tensor) -> torch.Tensor:
    out = [scipy.linalg.eigh(x, driver="evr")[1] for x in g.cpu().numpy()]
    return torch.from_numpy(np.stack(out)).to(g.device)


def _eigh_cuda(g: torch.Tensor) -> torch.Tensor:
    """torch.linalg.eigh on the GPU (cuSOLVER), as the official code ran; the walk stays where
    it is."""
    if not torch.cuda.is_available():
        raise SystemExit("error: eigh-cuda needs a CUDA GPU")
    return torch.linalg.eigh(g.to("cuda"))[1].to(g.device)


#: the eigensolvers whose eigenvector sign ``--sign eigh*`` keeps (ascending eigenvalues)
SOLVERS = {
    "eigh": _eigh_torch,
    "eigh-numpy": _eigh_numpy,
    "eigh-evr": _eigh_evr,
    "eigh-cuda": _eigh_cuda,
}


def _draw_index(
    spectra: BlockSpectra, generator: torch.Generator | None, rule: str = "uniform"
) -> torch.Tensor:
    """(m,) which non-null eigenvector each block moves along, 0 = the largest, from one
    ``rand`` u per block and the block's rank n. ``uniform``: floor(u n), each of the n with
    probability 1/n (the toolkit's draw). ``code``: the official code's column
    ``h - round(u n)`` clamped to the last one, i.e. max(round(u n) - 1, 0): the largest with
    probability 1.5/n, the n-th largest 0.5/n, the others 1/n."""
    rank = spectra.rank
    n = rank.clamp(min=1).to(torch.float64)
    u = torch.rand(
        len(rank), generator=generator, dtype=torch.float64, device=spectra.vectors.device
    )
    if rule == "code":
        return (torch.round(u * n).long() - 1).clamp(min=0)
    return (u * n).long().clamp(max=rank.clamp(min=1) - 1)


#: ``--index-draw``: how the eigenvector is drawn among a block's non-null ones
INDEX_DRAWS = ("uniform", "code")


def eigh_sign_directions(
    spectra: BlockSpectra,
    generator: torch.Generator | None,
    *,
    strict: bool = True,
    sign: str = "random",
    solver: str = "eigh",
    draw: str = "uniform",
) -> torch.Tensor:
    """(m, h): per block one non-null eigenvector drawn uniformly (one ``rand`` per block), with
    the sign the eigensolver ``solver`` (``SOLVERS``) gives it, as the official code does with
    ``torch.linalg.eigh``: the block rebuilt in float64 (``rebuilt_blocks``) and decomposed
    (ascending, so the non-null eigenvectors are its last ``rank`` columns). A zero block gives a
    zero row."""
    del strict, sign  # a zero block stays put either way; the sign is the solver's
    eigvecs = SOLVERS[solver](rebuilt_blocks(spectra))  # (m, h, h), ascending
    rank = spectra.rank
    column = eigvecs.shape[-1] - 1 - _draw_index(spectra, generator, draw)  # (draw+1)-th largest
    chosen = torch.gather(eigvecs, 2, column[:, None, None].expand(-1, eigvecs.shape[1], 1))[..., 0]
    chosen = chosen * (rank > 0).to(chosen.dtype)[:, None]
    return chosen.to(spectra.vectors.dtype)


class PersistentSign:
    """SiMExp's per-block direction with a synthetic sign of known persistence: the drawn
    eigenvector (our canonical sign) times a sign kept per block and eigenvector index, which
    starts at +1 and flips with probability ``flip`` at every step. ``reset(seed)`` before each
    walk; the flips come from their own generator, so the eigenvectors drawn are the walk's."""

    def __init__(self, flip: float, draw: str = "uniform") -> None:
        if not 0.0 <= flip <= 0.5:
            raise SystemExit(f"error: persistent:P needs 0 <= P <= 0.5, got {flip}")
        self.flip = flip
        self.draw = draw
        self.rng = np.random.default_rng(0)
        self.state: np.ndarray | None = None

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.state = None

    def __call__(
        self,
        spectra: BlockSpectra,
        generator: torch.Generator | None,
        *,
        strict: bool = True,
        sign: str = "random",
    ) -> torch.Tensor:
        del strict, sign
        m, k = spectra.eigenvalues.shape
        if self.state is None:
            self.state = np.ones((m, k))
        self.state = np.where(self.rng.random((m, k)) < self.flip, -self.state, self.state)
        draw = _draw_index(spectra, generator, self.draw)
        index = draw[:, None, None].expand(-1, spectra.vectors.shape[1], 1)
        chosen = torch.gather(spectra.vectors, 2, index)[..., 0]
        signs = torch.from_numpy(self.state[np.arange(m), draw.cpu().numpy()])
        factor = signs.to(chosen) * (spectra.rank > 0).to(chosen.dtype)
        return factor[:, None] * chosen


#: the toolkit's own per-block direction (signs ``random`` and ``fixed``), before any ``--sign``
TOOLKIT_DIRECTIONS = explore_blocks.block_nonnull_directions


def sign_chooser(
    sign: str, draw: str = "uniform"
) -> tuple[Callable[..., torch.Tensor], PersistentSign | None]:
    """The per-block direction function of ``--sign`` with the eigenvector drawn by ``draw``
    (``INDEX_DRAWS``) (to put in place of ``simec.explore.blocks.block_nonnull_directions``), and
    the ``PersistentSign`` to reset before each walk when it is one. ``fixed`` also needs
    ``direction_sign="fixed"`` in the walk's config. The toolkit's own ``random`` and ``fixed``
    draw uniformly: with ``draw="code"`` use ``persistent:0.5`` / ``persistent:0`` instead. An
    unknown sign or draw is a one-line error."""
    if draw not in INDEX_DRAWS:
        raise SystemExit(f"error: unknown --index-draw {draw!r}; choose one of {INDEX_DRAWS}")
    if sign in SOLVERS:
        return partial(eigh_sign_directions, solver=sign, draw=draw), None
    if sign.startswith("persistent:"):
        try:
            flip = float(sign.split(":", 1)[1])
        except ValueError:
            raise SystemExit(f"error: persistent:P needs a number P, got {sign!r}") from None
        persistent = PersistentSign(flip, draw)
        return persistent, persistent
    if sign in ("random", "fixed"):
        if draw != "uniform":
            alike = "persistent:0.5" if sign == "random" else "persistent:0"
            raise SystemExit(
                f"error: --sign {sign} is the toolkit's uniform draw; with --index-draw {draw} "
                f"use --sign {alike} (the same sign)"
            )
        return TOOLKIT_DIRECTIONS, None
    raise SystemExit(f"error: unknown --sign {sign!r}")


def walk_config(
    ecfg: ExploreConfig, sign: str, persistent: PersistentSign | None, seed: int
) -> ExploreConfig:
    """Ready one walk for ``--sign``: ``fixed`` takes the toolkit's ``direction_sign="fixed"``,
    and a ``persistent:P`` sign (``sign_chooser``'s second value) starts again from ``seed``."""
    if persistent is not None:
        persistent.reset(seed)
    return replace(ecfg, direction_sign="fixed") if sign == "fixed" else ecfg


def tempered(model_dir: str, temperature: float, tmp: Path) -> simec.TorchAdapter:
    """The model saved again with its classifier weight and bias divided by T (logits / T),
    beside a copy of every other file of its folder (preprocessing, labels), then loaded like
    the original: the user's model and folder are not changed."""
    source = resolve_model_path(model_dir)
    folder = tmp / f"T{temperature:g}"
    shutil.copytree(source, folder)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    tensors["classifier.weight"] = tensors["classifier.weight"] / temperature
    tensors["classifier.bias"] = tensors["classifier.bias"] / temperature
    save_file(tensors, weights, metadata={"format": "pt"})
    return load_adapter(str(folder))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="results/interpretations-mnist-token-one-q2")
    ap.add_argument("--temperatures", default="1,2")
    ap.add_argument("--only", default="", help="comma list of row names (default: every row)")
    ap.add_argument(
        "--sign",
        default="random",
        help="random, fixed, eigh, eigh-numpy, eigh-evr, eigh-cuda or persistent:P (0<=P<=0.5)",
    )
    ap.add_argument(
        "--index-draw",
        default="uniform",
        help="uniform (the toolkit's) or code (the official code's h - round(u n); not with "
        "--sign random/fixed: use persistent:0.5 / persistent:0)",
    )
    ap.add_argument(
        "--decoded-pixels",
        default="clamp",
        help="images: comma list of clamp / raw, each walk measured once per decoding",
    )
    ap.add_argument(
        "--atol",
        type=float,
        default=None,
        help="the walks' absolute zero-eigenvalue threshold (the code's 0.01; default: the rows')",
    )
    ap.add_argument(
        "--model",
        default=None,
        help="images: rerun the walks on this model folder instead of the rows' (its own top class "
        "at the start is then the original class)",
    )
    args = ap.parse_args()
    decodings = [d for d in args.decoded_pixels.split(",") if d]
    if not decodings or any(d not in ("clamp", "raw") for d in decodings):
        raise SystemExit(f"error: --decoded-pixels takes clamp and/or raw, got {decodings}")
    chooser, persistent = sign_chooser(args.sign, args.index_draw)
    explore_blocks.block_nonnull_directions = chooser  # type: ignore[assignment]
    torch.set_num_threads(1)
    folder = Path(args.rows)
    cfg = config_from_dict(json.loads((folder / "config.json").read_text())["config"])
    temperatures = [float(t) for t in args.temperatures.split(",")]
    task = None
    if Path(cfg.data).is_file():  # text rows: posts in a .jsonl file (images: an IDX folder)
        if temperatures != [1.0]:
            raise SystemExit("error: text rows are rerun at --temperatures 1 only")
        task = load_task(cfg)  # the experiment's classifier, posts and masked-LM decoder
    tmp = Path(tempfile.mkdtemp(prefix="simec-temperature-"))
    data = load_idx_dataset(cfg.data) if task is None else None
    posts = {} if task is None else {i.key: i.raw for i in task.inputs}
    names = [n for n in args.only.split(",") if n]
    paths = sorted((folder / "rows").glob("*.json"))
    paths = [p for p in paths if not names or p.stem in names]
    walk = cfg.explore
    if task is not None and decodings != ["clamp"]:
        raise SystemExit("error: --decoded-pixels is for image rows")
    if task is not None and args.model is not None:
        raise SystemExit("error: --model is for image rows")
    print(
        f"load average {os.getloadavg()[0]:.2f}; {walk.step_rule}, {walk.metric_blocks}, "
        f"sign {args.sign}, index draw {args.index_draw}, decoded pixels {','.join(decodings)}, "
        f"atol {args.atol if args.atol is not None else walk.atol}"
    )
    print(
        "T | row | segments | p(orig) start | end | lowest | stored points off the class | "
        "M3 top-1 changes | M2 code | mean L1 per stored point (per decoding) | "
        "explored coordinates at the box's bound, start/end | s"
    )
    try:
        for temperature in temperatures:
            model_dir = args.model or cfg.model
            adapter = tempered(model_dir, temperature, tmp) if task is None else task.adapter
            decoders = {
                d: ViTDecoder(adapter, clamp=d == "clamp") for d in decodings if task is None
            }
            runs: dict[tuple[str, str], list] = {}
            for path in paths:
                row = json.loads(path.read_text())
                ecfg = cfg.explore_config("simexp", row["eta"], row["segments"])
                if args.atol is not None:
                    ecfg = replace(ecfg, atol=args.atol)
                ecfg = walk_config(ecfg, args.sign, persistent, row["seed"])
                if task is None:
                    assert data is not None  # image rows: the IDX folder was read above
                    image = data.images[row["index"]]
                    try:
                        res = explore(adapter, image, ecfg, seed=row["seed"])
                    except RankZeroMetricError as err:  # e.g. --atol on another --model
                        print(f"{temperature:g} | {path.stem} | not walked: {err}", flush=True)
                        continue
                    interpreters = {
                        d: vision_interpreter(
                            adapter, image, res.explored_segments, decoder=decoder
                        )
                        for d, decoder in decoders.items()
                    }
                else:
                    raw = posts[row["input_id"]]
                    res = explore(adapter, raw, ecfg, seed=row["seed"])
                    interpreters = {"clamp": task.interpreter(res, raw)}
                recs = {d: measure_run(res, it) for d, it in interpreters.items()}
                for d, rec in recs.items():
                    runs.setdefault((path.stem.rsplit("-", 1)[-1], d), []).append(rec)
                rec = next(iter(recs.values()))
                original = (
                    row["predicted"]
                    if args.model is None
                    else int(res.trajectory_probabilities[0].argmax())
                )
                p = res.trajectory_probabilities[:, original]
                top = res.trajectory_probabilities.argmax(-1)
                m2 = m.per_1000(rec.ranking_positions_embedding, rec.iterations)
                bound = "-"
                if task is None:  # explored coordinates the box holds at its bound, start / end
                    lo, hi = (b.to(res.trajectory) for b in adapter.embedding_bounds())
                    pts = res.trajectory[:, res.explored_segments]
                    tol = 1e-6 * torch.maximum(lo.abs(), hi.abs()).clamp(min=1.0)
                    held = ((pts - lo).abs() <= tol) | ((pts - hi).abs() <= tol)
                    bound = f"{int(held[0].sum())}/{int(held[-1].sum())} of {held[0].numel()}"
                l1 = " / ".join(f"{float(sum(r.l1) / len(r.l1)):.4f}" for r in recs.values())
                print(
                    f"{temperature:g} | {path.stem} | {len(row['segments'])} | {float(p[0]):.4f} | "
                    f"{float(p[-1]):.4f} | {float(p.min()):.4f} | "
                    f"{int((top != original).sum())} | {rec.top1_changes_embedding} | "
                    f"{m2:.1f} | {l1} | {bound} | {res.elapsed_seconds:.0f}",
                    flush=True,
                )
            for (name, decoding), records in runs.items():
                code = m.code_l1_over_runs(
                    [r.embedding_probabilities for r in records],
                    [r.interpretation_probabilities for r in records],
                )
                m2s = [m.per_1000(r.ranking_positions_embedding, r.iterations) for r in records]
                inv = [m.per_1000(r.ranking_inversions_embedding, r.iterations) for r in records]
                print(
                    f"T = {temperature:g}, {name}, decoded pixels {decoding}, {len(records)} "
                    "runs: M2 code count per 1000 "
                    f"{sum(m2s) / len(m2s):.1f} (inversions {sum(inv) / len(inv):.2f}); "
                    f"M7 code L1 {code['mean']:.4f} "
                    f"(sd {code['sd']:.4f})",
                    flush=True,
                )

    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
