import ast
from pathlib import Path

import pytest

from simec.errors import InputError
from simec.registry import Registry


def test_register_get_names_in_order():
    reg: Registry[int] = Registry("widget", {"b": 2})
    assert reg.register("a", 1) == 1
    assert reg.names() == ["b", "a"]
    assert reg.get("a") == 1 and reg.get("b") == 2
    assert "a" in reg and "c" not in reg and len(reg) == 2
    assert reg.find("c") is None and reg.find("b") == 2


def test_duplicates_need_replace_and_unknown_names_list_the_choices():
    reg: Registry[str] = Registry("widget")
    reg.register("x", "first")
    with pytest.raises(InputError, match="widget 'x' is already registered"):
        reg.register("x", "second")
    assert reg.get("x") == "first"
    reg.register("x", "second", replace=True)
    assert reg.get("x") == "second"
    with pytest.raises(InputError, match=r"unknown widget 'y'; choose one of \['x'\]"):
        reg.get("y")
    with pytest.raises(InputError, match="non-empty name"):
        reg.register("", "empty")


def test_public_register_functions_use_the_registry():
    from simec.explainers import explain, explainer_names, register_explainer
    from simec.geometry.metrics import (
        OutputMetric,
        get_output_metric,
        output_metric_names,
        register_output_metric,
    )
    from simec.models.architectures import architecture, register_architecture
    from simec.runs import backend_names, get_backend, register_backend

    with pytest.raises(InputError, match="unknown explainer 'nope'; choose one of"):
        explain(None, None, "nope")  # type: ignore[arg-type]
    assert "simec" in explainer_names()
    with pytest.raises(InputError, match="already registered"):
        register_explainer("simec", lambda *a: None)  # type: ignore[arg-type,return-value]

    metric = get_output_metric(output_metric_names()[0])
    assert isinstance(metric, OutputMetric)
    with pytest.raises(InputError, match="already registered"):
        register_output_metric(metric)
    with pytest.raises(InputError, match="unknown output metric 'nope'"):
        get_output_metric("nope")

    with pytest.raises(InputError, match=r"unknown backend 'nope'; choose one of \['local'"):
        get_backend("nope")
    assert backend_names()[:2] == ["local", "ray"]
    with pytest.raises(InputError, match="already registered"):
        register_backend("local", lambda: get_backend("local"))

    assert architecture("registry-test-type").embeddings is None
    register_architecture("registry-test-type", embeddings="a.b")
    register_architecture("registry-test-type", backbone="c")  # other fields kept
    entry = architecture("registry-test-type")
    assert (entry.embeddings, entry.backbone) == ("a.b", "c")


def test_a_registry_reads_like_a_mapping():
    reg: Registry[int] = Registry("widget", {"b": 2, "a": 1})
    assert list(reg) == ["b", "a"] and tuple(reg) == ("b", "a")
    assert reg["a"] == 1 and reg.items() == [("b", 2), ("a", 1)]
    assert dict(reg.items()) == {"b": 2, "a": 1}
    with pytest.raises(InputError, match=r"unknown widget 'c'; choose one of \['b', 'a'\]"):
        reg["c"]


def test_the_name_tables_are_registries_and_the_cli_offers_their_names():
    import argparse

    from simec.cli import COMMANDS, build_parser
    from simec.cli.experiment import EXPERIMENTS
    from simec.cli.structure import ANALYSES
    from simec.explore.config import ALGORITHMS, RULES, ExploreConfig

    for table in (COMMANDS, EXPERIMENTS, ANALYSES, ALGORITHMS, RULES):
        assert isinstance(table, Registry), table
    assert RULES.names() == ALGORITHMS.names() == ["simec", "simexp"]
    with pytest.raises(InputError, match="unknown algorithm 'x'; choose one of"):
        RULES["x"]

    def subcommands(parser: argparse.ArgumentParser) -> list[str]:
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return list(action.choices)

    parser = build_parser()
    assert subcommands(parser) == COMMANDS.names()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert subcommands(commands.choices["experiment"]) == EXPERIMENTS.names()
    assert subcommands(commands.choices["structure"]) == ANALYSES.names()
    assert len(EXPERIMENTS) == 5 and "interpretations" in EXPERIMENTS
    explore = commands.choices["explore"]
    (algorithm,) = [a for a in explore._actions if a.dest == "algorithm"]
    assert list(algorithm.choices) == ALGORITHMS.names()
    with pytest.raises(InputError, match="algorithm"):
        ExploreConfig(algorithm="nope").validate()


# module-level name -> callable tables that are not a Registry, with the reason
NOT_REGISTRIES = {
    "cli/explore.py:PARSE": "config field -> its option parser (keyed by field, not chosen)",
}


def _bound_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _is_thing(value: ast.expr, names: set[str]) -> bool:
    if isinstance(value, ast.Lambda):
        return True
    if isinstance(value, ast.Name):
        return value.id in names
    if isinstance(value, ast.Tuple):
        return any(_is_thing(e, names) for e in value.elts)
    return False


def plain_tables(source: str) -> list[str]:
    """Module-level ``NAME = {"name": <function, class, module or lambda>, ...}`` dicts (a value
    may be a tuple holding one): the tables that should be a ``Registry``."""
    tree = ast.parse(source)
    names = _bound_names(tree)
    found = []
    for node in tree.body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)):
            continue
        table = node.value
        if not isinstance(table, ast.Dict) or not table.keys:
            continue
        keys_are_names = all(
            isinstance(k, ast.Constant) and isinstance(k.value, str) for k in table.keys
        )
        if keys_are_names and all(_is_thing(v, names) for v in table.values):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            found.append(ast.unparse(target))
    return found


def test_the_table_finder_finds_name_to_thing_dicts():
    source = (
        "import os\nfrom .m import Cls\ndef f(): pass\n"
        "A = {'x': f, 'y': Cls}\n"
        "B: dict[str, object] = {'x': (1, f), 'y': lambda: 0}\n"
        "C = {'x': os}\n"
        "D = {'x': 1, 'y': 'text'}\n"  # data, not things
        "E = {0: f}\n"  # not keyed by name
        "F = Registry('kind', {'x': f})\n"
        "def g():\n    G = {'x': f}\n"  # not module level
    )
    assert plain_tables(source) == ["A", "B", "C"]


def test_every_name_to_thing_table_is_a_registry():
    root = Path(__file__).resolve().parents[1] / "src" / "simec"
    found = []
    for path in sorted(root.rglob("*.py")):
        for name in plain_tables(path.read_text()):
            key = f"{path.relative_to(root).as_posix()}:{name}"
            if key not in NOT_REGISTRIES:
                found.append(key)
    assert not found, f"use simec.registry.Registry for: {found}"
