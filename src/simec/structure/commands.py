"""``simec structure match|spectrum|lipschitz`` on a vision model and an IDX data set.

Any Hugging Face vision model that ``load_adapter`` loads works: ViT, DeiT, BEiT, Swin,
ViT-MSN (image classifiers) and ViT-MAE or CLIP's vision tower (no head: ``cls``/``pooled`` only);
see ``vision_embedding_fn`` for what each embedding is. The IDX images (28x28 gray) are fitted
to the model (``HFImageClassifierAdapter.fit_image``: bilinear resize, channel replication), and
every analysis works in the model's pixel space, [0, 1] per pixel before normalisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_json, check_output_dir, environment
from ..data import load_idx_dataset
from ..errors import InputError, ModelError
from ..models import as_image_model, load_adapter
from ..report import plots
from ..stats import mean_std
from .analyses import (
    KINDS,
    LIPSCHITZ_ASCENT_STEPS,
    LIPSCHITZ_DIRECTIONS,
    LIPSCHITZ_EPSILONS,
    directional_lipschitz,
    jacobian_spectrum,
    match_embedding,
    vision_embedding_fn,
)

__all__ = [
    "LipschitzConfig",
    "MatchConfig",
    "SpectrumConfig",
    "StructureConfig",
    "structure_lipschitz",
    "structure_match",
    "structure_spectrum",
]

DATASETS = ("mnist", "fashion-mnist")
#: files read as images from a folder given with --input/--source/--target
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
_INPUT_HELP = (
    "instead of --data: an image (.png/.jpg/.npy) or a folder of them (the first --count, "
    "in name order)"
)
_SOURCE_HELP = "instead of --data: the source image (.png/.jpg/.npy), or a folder of them"
_TARGET_HELP = (
    "with --source: the image whose embedding the source is changed to match (or a folder)"
)


@dataclass(frozen=True)
class StructureConfig:
    """What every analysis needs: a vision model, an IDX data set (test split) and where to write.

    ``kind`` is the embedding analysed (see ``vision_embedding_fn``); ``count`` the number of
    images analysed (pairs for ``MatchConfig``).
    """

    model: str = field(metadata={"help": "a vision model (save_pretrained)", "metavar": "DIR"})
    out: str = field(metadata={"metavar": "DIR"})
    data: str | None = field(
        default=None,
        metadata={"help": "an IDX data set folder (MNIST layout, test split)", "metavar": "DIR"},
    )
    dataset: str = field(default="mnist", metadata={"choices": DATASETS})
    count: int = field(default=20, metadata={"help": "images", "min": 1})
    kind: str = field(
        default="cls",
        metadata={
            "help": "last layer's CLS token (Swin: its pooled output), mean over tokens, or the "
            "logits of a classifier",
            "choices": KINDS,
        },
    )
    seed: int = 0
    device: str = "cpu"
    overwrite: bool = field(default=False, metadata={"help": "replace the result already in --out"})


@dataclass(frozen=True)
class MatchConfig(StructureConfig):
    """``structure match``: change ``count`` source images (each paired with a target image of
    another class) until their embedding matches the target's to ``tolerance``."""

    count: int = field(default=StructureConfig.count, metadata={"help": "pairs", "min": 1})
    tolerance: float = field(
        default=1e-2, metadata={"help": "relative embedding error to reach", "gt": 0}
    )
    max_steps: int = field(default=2000, metadata={"help": "Adam steps per pair at most", "min": 1})
    source: str | None = field(default=None, metadata={"help": _SOURCE_HELP, "metavar": "PATH"})
    target: str | None = field(default=None, metadata={"help": _TARGET_HELP, "metavar": "PATH"})


@dataclass(frozen=True)
class SpectrumConfig(StructureConfig):
    """``structure spectrum``: the embedding's Jacobian spectrum and null space per image."""

    input: str | None = field(default=None, metadata={"help": _INPUT_HELP, "metavar": "PATH"})


@dataclass(frozen=True)
class LipschitzConfig(StructureConfig):
    """``structure lipschitz``: directional Lipschitz quotients, random vs optimised."""

    input: str | None = field(default=None, metadata={"help": _INPUT_HELP, "metavar": "PATH"})

    epsilons: tuple[float, ...] = field(
        default=LIPSCHITZ_EPSILONS,
        metadata={"help": "perturbation sizes", "metavar": "E1,E2,...", "gt": 0},
    )
    directions: int = field(
        default=LIPSCHITZ_DIRECTIONS,
        metadata={"help": "random unit directions per image and epsilon", "min": 1},
    )
    ascent_steps: int = field(
        default=LIPSCHITZ_ASCENT_STEPS,
        metadata={"help": "projected gradient-ascent steps for the optimised direction", "min": 1},
    )


def _pairs(labels: np.ndarray, count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` (source, target) index pairs with different labels, reproducibly."""
    rng = np.random.default_rng(seed)
    pairs: list[tuple[int, int]] = []
    while len(pairs) < count:
        a, b = (int(v) for v in rng.integers(0, len(labels), size=2))
        if labels[a] != labels[b]:
            pairs.append((a, b))
    return pairs


def _stats(values: list[float]) -> dict[str, float]:
    return mean_std(values).as_dict()


# the settings every <command>.json records (those another analysis uses at their defaults), as
# before the analyses were split
_RECORDED = (
    "model",
    "data",
    "dataset",
    "count",
    "kind",
    "seed",
    "tolerance",
    "max_steps",
    "epsilons",
    "directions",
    "ascent_steps",
    "device",
)
_OTHER_DEFAULTS = {
    "tolerance": MatchConfig.tolerance,
    "max_steps": MatchConfig.max_steps,
    "epsilons": LIPSCHITZ_EPSILONS,
    "directions": LIPSCHITZ_DIRECTIONS,
    "ascent_steps": LIPSCHITZ_ASCENT_STEPS,
}


def image_files(path: str, option: str) -> list[Path]:
    """An image file, or the image files of a folder in name order (``IMAGE_SUFFIXES``)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(
                f"{option} {path!r}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder"
            )
        return files
    if not p.is_file():
        raise InputError(f"{option} {path!r} does not exist: give an image file or a folder")
    return [p]


class _Images:
    """The images of one analysis: raw images (arrays or paths), labels (None for the user's
    own files), names for the rows, and the record of where they came from."""

    def __init__(self, command: str, cfg: StructureConfig) -> None:
        own = {
            name: getattr(cfg, name)
            for name in (("source", "target") if command == "match" else ("input",))
            if getattr(cfg, name, None) is not None
        }
        flags = " and ".join(f"--{n}" for n in own) or (
            "--source/--target" if command == "match" else "--input"
        )
        if cfg.data is not None and own:
            raise InputError(f"give --data or {flags}, not both")
        if cfg.data is None and not own:
            raise InputError(f"give the images: --data DIR (an IDX data set) or {flags} PATH")
        self.source = own
        self.labels: np.ndarray | None = None
        if cfg.data is not None:
            data = load_idx_dataset(cfg.data, split="test", kind=cfg.dataset)
            self.raw: list[Any] = list(data.images)
            self.labels = data.labels
            self.names = [str(i) for i in range(len(data))]
            self.pairs: list[tuple[int, int]] = []
            return
        if command == "match":
            if "source" not in own or "target" not in own:
                missing = "--target" if "source" in own else "--source"
                raise InputError(f"match needs both --source and --target; {missing} is missing")
            src, tgt = (
                image_files(own["source"], "--source"),
                image_files(own["target"], "--target"),
            )
            if len(src) != len(tgt):
                raise InputError(
                    f"--source has {len(src)} images and --target {len(tgt)}: folders are "
                    "paired in name order, so they must hold as many"
                )
            files = [*src, *tgt]
            self.pairs = [(i, len(src) + i) for i in range(len(src))]
        else:
            files = image_files(own["input"], "--input")[: cfg.count]
            self.pairs = []
        self.raw = [str(f) for f in files]
        self.names = [f.name for f in files]

    def __len__(self) -> int:
        return len(self.raw)


class _Setup:
    """The model, its embedding function and the images of one analysis; the output folder."""

    def __init__(self, command: str, cfg: StructureConfig) -> None:
        check_output_dir(cfg.out, results=(f"{command}.json",), overwrite=cfg.overwrite)
        self.images = images = _Images(command, cfg)
        adapter = as_image_model(load_adapter(cfg.model, space="pixels", device=cfg.device))
        if adapter is None:
            raise ModelError(f"{cfg.model} is not a vision model; simec structure needs one")
        self.adapter = adapter
        self.fn = vision_embedding_fn(adapter, cfg.kind)
        self.own = bool(images.source)
        if self.own:  # read every image now: a bad file is an error before any computation
            self.fitted = [adapter.fit_image(raw) for raw in images.raw]
            self.count = len(images.pairs) if command == "match" else len(images)
        else:
            self.count = cfg.count
            if command != "match" and cfg.count > len(images):
                raise InputError(
                    f"--count {cfg.count} is more than the {len(images)} images in {cfg.data}"
                )
            assert images.labels is not None
            if command == "match" and len(np.unique(images.labels)) < 2:
                raise InputError(f"match needs images of at least two classes; {cfg.data} has one")
            images.pairs = _pairs(images.labels, cfg.count, cfg.seed) if command == "match" else []
        self.command = command
        self.outdir = Path(cfg.out)
        self.outdir.mkdir(parents=True, exist_ok=True)
        settings = {**_OTHER_DEFAULTS, **asdict(cfg)}
        c, (h, w) = adapter.num_channels, adapter.image_size
        first = np.asarray(self.original(0))
        recorded = {key: settings[key] for key in _RECORDED}
        recorded["count"] = self.count
        if self.own:  # the user's files, recorded after "data" (None)
            recorded = dict(
                [*list(recorded.items())[:2], *images.source.items(), *list(recorded.items())[2:]]
            )
        self.config = {
            "command": command,
            **recorded,
            "epsilons": list(settings["epsilons"]),
            "model_info": adapter.describe(),
            # the data's images (gray) and what fit_image made of them for the model
            "image_fit": {
                "data_hwc": list(first.shape[:2]) + [first.shape[2] if first.ndim == 3 else 1],
                "model_hwc": [h, w, c],
                "rule": "bilinear resize (antialiased when shrinking), gray repeated per channel",
            },
        }

    def original(self, idx: int) -> Any:
        """Image ``idx`` as read (an IDX array, or the user's image file as an array)."""
        raw = self.images.raw[idx]
        if isinstance(raw, str):
            from ..models.images import load_image

            return load_image(raw)
        return raw

    def fit(self, idx: int) -> torch.Tensor:
        """Image ``idx`` fitted to the model, [0, 1] pixels."""
        if self.own:
            return self.fitted[idx]
        return self.adapter.fit_image(self.images.raw[idx])

    def pixels(self, idx: int) -> torch.Tensor:
        """Image ``idx`` fitted to the model and normalised (the model's pixel space)."""
        return self.adapter.normalize(self.fit(idx))

    def label(self, idx: int) -> int | None:
        labels = self.images.labels
        return None if labels is None else int(labels[idx])

    def write(self, summary: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        result = {
            "config": self.config,
            "summary": summary,
            "rows": rows,
            "environment": environment(),
        }
        atomic_write_json(self.outdir / f"{self.command}.json", result)
        return summary


def structure_match(cfg: MatchConfig) -> dict[str, Any]:
    """Match ``cfg.count`` source embeddings to targets of another class; write match.json and
    match_<i>.png for the first three pairs; return the summary."""
    setup = _Setup("match", cfg)
    adapter, fn, images, outdir = setup.adapter, setup.fn, setup.images, setup.outdir
    tolerance, max_steps = cfg.tolerance, cfg.max_steps
    rows: list[dict[str, Any]] = []
    for i, (a, b) in enumerate(images.pairs):
        src, tgt = setup.fit(a), setup.fit(b)
        res = match_embedding(
            fn, src, tgt, tolerance=tolerance, max_steps=max_steps, to_model=adapter.normalize
        )
        pred = None
        if adapter.has_head:
            with torch.no_grad():
                logits = adapter.image_logits(res.result)
            pred = int(logits.argmax())
        rows.append(
            {
                "source": images.names[a] if setup.own else a,
                "target": images.names[b] if setup.own else b,
                "source_label": setup.label(a),
                "target_label": setup.label(b),
                "predicted_after": pred,
                "relative_error": res.relative_error,
                "cosine": res.cosine,
                "l2": res.l2,
                "linf": res.linf,
                "iterations": res.iterations,
                "seconds": res.seconds,
                "converged": res.converged,
            }
        )
        if i < 3:
            fig, _ = plots.plot_image_strip(
                [src, tgt, res.result, (res.result - src).abs()],
                ["source", "target", f"result (err {res.relative_error:.1e})", "|difference|"],
            )
            plots.save_figure(fig, outdir / f"match_{i}.png")
    summary = {
        "success_rate": sum(r["converged"] for r in rows) / len(rows),
        # None for a model without a classification head
        "target_class_reached": (
            sum(r["predicted_after"] == r["target_label"] for r in rows) / len(rows)
            if adapter.has_head and not setup.own
            else None
        ),
        **{
            k: _stats([r[k] for r in rows])
            for k in ("relative_error", "cosine", "l2", "linf", "iterations", "seconds")
        },
    }
    return setup.write(summary, rows)


def structure_spectrum(cfg: SpectrumConfig) -> dict[str, Any]:
    """Jacobian spectra of ``cfg.count`` images; write spectrum.json and spectrum.png."""
    setup = _Setup("spectrum", cfg)
    rows: list[dict[str, Any]] = []
    spectra = []
    for idx in range(setup.count):
        spec = jacobian_spectrum(setup.fn, setup.pixels(idx))
        spectra.append(spec.singular_values)
        rows.append(
            {
                "index": setup.images.names[idx] if setup.own else idx,
                "null_dims": {str(k): v for k, v in spec.null_dims.items()},
                "sigma_max": float(spec.singular_values[0]),
                "input_dim": spec.input_dim,
                "output_dim": spec.output_dim,
            }
        )
    fig, ax = plots.subplots(figsize=(6, 3.2))
    for s in spectra:
        ax.semilogy((s / s[0]).numpy(), alpha=0.4)
    ax.set_xlabel("index")
    ax.set_ylabel("sigma_i / sigma_max")
    ax.set_title(f"Jacobian spectra of the {cfg.kind} embedding ({setup.count} images)")
    plots.save_figure(fig, setup.outdir / "spectrum.png")
    summary = {
        "input_dim": rows[0]["input_dim"],
        "output_dim": rows[0]["output_dim"],
        "null_dims": {k: _stats([r["null_dims"][k] for r in rows]) for k in rows[0]["null_dims"]},
    }
    return setup.write(summary, rows)


def structure_lipschitz(cfg: LipschitzConfig) -> dict[str, Any]:
    """Directional Lipschitz quotients of ``cfg.count`` images; write lipschitz.json and .png."""
    setup = _Setup("lipschitz", cfg)
    rows: list[dict[str, Any]] = []
    ratios: list[list[float]] = []
    for idx in range(setup.count):
        lip = directional_lipschitz(
            setup.fn,
            setup.pixels(idx),
            epsilons=cfg.epsilons,
            directions=cfg.directions,
            ascent_steps=cfg.ascent_steps,
            seed=cfg.seed + idx,
        )
        ratios.append(lip.ratio().tolist())
        rows.append(
            {
                "index": setup.images.names[idx] if setup.own else idx,
                "epsilons": lip.epsilons,
                "sigma_max": lip.sigma_max,
                "random_mean": lip.random.mean(1).tolist(),
                "optimized": lip.optimized.tolist(),
            }
        )
    eps = rows[0]["epsilons"]
    fig, ax = plots.subplots(figsize=(5, 3.2))
    ax.loglog(eps, np.mean([r["random_mean"] for r in rows], 0), "o-", label="random")
    ax.loglog(eps, np.mean([r["optimized"] for r in rows], 0), "s-", label="optimised")
    ax.set_xlabel("epsilon")
    ax.set_ylabel("||f(x+eps v) - f(x)|| / eps")
    ax.legend()
    plots.save_figure(fig, setup.outdir / "lipschitz.png")
    summary = {
        "epsilons": eps,
        "optimized_over_random": [_stats([r[i] for r in ratios]) for i in range(len(eps))],
    }
    return setup.write(summary, rows)
