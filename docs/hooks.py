"""MkDocs hooks: the experiments' figures from results/, and notebook pages without CDN code.

A page under docs/ links to ``results/NAME/figure.png`` by its relative path (``../results/...``
from docs/guide/); the PNG files of results/ are added to the site under ``results/``, so the
figures have one copy in the repository and the strict build checks every link to them.

The notebook pages (mkdocs-jupyter) carry a loader that imports mermaid from a CDN when a page has
a mermaid diagram; ours have none, and the site must not reach the network, so it is removed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
_MERMAID = re.compile(
    r'<script type="module">\s*document\.addEventListener\("DOMContentLoaded", async \(\) => \{'
    r'\s*const diagrams = document\.querySelectorAll\("\.jp-Mermaid.*?</script>',
    re.S,
)


def on_files(files: Files, config: Any) -> Files:
    for png in sorted((ROOT / "results").rglob("*.png")):
        uri = png.relative_to(ROOT).as_posix()
        if "/rows/" in uri:
            continue
        files.append(
            File(
                uri,
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


def on_post_page(output: str, page: Any, config: Any) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        output, count = _MERMAID.subn("", output)
        if count != 1 and "mermaid.esm" in output:
            raise RuntimeError(f"{page.file.src_uri}: the mermaid loader was not removed")
    return output
