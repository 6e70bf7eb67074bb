"""Dataset runs: explore many inputs, locally or on Ray, into one resumable folder."""

from .backends import (
    Backend,
    LocalBackend,
    ModelSpec,
    Outcome,
    RunTask,
    backend_names,
    explore_items,
    get_backend,
    register_backend,
)
from .inputs import RunItem, idx_items, line_items, materialize
from .manifest import MANIFEST, Manifest
from .runner import RUN_FILE, run_dataset

__all__ = [
    "MANIFEST",
    "RUN_FILE",
    "Backend",
    "LocalBackend",
    "Manifest",
    "ModelSpec",
    "Outcome",
    "RunItem",
    "RunTask",
    "backend_names",
    "explore_items",
    "get_backend",
    "idx_items",
    "line_items",
    "materialize",
    "register_backend",
    "run_dataset",
]
