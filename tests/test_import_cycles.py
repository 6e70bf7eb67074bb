"""No import cycle in ``simec``: the module graph, imports inside functions included.

A cycle broken only by an import inside a function still ties two layers together (DESIGN.md:
each layer imports only the layers under it). The graph is read from the ``ast`` of every module
under ``src/simec``: an edge for every ``import simec.x`` / ``from .x import y`` anywhere in the
module (top level, functions, ``if TYPE_CHECKING`` blocks), to the module itself when ``y`` is a
submodule, and to the sub-packages whose ``__init__`` the import runs (not the top-level
``simec`` facade, which imports every layer by design).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "simec"


def modules(src: Path = SRC, package: str = PACKAGE) -> dict[str, tuple[str, bool]]:
    """Dotted name -> (source, is a package ``__init__``) of every module of ``package``."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path.read_text(), is_package)
    return found


def _imported(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(mods: dict[str, tuple[str, bool]], root: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of ``mods`` it imports (anywhere in its source)."""
    graph: dict[str, set[str]] = {}
    for name, (source, is_package) in mods.items():
        direct: set[str] = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = _imported(name, is_package, node)
                subs = [f"{target}.{alias.name}" for alias in node.names]
                targets = [s for s in subs if s in mods] or [target]
            else:
                continue
            for target in targets:
                while target not in mods and "." in target:  # `import simec.a.b` -> simec.a.b
                    target = target.rsplit(".", 1)[0]
                if target in mods and target != name:
                    direct.add(target)
        implied = set()  # packages whose __init__ an import runs (not the facade, not our own)
        for target in direct:
            parts = target.split(".")
            for k in range(2, len(parts)):
                package = ".".join(parts[:k])
                if package in mods and package != root and not name.startswith(package + "."):
                    implied.add(package)
        graph[name] = (direct | implied) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycles_finds_every_cycle_of_a_synthetic_graph():
    graph = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a", "d"},  # a -> b -> c -> a
        "d": {"e"},
        "e": {"d"},  # d <-> e
        "f": {"a", "d"},
        "g": set(),
    }
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["d", "e"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) == []


def test_the_graph_sees_imports_inside_functions_and_package_inits():
    mods = {
        "simec": ("from .lower import x\n", True),
        "simec.lower": ("def f():\n    from .upper.view import show\n", False),
        "simec.upper": ("from . import view\n", True),
        "simec.upper.view": ("import simec.lower\n", False),
        "simec.upper.other": ("from simec.upper import view\nfrom ..lower import x\n", False),
    }
    graph = import_graph(mods)
    assert graph["simec.lower"] == {"simec.upper.view", "simec.upper"}  # inside f; its package
    assert graph["simec.upper"] == {"simec.upper.view"}
    assert graph["simec.upper.other"] == {"simec.upper.view", "simec.lower"}  # not its own pkg
    assert graph["simec"] == {"simec.lower"}
    assert cycles(graph) == [["simec.lower", "simec.upper", "simec.upper.view"]]
    del mods["simec.lower"]
    mods["simec.lower"] = ("x = 1\n", False)
    assert cycles(import_graph(mods)) == []


def test_simec_has_no_import_cycle():
    mods = modules()
    assert {"simec.explore.result", "simec.report.viewer", "simec.train.mlm"} <= set(mods)
    graph = import_graph(mods)
    assert "simec.explore.result" in graph["simec.report.viewer"]  # the graph is read
    found = cycles(graph)
    assert not found, "import cycles (move the shared piece to a lower module):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )
