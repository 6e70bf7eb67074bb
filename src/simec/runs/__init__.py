"""Dataset runs: explore many inputs, locally or on Ray, into one resumable folder."""

from .backends import Backend, LocalBackend, backend_names, get_backend, register_backend
from .batches import explore_items
from .inputs import RunItem, idx_items, line_items, materialize
from .manifest import MANIFEST, Manifest, manifest_entry
from .runner import RUN_FILE, DatasetOptions, run_dataset
from .types import ModelSpec, Outcome, RunTask

__all__ = [
    "MANIFEST",
    "RUN_FILE",
    "Backend",
    "DatasetOptions",
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
    "manifest_entry",
    "materialize",
    "register_backend",
    "run_dataset",
]
