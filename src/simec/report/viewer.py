"""``simec view``: one self-contained HTML file to scrub through exploration runs.

No server and no network: plotly.js (from Plotly's Python package), the page's script and all
data are inlined, so the file opens from ``file://`` and can be mailed or attached to a paper.

* one run: a slider over its stored steps (play/pause, arrow keys) moving the decoded input,
  the class the model gives that decoded input itself, the class probabilities, p(i*) along
  the walk, lambda_max / step size / drift, beside the importance heatmap, first class change,
  stop reason and configuration;
* several runs (of the same input): side by side, driven by one slider;
* a dataset run (a folder with ``manifest.jsonl``): an index with a thumbnail (or the text),
  start and end class, steps, stop reason of every input, the confusion matrix of the original
  vs final predicted class and a histogram of the first-change step; each input's view is
  parsed and drawn only when opened (the page stays light with hundreds of inputs).
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes
from ..errors import InputError
from ..explore.result import SUMMARY, ExplorationResult
from .viewer_data import (
    DEFAULT_MAX_FRAMES,
    ModelSource,
    RunView,
    frame_indices,
    read_run,
    run_from_result,
)
from .viewer_payload import fig_json, run_payload, template_json

__all__ = ["DEFAULT_DATASET_FRAMES", "DEFAULT_MAX_FRAMES", "render_html", "write_viewer"]

#: frames per input of a dataset run (each input's view is small; the index stays usable)
DEFAULT_DATASET_FRAMES = 60
MANIFEST = "manifest.jsonl"

CSS = """
body{font-family:system-ui,sans-serif;margin:1em 1.5em;color:#222}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em}h3{font-size:1em;margin:.3em 0}
.note{color:#555;font-size:.88em}.missing{color:#8a4b00;background:#fff4e0;padding:.4em;
margin:.3em 0;border-radius:4px;font-size:.9em}
.controls{display:flex;align-items:center;gap:.8em;position:sticky;top:0;background:#fff;
padding:.4em 0;z-index:10;border-bottom:1px solid #eee}
#slider{flex:1}.steplabel{font-variant-numeric:tabular-nums;min-width:9em}
.runs{display:grid;gap:1.2em}.run{min-width:0}
.picture{width:224px;height:224px;image-rendering:pixelated;border:1px solid #ccc}
.cls{font-size:.92em;margin:.15em 0}.tokens{line-height:2}
.tok{padding:1px 3px;margin:1px;border-radius:3px;background:#eef;display:inline-block}
.tok.changed{background:#d62728;color:#fff}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;font-size:.9em}
th{background:#f5f5f5}td img{width:42px;height:42px;image-rendering:pixelated}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs>div{flex:1;min-width:320px}
pre{background:#f7f7f7;padding:.5em;overflow:auto;font-size:.78em;max-height:24em}
"""


def _script_json(obj: Any) -> str:
    """JSON safe inside <script type="application/json"> (no '</' can close the tag)."""
    text = json.dumps(obj, allow_nan=False, default=str)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _finite(obj: Any) -> Any:
    """NaN/Inf (not JSON) become null, which Plotly draws as gaps."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _plotly_js() -> str:
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:  # pragma: no cover - plotly is a dependency
        raise InputError("simec view needs plotly: pip install plotly") from None
    return get_plotlyjs()


def _plotly_tag(compress: bool) -> str:
    """plotly.js inline: as is, or gzip + base64 (1.9 instead of 4.8 MB; the page unpacks it)."""
    js = _plotly_js()
    if not compress:
        return f"<script>{js}</script>"
    packed = base64.b64encode(gzip.compress(js.encode(), 9, mtime=0)).decode()
    return f'<script type="application/octet-stream" id="simec-plotly-gz">{packed}</script>'


def _page_js() -> str:
    return (resources.files("simec") / "report" / "viewer_page.js").read_text(encoding="utf-8")


def render_html(
    title: str,
    views: list[dict[str, Any]],
    *,
    index: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
    compress: bool = True,
) -> str:
    """The page: plotly.js, the page script and one JSON block per view (parsed when shown)."""
    meta: dict[str, Any] = {"dataset": index is not None, "template": template_json()}
    if index is not None:
        meta["views"] = {row["id"]: row["view"] for row in index["rows"] if row["view"] is not None}
    blocks = [
        f'<script type="application/json" id="simec-view-{i}">{_script_json(_finite(v))}</script>'
        for i, v in enumerate(views)
    ]
    blocks.append(f'<script type="application/json" id="simec-meta">{_script_json(meta)}</script>')
    body = [f"<h1>{html.escape(title)}</h1>"]
    body += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    if index is not None:
        blocks.append(
            f'<script type="application/json" id="simec-index">'
            f"{_script_json(_finite(index))}</script>"
        )
        body.append(_index_html(index))
    body.append('<div id="view"></div>')
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style>"
        f"{_plotly_tag(compress)}</head><body>"
        + "\n".join(body)
        + "\n".join(blocks)
        + f"<script>{_page_js()}</script></body></html>\n"
    )


def _index_html(index: dict[str, Any]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("input", "", "start class", "end class", "steps", "first change", "stop")
    )
    rows = []
    for row in index["rows"]:
        thumb = f"<img src='{row['thumbnail']}' alt=''>" if row.get("thumbnail") else ""
        name = html.escape(row["input"])
        link = (
            f"<a href='#input-{html.escape(row['id'])}'>{name}</a>"
            if row["view"] is not None
            else name
        )
        cells = [
            link,
            thumb,
            row["start"],
            row["end"],
            row["steps"],
            row["first_change"],
            row["stop"],
        ]
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{c if i in (0, 1) else html.escape(str(c))}</td>" for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    figs = "<div class='figs'><div id='confusion'></div><div id='histogram'></div></div>"
    note = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in index.get("notes", []))
    return (
        f"<div id='index'><h2>{len(index['rows'])} inputs</h2>{note}{figs}"
        f"<table id='inputs'><tr>{head}</tr>{''.join(rows)}</table></div>"
    )


def _slider_steps(payloads: list[dict[str, Any]], max_frames: int) -> tuple[list[int], str]:
    """Every step when there are at most ``max_frames``, else an even subset plus the stored
    steps; the picture shown at a step is the last stored one at or before it."""
    last = max(p["steps"] for p in payloads)
    steps = set(frame_indices(last + 1, max_frames))
    steps.update(s for p in payloads for s in p["frames"]["steps"])
    note = "" if len(steps) == last + 1 else f"the slider stops at {len(steps)} of {last + 1} steps"
    return sorted(steps), note


def _view(title: str, payloads: list[dict[str, Any]], max_frames: int, *, back: bool) -> dict:
    steps, note = _slider_steps(payloads, max_frames)
    starts = [np.asarray(p["probabilities"][0]) for p in payloads]
    if any(s.shape != starts[0].shape or np.abs(s - starts[0]).max() > 1e-4 for s in starts):
        note = (note + "; " if note else "") + (
            "these runs do not start from the same model output: different inputs or models"
        )
    return {"title": title, "runs": payloads, "slider_steps": steps, "note": note, "back": back}


def _load(item: Any, i: int, name: str | None = None) -> RunView:
    if isinstance(item, RunView):
        return item
    if isinstance(item, ExplorationResult):
        return run_from_result(item, name=name or f"run {i + 1}")
    if isinstance(item, (str, os.PathLike)):
        return read_run(item, name=name)
    raise InputError(f"cannot view a {type(item).__name__}: give run folders or results")


def _is_dataset(path: Any) -> bool:
    return isinstance(path, (str, os.PathLike)) and (Path(path) / MANIFEST).is_file()


def write_viewer(
    runs: Sequence[str | os.PathLike | ExplorationResult] | str | os.PathLike | ExplorationResult,
    out: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    adapter: Any = None,
    inputs: Sequence[Any] | None = None,
    titles: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    title: str | None = None,
    max_frames: int | None = None,
    compress: bool = True,
    mlm: Any = None,
    alternatives: int = 5,
) -> Path:
    """Write the viewer of ``runs`` (run folders, results, or one dataset folder) to ``out``.

    ``model`` (a model directory) or ``adapter`` decodes the stored points; by default the model
    directory each run recorded. ``inputs`` gives each run's raw input (else what the run
    recorded). ``names`` names each run (default: its folder's name, ``run i`` for a result in
    memory); ``titles`` heads each run's column. ``max_frames`` caps the decoded steps per run
    (evenly subsampled beyond it).
    ``compress=False`` inlines plotly.js as is (for browsers without DecompressionStream).
    ``mlm`` (a masked-LM directory or adapter sharing the text model's embeddings) adds
    ``alternatives`` alternative prompts per shown step to text runs.
    """
    items = [runs] if isinstance(runs, (str, os.PathLike, ExplorationResult)) else list(runs)
    if not items:
        raise InputError("nothing to view: give at least one run folder")
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            folder = Path(item)
            if not folder.is_dir():
                raise InputError(f"{folder} is not a folder")
            if not (folder / SUMMARY).is_file() and not (folder / MANIFEST).is_file():
                raise InputError(
                    f"{folder} is not a simec run: expected {SUMMARY} (one exploration) or "
                    f"{MANIFEST} (a dataset run)"
                )
    models = ModelSource(model=model, adapter=adapter, mlm=mlm, alternatives=alternatives)
    if any(_is_dataset(item) for item in items):
        if len(items) > 1:
            raise InputError("a dataset run (a folder with manifest.jsonl) is viewed on its own")
        page = _dataset_page(
            Path(str(items[0])),
            models,
            max_frames=max_frames,
            compress=compress,
        )
    else:
        if titles is not None and len(titles) != len(items):
            raise InputError(f"got {len(titles)} titles for {len(items)} runs")
        if inputs is not None and len(inputs) != len(items):
            raise InputError(f"got {len(inputs)} inputs for {len(items)} runs")
        if names is not None and len(names) != len(items):
            raise InputError(f"got {len(names)} names for {len(items)} runs")
        limit = max_frames or DEFAULT_MAX_FRAMES
        views = [
            _load(item, i, names[i] if names is not None else None) for i, item in enumerate(items)
        ]
        payloads = [
            run_payload(
                v,
                models,
                max_frames=limit,
                raw=inputs[i] if inputs is not None else None,
                title=titles[i] if titles is not None else None,
            )
            for i, v in enumerate(views)
        ]
        heading = title or (
            "simec: " + payloads[0]["title"]
            if len(payloads) == 1
            else f"simec: {len(payloads)} runs side by side, one slider"
        )
        page = render_html(
            heading, [_view(heading, payloads, limit, back=False)], compress=compress
        )
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, page.encode("utf-8"))
    return target


def _dataset_page(
    folder: Path, models: ModelSource, *, max_frames: int | None, compress: bool
) -> str:
    import plotly.graph_objects as go

    from ..runs.manifest import Manifest

    limit = max_frames or DEFAULT_DATASET_FRAMES
    entries = list(Manifest(folder).read().values())
    entries.sort(key=lambda e: e.get("index", 0))
    run_file = folder / "run.json"
    spec_path = None
    if run_file.is_file():
        try:
            spec_path = (
                (json.loads(run_file.read_text()).get("model") or {}).get("spec") or {}
            ).get("path")
        except (OSError, json.JSONDecodeError):
            spec_path = None
    explicit = models.model is not None or models.adapter is not None
    fallback = models.with_model(spec_path) if not explicit and spec_path else None
    rows: list[dict[str, Any]] = []
    views: list[dict[str, Any]] = []
    labels: list[str] = []
    pairs: list[tuple[int, int]] = []
    changes: list[int] = []
    never = 0
    for entry in entries:
        row = {
            "id": str(entry["id"]),
            "input": str(entry.get("input") or entry["id"]),
            "start": entry.get("predicted_start") or "",
            "end": entry.get("predicted_end") or "",
            "steps": entry.get("steps_completed", ""),
            "first_change": "",
            "stop": entry.get("stop_reason") or entry.get("error") or entry.get("status", ""),
            "view": None,
            "thumbnail": None,
        }
        result = entry.get("result")
        if result and (folder / result / SUMMARY).is_file():
            run = read_run(folder / result, name=str(entry["id"]))
            source = models if fallback is None or run.model_dir() else fallback
            payload = run_payload(run, source, max_frames=limit)
            labels = payload["labels"]
            row["first_change"] = (
                payload["first_change"] if payload["first_change"] is not None else "never"
            )
            if payload["first_change"] is None:
                never += 1
            else:
                changes.append(payload["first_change"])
            pairs.append((payload["predicted"][0], payload["predicted"][-1]))
            if payload["frames"]["kind"] == "image":
                row["thumbnail"] = payload["frames"]["images"][0]
            row["view"] = len(views)
            views.append(_view(f"input {row['input']}", [payload], limit, back=True))
        rows.append(row)
    q = len(labels)
    matrix = np.zeros((q, q), dtype=int)
    for a, b in pairs:
        matrix[a, b] += 1
    conf = go.Figure(
        go.Heatmap(
            z=matrix.tolist(),
            x=labels,
            y=labels,
            colorscale="Blues",
            text=matrix.tolist(),
            texttemplate="%{text}",
        )
    )
    conf.update_layout(
        title={"text": "original (rows) vs final (columns) predicted class", "font": {"size": 13}},
        height=380,
        margin={"l": 60, "r": 10, "t": 40, "b": 50},
    )
    conf.update_yaxes(autorange="reversed", title_text="original")
    conf.update_xaxes(title_text="final")
    figures: dict[str, Any] = {"confusion": fig_json(conf)}
    hist = go.Figure(go.Histogram(x=changes, nbinsx=min(30, max(1, len(changes)))))
    hist.update_layout(
        title={
            "text": f"first step the class changes ({len(changes)} inputs; {never} never change)",
            "font": {"size": 13},
        },
        height=380,
        margin={"l": 50, "r": 10, "t": 40, "b": 50},
    )
    hist.update_xaxes(title_text="step")
    figures["histogram"] = fig_json(hist)
    notes = [f"each input's view shows at most {limit} decoded steps"]
    index = {"rows": rows, "figures": figures, "notes": notes}
    return render_html(f"simec: dataset run {folder.name}", views, index=index, compress=compress)
