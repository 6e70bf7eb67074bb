"""Where models too large for the repository live, and how commands find them by name.

The cache directory is ``$SIMEC_CACHE`` if set, else ``~/.cache/simec``. A model is named by a
path (any directory written by ``save_pretrained``) or by one of the names below, which resolve
to ``<cache>/models/<name>``; a missing named model gives an error with the command to train it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelError

__all__ = ["CACHED_MODELS", "cache_dir", "resolve_model_path"]

#: name -> command that trains it into the cache
CACHED_MODELS = {
    "minilm-hate": "simec train text-classifier --data PATH/TO/davidson/labeled_data.csv",
    "minilm-mlm": "simec train mlm-head --data PATH/TO/davidson/labeled_data.csv",
    "minilm-mlm-full": "simec train mlm --data PATH/TO/davidson/labeled_data.csv",
    "minilm-mlm-hatexplain": "simec train mlm --data PATH/TO/davidson --init minilm-mlm-full "
    "--out minilm-mlm-hatexplain --random-rows 8 --max-length 128 --epochs 0.35 "
    "--reconstruction-fraction 0.5 --lr 1e-4 --head-lr 5e-4 --threads 1",
}


def cache_dir() -> Path:
    """The root of simec's cache (``$SIMEC_CACHE`` or ``~/.cache/simec``)."""
    root = os.environ.get("SIMEC_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "simec"


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A model directory for a path or a cached model's name (see module docstring)."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists() or text not in CACHED_MODELS:
        return path
    cached = cache_dir() / "models" / text
    if not (cached / "config.json").is_file():
        raise ModelError(
            f"the model {text!r} is not in the cache ({cached}); train it once with\n"
            f"    {CACHED_MODELS[text]}\n(set SIMEC_CACHE to use another cache directory)"
        )
    return cached
