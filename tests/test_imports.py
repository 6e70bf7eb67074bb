"""Importing simec, or any of its modules, changes nothing in the process (issue 26).

Each check runs in a fresh interpreter, so what an earlier test imported cannot hide a change.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: everything a library import could change process-wide, as one comparable value. torch,
#: transformers and matplotlib are imported before it is first taken, so that only simec's
#: own changes show; threads are set to values nobody would choose, so that a module setting
#: "its" count cannot match by chance.
STATE = """
import logging, os, sys, warnings
import matplotlib
matplotlib.use("svg")
import torch, transformers
torch.set_num_threads(3)
torch.set_num_interop_threads(3)

def state():
    return {
        "env": dict(os.environ),
        "threads": torch.get_num_threads(),
        "interop": torch.get_num_interop_threads(),
        "dtype": str(torch.get_default_dtype()),
        "grad": torch.is_grad_enabled(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "matmul": torch.get_float32_matmul_precision(),
        "backend": matplotlib.get_backend(),
        "rc": {k: repr(v) for k, v in matplotlib.rcParams.items()},
        "warnings": [repr(f) for f in warnings.filters],
        "logging": (logging.getLogger().level, repr(logging.getLogger().handlers)),
        "path": list(sys.path),
    }
"""

WALK = (
    STATE
    + """
import importlib, pkgutil
before = state()
import simec
names = [m.name for m in pkgutil.walk_packages(simec.__path__, "simec.")]
for name in names:
    if name.rsplit(".", 1)[-1] != "__main__":  # running it is the CLI
        importlib.import_module(name)
after = state()
def diff(a, b):
    if isinstance(a, dict):
        return {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
    return (a, b)
changed = {k: diff(before[k], after[k]) for k in before if before[k] != after[k]}
assert not changed, changed
assert len(names) > 50, names
print(len(names))
"""
)


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MPLBACKEND"))}
    clean.update(PYTHONPATH=str(SRC), **env)
    return subprocess.run(
        [sys.executable, "-c", code], env=clean, capture_output=True, text=True, timeout=600
    )


def test_import_simec_sets_no_environment_variable():
    # the issue's own check, OMP_WAIT_POLICY unset and torch not imported before simec
    code = "import os; before = dict(os.environ); import simec; assert dict(os.environ) == before"
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr


def test_importing_every_module_changes_no_process_setting():
    proc = _python(WALK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) > 50  # the walk did import the package


def test_the_check_sees_a_change():
    """The state compared above does show each kind of change a module could make."""
    for change in (
        "os.environ['OMP_WAIT_POLICY'] = 'PASSIVE'",
        "torch.set_num_threads(2)",
        "matplotlib.use('Agg')",
        "warnings.simplefilter('ignore')",
        "torch.set_default_dtype(torch.float64)",
    ):
        code = STATE + f"before = state()\n{change}\nassert state() == before\n"
        assert _python(code).returncode != 0, change
