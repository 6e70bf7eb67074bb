"""The inputs of a run (one MNIST image per class, or HateXplain posts), the model, and how
its walks are decoded (``Task``): the one place that loads them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...explore import ExplorationResult
from ...interpret.walk_measures import Interpreter, text_interpreter, vision_interpreter
from ...models import as_masked_lm, load_adapter
from ...models.cache import cache_dir, resolve_model_path
from ...models.hf_text import HFSequenceClassifierAdapter
from .config import MLM_FALLBACK, MLM_PREFERRED, InterpretationsConfig

__all__ = [
    "Input",
    "Task",
    "load_task",
    "resolve_mlm",
]


@dataclass(frozen=True)
class Input:
    """One input of the run: its key (row file names), index in the data set, label, raw input."""

    key: str
    index: int
    label: int
    raw: Any


@dataclass(frozen=True)
class Task:
    """The model, the inputs, the special segments never explored and how a walk is decoded."""

    kind: str
    adapter: Any
    inputs: list[Input]
    special: frozenset[str]
    interpreter: Callable[[ExplorationResult, Any], Interpreter]
    mlm: str | None


def resolve_mlm(name: str) -> str:
    """``auto`` -> the preferred masked LM if it is in the cache, else the fallback."""
    if name != "auto":
        return name
    preferred = cache_dir() / "models" / MLM_PREFERRED / "config.json"
    return MLM_PREFERRED if preferred.is_file() else MLM_FALLBACK


def _images(cfg: InterpretationsConfig) -> list[Input]:
    from ...data import load_idx_dataset

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
        chosen.append(Input(f"{i:05d}", i, cls, data.images[i]))
    return chosen


def _posts(cfg: InterpretationsConfig, adapter: HFSequenceClassifierAdapter) -> list[Input]:
    from ...data import load_hatexplain_posts

    data = load_hatexplain_posts(cfg.data, labels=("hate speech", "offensive"))
    chosen = []
    for position, (text, label, pid) in enumerate(zip(data.texts, data.labels, data.ids)):
        if len(adapter.tokenizer(text)["input_ids"]) <= cfg.max_tokens:
            chosen.append(Input(str(pid), position, int(label), text))
        if len(chosen) == cfg.posts:
            break
    if not chosen:
        raise InputError(f"no hate-speech/offensive post has at most {cfg.max_tokens} tokens")
    return chosen


def load_task(cfg: InterpretationsConfig) -> Task:
    adapter: Any = load_adapter(cfg.model, device=cfg.device)  # narrowed by its modality
    if adapter.modality == "image":
        if Path(cfg.data).is_file():
            raise InputError(f"{cfg.model} classifies images: --data must be an IDX folder")
        from ...interpret import ViTDecoder

        decoder = ViTDecoder(adapter, clamp=cfg.decoded_pixels == "clamp")

        def vision(result: ExplorationResult, raw: Any) -> Interpreter:
            return vision_interpreter(adapter, raw, result.explored_segments, decoder=decoder)

        return Task("vision", adapter, _images(cfg), frozenset({"[CLS]"}), vision, None)
    if adapter.modality == "text":
        if Path(cfg.data).is_dir():
            raise InputError(f"{cfg.model} classifies text: --data must be a HateXplain JSONL")
        from ...interpret.decode_text import MLMDecoder

        mlm_name = resolve_mlm(cfg.mlm)
        mlm_adapter = as_masked_lm(load_adapter(mlm_name, device=cfg.device))
        if mlm_adapter is None:
            raise InputError(f"--mlm {mlm_name} is not a masked LM (a *ForMaskedLM model)")
        mlm = MLMDecoder(mlm_adapter)

        def text(result: ExplorationResult, raw: Any) -> Interpreter:
            prepared = adapter.prepare(raw)
            return text_interpreter(adapter, prepared, mlm, result.explored_segments)

        special = frozenset(adapter.tokenizer.all_special_tokens)
        return Task("text", adapter, _posts(cfg, adapter), special, text, mlm_name)
    raise InputError(f"{cfg.model} is neither an image nor a sequence classifier")
