"""simec.fields.option: a dataclass field with the CLI metadata, the same as field(...)."""

from dataclasses import dataclass, field, fields

import pytest

from simec.fields import option


@dataclass
class _Both:
    a: int = option(3, "number of things", metavar="N", min=1)
    b: int = field(default=3, metadata={"help": "number of things", "metavar": "N", "min": 1})
    c: str = option("x", choices=("x", "y"))
    d: str = field(default="x", metadata={"choices": ("x", "y")})


def test_option_is_the_field_it_abbreviates():
    f = {x.name: x for x in fields(_Both)}
    assert f["a"].default == f["b"].default == 3
    assert dict(f["a"].metadata) == dict(f["b"].metadata)
    assert dict(f["c"].metadata) == dict(f["d"].metadata) == {"choices": ("x", "y")}
    assert "help" not in f["c"].metadata
    assert _Both().a == 3 and _Both(a=5).a == 5


def test_option_rejects_metadata_the_cli_does_not_read():
    with pytest.raises(TypeError, match="maximum"):
        option(1, "x", maximum=3)
