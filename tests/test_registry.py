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
