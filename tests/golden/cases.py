"""Golden trajectories: fixed-seed runs whose outputs are frozen in ``tests/golden/data/``.

They were recorded with the code as it stood before the redesign of issue 12 (commit 2635c68)
and guard every later change of the explorer: float64 runs must reproduce them to 1e-12
relative (bit for bit with ``SIMEC_GOLDEN_EXACT=1``), float32 runs to 1e-6 (see ``test_golden``).
To regenerate after an *intended* change (say why in the commit):

    python -m tests.golden.record

The tiny models are stored beside the data (safetensors), so the goldens do not depend on how
a future transformers version initialises weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tests.conftest import LayerNormHead

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
MODELS = DATA / "models"

#: the fields of an ExplorationResult the goldens freeze
TENSOR_FIELDS = ("probabilities", "trajectory", "trajectory_probabilities")
LIST_FIELDS = (
    "lambda_max",
    "step_sizes",
    "ranks",
    "drift",
    "uncorrected_drift",
    "trajectory_steps",
    "recoveries",
    "stop_reason",
    "explored_segments",
    "labels",
)


def images(count: int, size: int = 8, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.05, 0.95, size=(size, size)).astype(np.float32) for _ in range(count)]


def head_start(scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(4)
    return scale * torch.randn(4, 6, generator=gen, dtype=torch.float64)


def vit_adapter(dtype: str = "float64") -> Any:
    from simec.models import load_adapter

    return load_adapter(MODELS / "vit", dtype=dtype)


def bert_adapter(dtype: str = "float64") -> Any:
    from simec.models import load_adapter

    return load_adapter(MODELS / "bert", dtype=dtype)


def head_adapter(mode: str = "plain") -> Any:
    """The LayerNorm head with its stored weights: ``torch.manual_seed`` alone does not fix
    them across machines (``uniform_``'s vectorised and scalar kernels round the float32 weights
    differently by one unit in the last place, ~1e-8 relative)."""
    from safetensors.torch import load_file

    from simec import TorchAdapter

    head = LayerNormHead(mode, limit=2.6 if mode == "nan" else 3.0)
    head.load_state_dict(load_file(str(MODELS / "head.safetensors")))
    return TorchAdapter(head, dtype="float64")


@dataclass(frozen=True)
class Case:
    """A golden run: ``make(**options)`` returns its ExplorationResults. The options are data,
    so that a test can run the same case with one option changed (``dataclasses.replace``)."""

    name: str
    dtype: str  # "float64": to 1e-12 relative (bit for bit with SIMEC_GOLDEN_EXACT=1); "float32"
    make: Callable[..., list[Any]]
    options: dict[str, Any] = field(default_factory=dict)

    def run(self) -> list[Any]:
        return self.make(**self.options)


def _explore(adapter_fn: Callable[[], Any], raw: Any) -> Callable[..., list[Any]]:
    def make(**options: Any) -> list[Any]:
        from simec.explore import explore

        return [explore(adapter_fn(), raw, **options)]

    return make


def _batch(adapter_fn: Callable[[], Any], raws: list[Any]) -> Callable[..., list[Any]]:
    def make(**options: Any) -> list[Any]:
        from simec.explore import explore_batch

        return explore_batch(adapter_fn(), raws, **options)

    return make


def _head(name: str, *, nan: bool, **options: Any) -> Case:
    """A SiMExp walk of the LayerNorm head, unprojected so that it can run away: the "nan"
    head (from a start of half the scale) turns NaN before |x| reaches 3."""
    adapter_fn = (lambda: head_adapter("nan")) if nan else head_adapter
    start = head_start(0.5 if nan else 1.0)
    make = _explore(adapter_fn, start)
    return Case(name, "float64", make, dict(algorithm="simexp", projection="none", **options))


TEXT = "the cat sat on the mat."
IMAGE = images(1)[0]

_VIT = _explore(vit_adapter, IMAGE)
_BERT = _explore(bert_adapter, TEXT)

CASES: list[Case] = [
    Case("vit_simec_lowrank", "float64", _VIT, dict(steps=12, seed=1)),
    Case("vit_simexp_lowrank", "float64", _VIT, dict(algorithm="simexp", steps=12, seed=2)),
    Case("vit_simec_exact", "float64", _VIT, dict(method="exact", steps=4, seed=3)),
    Case(
        "vit_simexp_exact_fisher",
        "float64",
        _VIT,
        dict(algorithm="simexp", method="exact", steps=3, seed=4, output_metric="fisher-rao"),
    ),
    Case(
        "vit_simec_segments_corrector",
        "float64",
        _VIT,
        dict(steps=10, seed=5, segments=(0, 3, 4, 9), corrector=True, max_step=0.05),
    ),
    Case(
        "vit_simexp_step_projection_record_every",
        "float64",
        _VIT,
        dict(
            algorithm="simexp",
            steps=13,
            seed=6,
            projection="step",
            record_every=4,
            max_step=0.1,
            output_metric="euclidean-logits",
        ),
    ),
    Case(
        "vit_simec_uncapped",
        "float64",
        _VIT,
        dict(steps=6, seed=7, max_step=None, projection="none"),
    ),
    Case(
        "vit_simec_float32",
        "float32",
        _explore(lambda: vit_adapter("float32"), IMAGE),
        dict(steps=8),
    ),
    Case(
        "vit_batch_vs_single",
        "float64",
        _batch(vit_adapter, images(3, seed=1)),
        dict(algorithm="simexp", steps=8, seeds=[5, 0, 11]),
    ),
    Case("bert_simexp", "float64", _BERT, dict(algorithm="simexp", steps=10, seed=1)),
    Case(
        "bert_simec_segments_corrector_fisher",
        "float64",
        _BERT,
        dict(steps=10, seed=2, segments=(1, 2, 3), corrector=True, output_metric="fisher-rao"),
    ),
    Case(
        "bert_batch",
        "float64",
        _batch(bert_adapter, [TEXT, "i love you", "the dog sat on a mat!"]),
        dict(steps=6, seeds=[0, 1, 2]),
    ),
    _head("head_recover_nan", nan=True, steps=60, max_step=0.3, seed=2, recover=4),
    _head(
        "head_recover_diverged",
        nan=False,
        steps=40,
        max_step=0.5,
        seed=0,
        divergence_ratio=1.0,
        recover=6,
    ),
    _head("head_stop_nan", nan=True, steps=60, max_step=0.3, seed=2),
]


def dataset_run(out: Path) -> list[Any]:
    """A dataset run (batched, 5 inputs) from the stored digits; results in manifest order."""
    from simec.explore import ExplorationResult
    from simec.runs import ModelSpec, idx_items, run_dataset

    items, source = idx_items(DATA / "digits", limit=5)
    run_dataset(
        ModelSpec(str(MODELS / "vit"), dtype="float64"),
        items,
        out,
        source=source,
        batch_size=2,
        steps=6,
        seed=3,
    )
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    lines.sort(key=lambda e: e["index"])
    return [ExplorationResult.load(out / e["result"]) for e in lines]


def freeze(results: list[Any]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    tensors: dict[str, torch.Tensor] = {}
    lists: list[dict[str, Any]] = []
    for i, result in enumerate(results):
        for name in TENSOR_FIELDS:
            tensors[f"{i}.{name}"] = getattr(result, name).detach().cpu().contiguous()
        lists.append({name: getattr(result, name) for name in LIST_FIELDS})
    return tensors, lists
