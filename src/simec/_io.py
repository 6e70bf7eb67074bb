"""Small I/O helpers: atomic writes and the environment recorded next to every result."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from .errors import InputError, OutputError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_dir(
    path: str | os.PathLike,
    *,
    results: tuple[str, ...] = (),
    overwrite: bool = False,
    option: str = "--out",
) -> Path:
    """Refuse an output folder that cannot hold results, before anything is computed.

    ``path`` must be a folder or not exist yet; no part of it may be a file; the folder (or
    its nearest existing parent) must be writable (``os.access``, which also sees read-only
    file systems, for root too). With ``results`` (file names that mean "a result is here"),
    a folder holding one of them is refused unless ``overwrite``. Nothing is created.
    Raises ``OutputError`` with a one-line message.
    """
    path = Path(path)
    shown = str(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {shown!r} is a file, not a folder: choose another {option}")
    probe = path
    while not probe.exists():
        parent = probe.parent
        if parent == probe:
            break
        probe = parent
    if probe != path and not probe.is_dir():
        raise OutputError(
            f"{option} {shown!r} cannot be created: {str(probe)!r} is a file, not a folder"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(
            f"{option} {shown!r} is not writable (no write permission or a read-only file "
            f"system at {str(probe)!r}): choose another {option}"
        )
    if results and path.is_dir() and not overwrite:
        held = [name for name in results if (path / name).exists()]
        if held:
            raise OutputError(
                f"{option} {shown!r} already holds a result ({held[0]}): pass --overwrite "
                f"(overwrite=True) to replace it, or choose another {option}"
            )
    return path


def save_record(
    out_dir: str | os.PathLike,
    *,
    summary: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    files: tuple[str, str],
    format: str,
) -> Path:
    """Write a result record into ``out_dir``: ``tensors`` to ``files[1]`` (safetensors, with
    ``format`` in its metadata), then ``summary`` to ``files[0]`` (JSON), each atomically.

    The folder is checked first (``check_output_dir``) and created; returns it.
    """
    from safetensors.torch import save

    out = check_output_dir(out_dir, option="out_dir")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {str(out)!r}: {exc.strerror or exc}") from None
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(out / files[1], save(tensors, metadata={"format": format}))
    atomic_write_json(out / files[0], summary)
    return out


def load_record(
    out_dir: str | os.PathLike, *, files: tuple[str, str], what: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON summary and the tensors of a record written by ``save_record``; a folder
    without them, or with unreadable ones, is an ``InputError`` naming ``what`` it should be."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    out = Path(out_dir)
    missing = [name for name in files if not (out / name).is_file()]
    if missing:
        raise InputError(f"{str(out)!r} is not a saved {what} (no {' or '.join(missing)})")
    try:
        summary = json.loads((out / files[0]).read_text())
        tensors = load_file(str(out / files[1]))
    except (ValueError, OSError, SafetensorError) as exc:
        raise InputError(f"{str(out)!r}: the saved {what} cannot be read ({exc})") from None
    if not isinstance(summary, dict):
        raise InputError(f"{str(out / files[0])!r} is not a saved {what} (not a JSON object)")
    return summary, tensors


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the ``.<name>.*.tmp`` files that writes cut short by a kill left in ``folder``
    (and its sub-folders); only call this while holding the folder's lock. Returns the count."""
    removed = 0
    for tmp in Path(folder).rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=True) + "\n").encode())


def setting_differences(
    before: dict[str, Any], now: dict[str, Any], *, ignore: tuple[str, ...] = ()
) -> list[str]:
    """``"key: old then, new now"`` for each setting that differs, compared as JSON values
    (a tuple now equals the list it was saved as), for refusing to resume a run."""
    old, new = (json.loads(json.dumps(d, default=str)) for d in (before, now))
    return [
        f"{key}: {old.get(key)!r} then, {new.get(key)!r} now"
        for key in sorted(set(old) | set(new))
        if key not in ignore and old.get(key) != new.get(key)
    ]


def cpu_name() -> str:
    """This machine's CPU model (``/proc/cpuinfo``'s model name where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Package versions and machine facts for reproducibility."""
    versions: dict[str, str | None] = {}
    for name in ("simec", "torch", "transformers", "numpy", "safetensors"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    return env
