"""Layering: only ``simec.models`` touches an adapter's private members.

Everything other layers need is on the public adapter protocol (``simec.models.base``). The
check is syntactic (the ``ast`` of every module): outside ``src/simec/models/`` no expression
``<obj>._name`` (obj anything but ``self``/``cls``), no ``getattr``/``setattr``/``hasattr``/
``delattr`` with the string ``"_name"`` and no ``from ...models... import _name`` may use a
name that is private in models/ (collected from its sources: ``self._x`` attributes,
``_functions``, ``_methods``, class-level ``_fields``) or one of the historical adapter
privates listed in ``ALWAYS``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "src" / "simec" / "models"
SCANNED = (ROOT / "src" / "simec", ROOT / "benchmarks", ROOT / "tests")

#: adapter privates other layers reached into before the protocol existed (issue 12)
ALWAYS = frozenset(
    "_run _embeddings _params _patch_names _mean _std _eager_model _eager _model _backbone "
    "_segment_names _no_head _model_pixels _batches _probabilities".split()
)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def models_private_names() -> set[str]:
    """Private names defined in models/: self._x attributes, _functions/_methods, _fields."""
    names = set(ALWAYS)
    for path in MODELS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if _private(node.name):
                    names.add(node.name)
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    names.add(node.attr)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if _private(node.target.id):
                    names.add(node.target.id)
    return names


def _from_simec_models(node: ast.ImportFrom) -> bool:
    parts = (node.module or "").split(".")
    return "models" in parts and (node.level > 0 or parts[0] == "simec")


def violations(source: str, private: set[str], where: str = "<snippet>") -> list[str]:
    """Every use of a models/ private name in ``source`` from outside models/."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in private:
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own:
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) > 1:
                name = node.args[1]
                if isinstance(name, ast.Constant) and name.value in private:
                    found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and _from_simec_models(node):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{where}:{node.lineno}: import {alias.name}")
    return found


def test_the_checker_catches_every_form_of_access():
    private = models_private_names()
    assert {"_run", "_embeddings", "_params", "_mean", "_std", "_patch_names"} <= private
    assert {"_from_pretrained", "_tokenizer", "_normalisation"} <= private  # loading.py
    bad = [
        "adapter._run(pixels)",
        "y = self.mlm._embeddings",
        "f(adapter\n    ._params)",
        "walker.adapter._std.tolist()",
        "getattr(adapter, '_eager_model', None)",
        "setattr(adapter, '_eager_model', copy)",
        "from simec.models.loading import _tokenizer",
        "from ..models.base import _anything",
        "x = (a or b)._patch_names()",
    ]
    for snippet in bad:
        assert violations(snippet, private), snippet
    fine = [
        "self._params = {}",
        "adapter.run(inputs)",
        "parser._actions",
        "getattr(adapter, 'patch_size', None)",
        "from simec.models import load_adapter",
        "from transformers.models.vit import _private_helper",
    ]
    for snippet in fine:
        assert not violations(snippet, private), snippet


def test_no_module_outside_models_touches_adapter_privates():
    private = models_private_names()
    found = []
    for top in SCANNED:
        for path in sorted(top.rglob("*.py")):
            if MODELS in path.parents:
                continue
            found += violations(path.read_text(), private, str(path.relative_to(ROOT)))
    assert not found, "use the public adapter protocol (simec.models.base):\n" + "\n".join(found)
