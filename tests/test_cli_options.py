"""The CLI's options that mirror a config dataclass are generated from it, never hand-copied."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from simec.cli import build_parser
from simec.cli import explore as explore_cli
from simec.cli.options import (
    SHARED_HELP,
    TRISTATE,
    add_dataclass_arguments,
    dataclass_from_args,
)
from simec.demo import DemoConfig
from simec.evaluate.rationales import PlausibilityConfig
from simec.experiments.equivalence_pairs import EquivalencePairsConfig
from simec.experiments.interpretations import InterpretationsConfig
from simec.experiments.text_exploration import TextExplorationConfig
from simec.experiments.vision_explainers import VisionExplainersConfig
from simec.experiments.vit_exploration import VitExplorationConfig
from simec.explore.config import ALGORITHMS, ExploreConfig, parse_segments
from simec.geometry.metrics import output_metric_names
from simec.runs import DatasetOptions, ModelSpec
from simec.structure.commands import LipschitzConfig, MatchConfig, SpectrumConfig
from simec.structure.equivalence import EquivalenceConfig
from simec.structure.equivalence_run import PairOptions
from simec.train.mlm import MLMTrainConfig
from simec.train.text import MLMHeadTrainConfig, TextClassifierTrainConfig
from simec.train.vit import ViTTrainConfig

CLI_DIR = Path(inspect.getfile(explore_cli)).parent

#: (sub)command -> the config dataclass its options mirror
CONFIGS: dict[tuple[str, ...], type] = {
    ("explore",): ExploreConfig,
    ("importance",): ExploreConfig,
    ("structure", "match"): MatchConfig,
    ("structure", "spectrum"): SpectrumConfig,
    ("structure", "lipschitz"): LipschitzConfig,
    ("train", "vit"): ViTTrainConfig,
    ("train", "text-classifier"): TextClassifierTrainConfig,
    ("train", "mlm-head"): MLMHeadTrainConfig,
    ("experiment", "vit-exploration"): VitExplorationConfig,
    ("experiment", "text-exploration"): TextExplorationConfig,
    ("train", "mlm"): MLMTrainConfig,
    ("experiment", "equivalence"): EquivalencePairsConfig,
    ("experiment", "interpretations"): InterpretationsConfig,
    ("equivalence",): EquivalenceConfig,
    ("evaluate", "plausibility"): PlausibilityConfig,
    ("experiment", "vision-explainers"): VisionExplainersConfig,
    ("demo",): DemoConfig,
}
#: commands whose options also mirror a second config dataclass
MORE_CONFIGS: list[tuple[tuple[str, ...], type]] = [
    (("explore",), ModelSpec),
    (("explore",), DatasetOptions),
    (("equivalence",), ModelSpec),
    (("equivalence",), PairOptions),
]


def _subparser(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}


def _cli_default(f: dataclasses.Field) -> Any:
    """The value argparse holds for the field's default (``auto`` for a None tri-state)."""
    if f.name == "compile":
        return next(k for k, v in TRISTATE.items() if v is f.default)
    return f.default


@pytest.mark.parametrize(
    ("path", "cls"),
    [*CONFIGS.items(), *MORE_CONFIGS],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v.__name__,
)
def test_options_take_default_help_and_choices_from_the_config_fields(path, cls):
    options = _options(_subparser(path))
    matched = 0
    for f in dataclasses.fields(cls):
        action = options.get(f.name)
        if action is None:
            continue
        matched += 1
        help_text = f.metadata.get("help", SHARED_HELP.get(f.name))
        if isinstance(action, argparse._StoreFalseAction):  # --no-name
            help_text = f.metadata.get("help_off", help_text)
        assert action.help.startswith(help_text), (path, f.name)
        if not action.required:
            assert action.default == _cli_default(f), (path, f.name)
        if "choices" in f.metadata:
            choices = f.metadata["choices"]
            choices = list(choices() if callable(choices) else choices)
            if isinstance(f.default, tuple):  # a comma list: its items are checked
                assert all(c in action.help for c in choices)
                with pytest.raises(argparse.ArgumentTypeError):
                    action.type("no-such-choice")
            else:
                assert list(action.choices) == choices
    assert matched >= 2


def test_every_explore_config_field_is_an_explore_option():
    options = _options(_subparser(("explore",)))
    fields = {f.name for f in dataclasses.fields(ExploreConfig)}
    assert fields - set(explore_cli.NOT_OPTIONS) <= set(options)
    assert set(explore_cli.NOT_OPTIONS) == {"extra"}  # the CLI records its own context there
    assert options["algorithm"].choices == list(ALGORITHMS)
    assert options["output_metric"].choices == list(output_metric_names())


def test_explore_options_build_the_config_the_api_gets():
    parser = build_parser()
    argv = ["explore", "--model", "m", "--input", "x", "--out", "o"]
    args = parser.parse_args(argv)
    default = explore_cli.config_from_args(args)
    expected = ExploreConfig(extra=default.extra)
    assert default == expected
    args = parser.parse_args(
        [
            *argv,
            *("--segments", "1-3,5", "--max-step", "none", "--compile", "off"),
            *("--corrector", "--recover", "2", "--divergence-ratio", "7.5"),
        ]
    )
    cfg = explore_cli.config_from_args(args)
    assert cfg.segments == (1, 2, 3, 5) and cfg.max_step is None and cfg.compile is False
    assert cfg.corrector is True and cfg.recover == 2 and cfg.divergence_ratio == 7.5


# ---- the generator on a dataclass of its own ------------------------------------------------


@dataclass
class _Toy:
    name: str = field(metadata={"help": "a name"})
    count: int = field(default=3, metadata={"help": "how many", "min": 1})
    scale: float | None = field(default=0.5, metadata={"help": "a scale", "gt": 0})
    fast: bool = field(default=False, metadata={"help": "go fast"})
    checks: bool = field(default=True, metadata={"help": "run checks"})
    mode: bool | None = field(default=None, metadata={"help": "auto/on/off"})
    sizes: tuple[float, ...] = field(default=(1.0, 2.5), metadata={"help": "sizes", "gt": 0})
    picks: tuple[int, ...] | None = field(default=None, metadata={"help": "picks (default: all)"})
    kind: str = field(default="b", metadata={"help": "a kind", "choices": lambda: ("a", "b")})
    extra: dict[str, Any] = field(default_factory=dict)


def _toy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, _Toy, parse={"picks": parse_segments}, rename={"kind": "k"})
    return parser


def test_generator_types_defaults_and_round_trip():
    parser = _toy_parser()
    opts = _options(parser)
    assert "extra" not in opts  # dict fields are never options
    assert opts["name"].required and opts["count"].default == 3
    assert opts["checks"].option_strings == ["--no-checks"]
    assert opts["kind"].option_strings == ["--k"] and opts["kind"].choices == ["a", "b"]
    assert (
        "(default: 1,2.5)" in opts["sizes"].help and "(default: %(default)s)" in opts["count"].help
    )
    assert opts["picks"].help == "picks (default: all)"  # help that names its default is kept
    assert dataclass_from_args(_Toy, parser.parse_args(["--name", "x"]), parse={}) == _Toy("x")
    args = parser.parse_args(
        "--name x --count 5 --scale off --fast --no-checks --mode on --sizes 3,4 "
        "--picks 2-4 --k a".split()
    )
    toy = dataclass_from_args(_Toy, args, parse={"picks": parse_segments}, extra={"a": 1})
    assert toy == _Toy("x", 5, None, True, False, True, (3.0, 4.0), (2, 3, 4), "a", {"a": 1})


@pytest.mark.parametrize(
    "argv",
    [
        ["--count", "0"],
        ["--count", "1.5"],
        ["--scale", "0"],
        ["--scale", "nan"],
        ["--sizes", "1,-2"],
        ["--sizes", ","],
        ["--mode", "maybe"],
        ["--k", "c"],
    ],
)
def test_generator_rejects_bad_values(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _toy_parser().parse_args(["--name", "x", *argv])
    assert exc.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_generator_refuses_fields_without_help_and_unknown_names():
    @dataclass
    class NoHelp:
        colour: str = "red"

    with pytest.raises(TypeError, match="no help"):
        add_dataclass_arguments(argparse.ArgumentParser(), NoHelp)
    with pytest.raises(TypeError, match="no fields"):
        add_dataclass_arguments(argparse.ArgumentParser(), _Toy, include=["nope"])
    with pytest.raises(TypeError, match="dict"):
        add_dataclass_arguments(argparse.ArgumentParser(), _Toy, include=["extra"])


# ---- grep-style: no literal default for a config field in cli/ -------------------------------


def _hand_copies(source: str, namespace: dict[str, Any]) -> list[str]:
    """Options added with a literal ``default=`` in a function that also generates options from
    a config dataclass (``add_dataclass_arguments(_, Config, ...)``), whose dest is a field of
    that config. A config passed as a variable stands for every dataclass the module knows."""
    known = [v for v in namespace.values() if isinstance(v, type) and dataclasses.is_dataclass(v)]
    found = []
    for func in ast.walk(ast.parse(source)):
        if not isinstance(func, ast.FunctionDef):
            continue
        calls = [n for n in ast.walk(func) if isinstance(n, ast.Call)]
        configs: list[type] = []
        for call in calls:
            name = getattr(call.func, "id", getattr(call.func, "attr", None))
            if name == "add_dataclass_arguments" and len(call.args) >= 2:
                arg = ast.unparse(call.args[1])
                configs += [namespace[arg]] if arg in namespace else known
        fields = {f.name for cls in configs for f in dataclasses.fields(cls)}
        for call in calls:
            if getattr(call.func, "attr", None) != "add_argument" or not call.args:
                continue
            flag = call.args[0]
            if not (isinstance(flag, ast.Constant) and str(flag.value).startswith("--")):
                continue
            keywords = {k.arg: k.value for k in call.keywords}
            dest = keywords.get("dest")
            name = dest.value if isinstance(dest, ast.Constant) else flag.value[2:]
            if "default" in keywords and name.replace("-", "_") in fields:
                found.append(f"{flag.value} (line {call.lineno})")
    return found


def test_the_check_catches_a_hand_copied_option():
    source = (
        "def add_arguments(p):\n"
        "    add_dataclass_arguments(p, ExploreConfig, include=['steps'])\n"
        "    p.add_argument('--max-step', type=float, default=0.02, help='cap')\n"
        "    p.add_argument('--space', default='pixels', help='not a field')\n"
    )
    assert _hand_copies(source, {"ExploreConfig": ExploreConfig}) == ["--max-step (line 3)"]


def test_cli_modules_hand_copy_no_option_of_a_config():
    import importlib

    found = {}
    for path in sorted(CLI_DIR.glob("*.py")):
        module = importlib.import_module(
            f"simec.cli.{path.stem}" if path.stem != "__init__" else "simec.cli"
        )
        copies = _hand_copies(path.read_text(), vars(module))
        if copies:
            found[path.name] = copies
    assert not found, found
    assert "add_dataclass_arguments" in (CLI_DIR / "explore.py").read_text()


def test_a_nested_config_s_fields_are_options_with_the_outer_default():
    from simec.experiments.interpretations import paper_final_walk

    options = _options(_subparser(("experiment", "interpretations")))
    walk = paper_final_walk()
    steps = options["explore.steps"]
    assert steps.option_strings == ["--steps"] and steps.default == walk.steps == 1000
    assert options["explore.record_every"].default == 10
    help_of = {f.name: f.metadata.get("help") for f in dataclasses.fields(ExploreConfig)}
    assert steps.help.startswith(help_of["steps"])
    argv = ["experiment", "interpretations", "--model", "m", "--data", "d", "--out", "o"]
    args = build_parser().parse_args([*argv, "--steps", "7", "--jacobian-reuse", "auto"])
    cfg = dataclass_from_args(InterpretationsConfig, args)
    assert cfg.explore == replace(walk, steps=7, jacobian_reuse="auto")
    args = build_parser().parse_args(argv)
    assert dataclass_from_args(InterpretationsConfig, args).explore == walk


#: options in cli/ still written by hand with a literal default, each with its reason
HAND_WRITTEN = {
    "explore.py": {
        "--split": "which file of an IDX folder idx_items reads; no config holds it",
        "--text-decoder": "a decoder name or a folder, read only by --interpretations",
    },
    "view.py": {
        "--model": "view's options say how to draw saved runs, not settings of a computation",
        "--max-frames": "as above",
        "--mlm": "as above",
        "--alternatives": "as above",
        "--title": "as above",
    },
}


def _literal_defaults(source: str) -> set[str]:
    found = set()
    for call in ast.walk(ast.parse(source)):
        if not (isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "add_argument"):
            continue
        flag = call.args[0] if call.args else None
        if isinstance(flag, ast.Constant) and str(flag.value).startswith("--"):
            if any(k.arg == "default" for k in call.keywords):
                found.add(str(flag.value))
    return found


def test_no_option_with_a_default_is_hand_written_outside_the_listed_ones():
    """Every option with a default comes from a config field (or a shared ``add_*`` helper in
    options.py), but the few listed in HAND_WRITTEN with their reasons."""
    found = {
        path.name: flags
        for path in sorted(CLI_DIR.glob("*.py"))
        if path.name != "options.py" and (flags := _literal_defaults(path.read_text()))
    }
    assert found == {name: set(flags) for name, flags in HAND_WRITTEN.items()}
    assert _literal_defaults("p.add_argument('--steps', type=int, default=3)") == {"--steps"}


def test_every_command_dispatches_to_a_run_function():
    leaves = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            leaves.append((" ".join(path), parser.get_default("func")))
        for sub in subs:
            for name, child in sub.choices.items():
                walk(child, [*path, name])

    walk(build_parser(), [])
    assert (
        len(leaves) == 18
    )  # + view, equivalence, experiment equivalence, train mlm, interpretations
    for path, func in leaves:
        assert callable(func) and func.__module__.startswith("simec.cli."), path
