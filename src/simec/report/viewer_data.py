"""What the run viewer shows, computed in Python: one JSON-able record per exploration run.

A run is read from its folder (``summary.json`` + ``trajectory.safetensors``) or taken as an
``ExplorationResult``. Fields missing from a run written by an older simec are left out and the
panel that needs them says so. Everything that needs the model (the decoded input at each stored
step, the class the model gives that decoded input itself, the importance heatmap of
Algorithm 3) is precomputed here, so the page needs no server.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError, SimecError
from ..explore.result import SUMMARY, TRAJECTORY, ExplorationResult

__all__ = [
    "DEFAULT_MAX_FRAMES",
    "RunView",
    "ModelSource",
    "first_change",
    "frame_indices",
    "png_data_uri",
    "read_run",
    "run_from_result",
]

#: stored steps beyond this many are subsampled (evenly, first and last always kept)
DEFAULT_MAX_FRAMES = 300


@dataclass
class RunView:
    """One run as the viewer sees it; ``None`` fields were not recorded (older runs)."""

    name: str
    summary: dict[str, Any]
    trajectory: torch.Tensor | None = None
    trajectory_steps: list[int] | None = None
    missing: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def config(self) -> dict[str, Any]:
        return _as_dict(self.summary.get("config"))

    @property
    def labels(self) -> list[str]:
        return [str(v) for v in self.summary.get("labels") or []]

    @property
    def probabilities(self) -> np.ndarray:
        return np.asarray(self.summary["probabilities"], dtype=np.float64)

    def model_dir(self) -> str | None:
        extra = self.config.get("extra") or {}
        path = extra.get("model_dir") if isinstance(extra, dict) else None
        return str(path) if path else None

    def space(self) -> str:
        model = self.summary.get("model") or {}
        extra = self.config.get("extra") or {}
        return str(model.get("space") or (extra.get("space") if extra else None) or "embeddings")


def _as_dict(config: Any) -> dict[str, Any]:
    """A run's configuration as a dict: an ExploreConfig (to_dict), a dict, or nothing."""
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    raise InputError(f"cannot read a run configuration of type {type(config).__name__}")


def run_from_result(result: ExplorationResult, name: str = "run") -> RunView:
    summary = result.summary()
    summary["config"] = _as_dict(summary.get("config"))
    summary = json.loads(json.dumps(summary, default=str))
    return RunView(
        name=name,
        summary=summary,
        trajectory=result.trajectory.detach().cpu(),
        trajectory_steps=list(result.trajectory_steps),
        source="ExplorationResult",
    )


def _not_a_run(path: Path) -> InputError:
    return InputError(
        f"{path} is not a simec run: expected {SUMMARY} (one exploration) or manifest.jsonl "
        "(a dataset run)"
    )


def read_run(path: str | os.PathLike, name: str | None = None) -> RunView:
    """A run folder, tolerant of fields an older simec did not write."""
    folder = Path(path)
    if not (folder / SUMMARY).is_file():
        raise _not_a_run(folder)
    try:
        summary = json.loads((folder / SUMMARY).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{folder}/{SUMMARY} cannot be read: {exc}") from None
    if not isinstance(summary, dict):
        raise InputError(f"{folder}/{SUMMARY} is not a run summary (not a JSON object)")
    view = RunView(name=name or folder.name, summary=summary, source=str(folder))
    try:  # the current format: the result's own reader
        result = ExplorationResult.load(folder)
        view = run_from_result(result, view.name)
        view.source = str(folder)
        return _check(view, folder)
    except Exception:  # an older or partial run: read what is there below
        pass
    tensors: dict[str, torch.Tensor] = {}
    if (folder / TRAJECTORY).is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(folder / TRAJECTORY))
        except (OSError, SafetensorError) as exc:
            view.missing["trajectory"] = f"{TRAJECTORY} cannot be read ({exc})"
    else:
        view.missing["trajectory"] = f"this run has no {TRAJECTORY}"
    if "probabilities" not in summary and "probabilities" in tensors:
        summary["probabilities"] = tensors["probabilities"].tolist()
    if "trajectory" in tensors and "trajectory_steps" in tensors:
        view.trajectory = tensors["trajectory"]
        view.trajectory_steps = tensors["trajectory_steps"].tolist()
    elif "trajectory" not in view.missing:
        view.missing["trajectory"] = f"{TRAJECTORY} holds no stored points"
    return _check(view, folder)


def _check(view: RunView, folder: Path) -> RunView:
    probs = view.summary.get("probabilities")
    if not probs or not isinstance(probs, list) or not isinstance(probs[0], list):
        raise InputError(f"{folder}/{SUMMARY} has no class probabilities: not a simec run")
    if not view.labels:
        view.summary["labels"] = [f"class {i}" for i in range(len(probs[0]))]
        view.missing["labels"] = "class names were not recorded"
    for key in ("lambda_max", "step_sizes", "drift"):
        if key not in view.summary:
            view.missing[key] = f"{key} was not recorded in this run (older simec)"
    return view


def first_change(predicted: Sequence[int]) -> int | None:
    """The first step whose predicted class differs from step 0's; None if it never does
    (the M8 measure, ``interpret.measures.first_change``, with one snapshot per step)."""
    from ..interpret.measures import first_change as first_change_m8

    return first_change_m8(list(predicted), list(range(len(predicted))))


def frame_indices(count: int, limit: int) -> list[int]:
    """Indices of at most ``limit`` of ``count`` frames, evenly spread, first and last kept."""
    if limit < 2:
        raise InputError(f"max_frames must be at least 2, got {limit}")
    if count <= limit:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, limit).round().astype(int).tolist()))


def png_data_uri(image: torch.Tensor | np.ndarray) -> str:
    """(C, H, W) or (H, W) pixels in [0, 1] -> a PNG data URI (8 bits per channel)."""
    from PIL import Image

    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    data = (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(data).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class ModelSource:
    """Adapters for decoding runs: an explicit one, ``--model``, or the run's recorded model.

    Adapters are cached per (model directory, space). A vision adapter given for one space is
    rebuilt for the other space from the same weights when a run needs it. ``mlm`` (a masked-LM
    directory or adapter sharing the text model's embeddings) gives text runs their
    ``alternatives`` alternative prompts per shown step (Algorithm 5, as in the paper).
    """

    def __init__(
        self,
        *,
        model: str | os.PathLike | None = None,
        adapter: Any = None,
        mlm: Any = None,
        alternatives: int = 5,
    ) -> None:
        self.model = str(model) if model is not None else None
        self.adapter = adapter
        self.mlm = mlm
        self.alternatives = alternatives
        self._cache: dict[tuple[str, str], Any] = {}

    def with_model(self, model: str | os.PathLike | None) -> ModelSource:
        """The same source (masked LM included) with another default model directory."""
        return ModelSource(model=model, mlm=self.mlm, alternatives=self.alternatives)

    def mlm_adapter(self) -> Any:
        """The masked-LM adapter (loaded once), or None when none was given."""
        if self.mlm is None or not isinstance(self.mlm, (str, os.PathLike)):
            return self.mlm
        from ..models import load_adapter

        self.mlm = load_adapter(self.mlm, top_k=self.alternatives)
        return self.mlm

    def for_run(self, run: RunView) -> tuple[Any, str | None]:
        """(adapter or None, why there is none)."""
        space = run.space()
        if self.adapter is not None:
            return self._respace(self.adapter, space), None
        path = self.model or run.model_dir()
        if path is None:
            return None, "the run does not record its model directory; pass --model DIR"
        key = (path, space)
        if key not in self._cache:
            from ..models import load_adapter

            try:
                self._cache[key] = load_adapter(path, space=space)  # type: ignore[arg-type]
            except SimecError as exc:
                self._cache[key] = exc
        got = self._cache[key]
        if isinstance(got, SimecError):
            return None, f"the model could not be loaded ({got}); pass --model DIR"
        return got, None

    def _respace(self, adapter: Any, space: str) -> Any:
        if adapter.modality != "image" or adapter.space == space:
            return adapter
        key = (f"adapter-{id(adapter)}", space)
        if key not in self._cache:  # the adapter's own twin (same weights, device and dtype)
            self._cache[key] = adapter.with_space(space)  # type: ignore[arg-type]
        return self._cache[key]
