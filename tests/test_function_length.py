"""Short functions along the data's road: none over ``MAX_LINES`` lines in the packages below.

A function's length is its span in the source (``end_lineno - lineno + 1``: signature,
docstring, body, comments and blank lines), from the ``ast`` of every module. A function that
must stay longer is listed in ``EXCEPTIONS`` with the reason, by ``"package/module.py"`` (every
function of a module) or ``"package/module.py:Qualified.name"``; an exception that no longer
matches a long function fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "simec"
PACKAGES = ("geometry", "explore", "models", "structure", "interpret")
MAX_LINES = 60

_ISSUE_24 = "rewritten by issue 24 (guided walks move into the walk loop)"
#: modules or functions allowed past MAX_LINES, with the reason
EXCEPTIONS: dict[str, str] = {
    "structure/equivalence.py": _ISSUE_24,
}


def function_lengths(source: str) -> Iterator[tuple[str, int]]:
    """(qualified name, lines) of every function and method in ``source``, nested ones too."""

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                yield name, (child.end_lineno or child.lineno) - child.lineno + 1
                yield from visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, prefix + child.name + ".")
            else:
                yield from visit(child, prefix)

    yield from visit(ast.parse(source), "")


def long_functions(source: str, module: str, exceptions: dict[str, str]) -> list[str]:
    """``module:name (N lines)`` for each function over MAX_LINES not excepted."""
    if module in exceptions:
        return []
    return [
        f"{module}:{name} ({lines} lines)"
        for name, lines in function_lengths(source)
        if lines > MAX_LINES and f"{module}:{name}" not in exceptions
    ]


def _modules() -> Iterator[tuple[str, str]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text()


def _function(lines: int, name: str = "f", indent: str = "") -> str:
    """A function spanning exactly ``lines`` lines."""
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(lines - 2))
    return f"{indent}def {name}():\n{body}{indent}    return 0\n"


def test_the_checker_flags_a_long_function():
    assert dict(function_lengths(_function(61))) == {"f": 61}
    assert long_functions(_function(61), "explore/m.py", {}) == ["explore/m.py:f (61 lines)"]
    assert long_functions(_function(MAX_LINES), "explore/m.py", {}) == []
    method = "class Walk:\n" + _function(70, "step", "    ")
    assert long_functions(method, "m.py", {}) == ["m.py:Walk.step (70 lines)"]
    nested = "def outer():\n" + _function(65, "inner", "    ") + "    return inner\n"
    found = long_functions(nested, "m.py", {})
    assert found == ["m.py:outer (67 lines)", "m.py:outer.inner (65 lines)"]
    asynchronous = _function(62).replace("def f", "async def f")
    assert long_functions(asynchronous, "m.py", {}) == ["m.py:f (62 lines)"]
    # an exception silences exactly what it names
    assert long_functions(method, "m.py", {"m.py:Walk.step": "why"}) == []
    assert long_functions(method, "m.py", {"m.py:step": "why"}) != []
    assert long_functions(method, "m.py", {"m.py": "why"}) == []


def test_no_function_is_longer_than_the_limit():
    long = [found for module, source in _modules() for found in long_functions(source, module, {})]
    unexplained = [
        f for f in long if f.split(":")[0] not in EXCEPTIONS and f.split(" ")[0] not in EXCEPTIONS
    ]
    assert not unexplained, (
        f"functions over {MAX_LINES} lines in {', '.join(PACKAGES)}: split them, or list them "
        f"in EXCEPTIONS with the reason: {unexplained}"
    )


def test_every_exception_still_names_a_long_function():
    long = [found for module, source in _modules() for found in long_functions(source, module, {})]
    stale = [
        key
        for key in EXCEPTIONS
        if not any(f.split(" ")[0] == key or f.split(":")[0] == key for f in long)
    ]
    assert not stale, f"no longer over {MAX_LINES} lines: remove from EXCEPTIONS: {stale}"
    assert all(reason.strip() for reason in EXCEPTIONS.values())
