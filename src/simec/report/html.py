"""A self-contained HTML report: sections of text, tables and PNG figures beside it."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes

CSS = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}
h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
img{max-width:100%}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f5f5f5}
td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:.92em}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.8em}
"""


class Report:
    """Collects sections, writes ``report.html`` atomically."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str, *, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def image(self, filename: str, alt: str) -> None:
        self.parts.append(f'<img src="{html.escape(filename)}" alt="{html.escape(alt)}">')

    def link(self, href: str, text: str) -> None:
        self.parts.append(f'<p><a href="{html.escape(href)}">{html.escape(text)}</a></p>')

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
            for row in rows
        )
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def tokens(self, tokens: list[str], scores: list[float], *, caption: str = "") -> None:
        """Tokens on backgrounds whose darkness is the score (scaled by the maximum)."""
        top = max(scores) if scores else 0.0
        spans = []
        for token, score in zip(tokens, scores):
            a = score / top if top > 0 else 0.0
            colour = "#fff" if a > 0.6 else "#000"
            alpha = 0.05 + 0.95 * a
            spans.append(
                f'<span title="{score:.4g}" style="background:rgba(33,102,172,{alpha:.3f});'
                f"color:{colour};padding:1px 3px;margin:1px;border-radius:3px;"
                f'display:inline-block">{html.escape(token)}</span>'
            )
        cap = f"<div class='note'>{html.escape(caption)}</div>" if caption else ""
        self.parts.append(f"<div style='line-height:1.9'>{''.join(spans)}</div>{cap}")

    def details(self, summary: str, obj: Any) -> None:
        text = html.escape(json.dumps(obj, indent=2, default=str))
        self.parts.append(
            f"<details><summary>{html.escape(summary)}</summary><pre>{text}</pre></details>"
        )

    def write(self, path: str | Path) -> Path:
        page = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}"
            f"</title><style>{CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"
            + "\n".join(self.parts)
            + "</body></html>\n"
        )
        atomic_write_bytes(path, page.encode())
        return Path(path)
