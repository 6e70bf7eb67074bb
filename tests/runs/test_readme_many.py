"""The docs' "Many inputs" Python example (docs/guide/many-inputs.md, moved there from the README)
runs as printed (needs ../shared/data/mnist)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_readme_many_inputs_example_runs(monkeypatch, capsys):
    page = ROOT / "docs" / "guide" / "many-inputs.md"
    text = page.read_text()
    block = re.search(
        r"<!-- readme-many: start -->\n```python\n(.*?)```\n<!-- readme-many: end -->", text, re.S
    )
    assert block, f"{page} lost its 'Many inputs' example markers"
    if not (ROOT.parent / "shared" / "data" / "mnist").is_dir():
        pytest.skip("../shared/data/mnist is not here")
    monkeypatch.chdir(ROOT)
    exec(compile(block.group(1), str(page), "exec"), {})
    assert "['completed', 'completed', 'completed', 'completed']" in capsys.readouterr().out
