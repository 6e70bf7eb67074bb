"""Every algorithm of the SiMEC paper (1-5) and its pullback metric (eq. 5) lives in a module
named after it whose docstring cites it (issue 12)."""

import importlib

import pytest

PAPER_MAP = [
    ("Algorithm 1", "simec.explore.simec"),
    ("Algorithm 2", "simec.explore.simexp"),
    ("Algorithm 3", "simec.interpret.importance"),
    ("Algorithm 4", "simec.explore.segments"),
    ("Algorithm 5", "simec.interpret.decode_image"),
    ("Algorithm 5", "simec.interpret.decode_text"),
    ("eq. (5)", "simec.geometry.pullback"),
    ("line 11", "simec.explore.box"),  # Algorithms 1/2, line 11: projection onto the box
    ("Algorithm 1", "simec.geometry.steps"),
    ("Algorithm 2", "simec.geometry.steps"),
]


@pytest.mark.parametrize(("citation", "module"), PAPER_MAP)
def test_the_module_exists_and_cites_the_paper(citation, module):
    doc = importlib.import_module(module).__doc__ or ""
    assert citation in doc, f"{module} does not cite {citation}"


def test_the_rules_are_the_algorithms_the_config_offers():
    from simec.explore.config import ALGORITHMS, RULES
    from simec.explore.simec import SIMEC
    from simec.explore.simexp import SIMEXP

    assert dict(RULES.items()) == {"simec": SIMEC, "simexp": SIMEXP}
    # the paper's line 7: delta = 1/sqrt(lambda_max) for SiMEC, 2/sqrt(lambda_max) for SiMExp
    assert dict(ALGORITHMS.items()) == {"simec": ("null", 1.0), "simexp": ("non-null", 2.0)}
