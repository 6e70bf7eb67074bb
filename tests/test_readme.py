"""The README's Python example must run as printed, and every command of the README and the docs
pages must parse."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def test_readme_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(
        r"<!-- readme-example: start -->\n```python\n(.*?)```\n<!-- readme-example: end -->",
        text,
        re.S,
    )
    assert block, "README lost its example markers"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "example" / "summary.json").is_file()


def _documents():
    """The README and every markdown page of the docs site."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def _commands(path):
    import shlex

    commands = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("simec "):
                commands.append(shlex.split(line)[1:])
    return commands


def _readme_commands():
    return [(path, argv) for path in _documents() for argv in _commands(path)]


def test_the_docs_pages_are_searched_for_commands():
    pages = {p.relative_to(ROOT).as_posix() for p, _ in _readme_commands()}
    assert {"docs/guide/vision.md", "docs/guide/text.md", "docs/getting-started.md"} <= pages


def test_every_simec_command_in_the_readme_and_the_docs_parses():
    from simec.cli import build_parser

    commands = _readme_commands()
    assert len(commands) >= 10
    parser = build_parser()
    for path, argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code == 0:  # --help
                continue
            where = path.relative_to(ROOT)
            command = " ".join(argv)
            raise AssertionError(f"{where}: command does not parse: simec {command}") from exc
