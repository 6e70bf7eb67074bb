"""The JSON record the viewer page draws for one run: data, decoded frames and Plotly figures.

Figures are built with Plotly's Python package (validated there) and drawn by plotly.js in the
page; the page only restyles them when the step changes.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import SimecError
from .viewer_data import ModelSource, RunView, first_change, frame_indices, png_data_uri

__all__ = ["fig_json", "run_payload", "template_json"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy", ".bmp", ".gif", ".webp")


def _round(values: Any, digits: int = 6) -> Any:
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


def fig_json(fig: Any) -> dict[str, Any]:
    """A figure as JSON without its layout template (the page holds the template once)."""
    out = json.loads(fig.to_json())
    out["layout"].pop("template", None)
    return out


def template_json() -> dict[str, Any]:
    """Plotly's default template, which every figure of the page uses."""
    import plotly.graph_objects as go

    return json.loads(go.Figure().to_json())["layout"].get("template", {})


def _cursor(x: float, *, yref: str = "paper") -> dict[str, Any]:
    return {
        "type": "line",
        "x0": x,
        "x1": x,
        "y0": 0,
        "y1": 1,
        "xref": "x",
        "yref": yref,
        "line": {"color": "#d62728", "width": 2},
    }


def _base_layout(title: str, height: int = 260) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 13}},
        "height": height,
        "margin": {"l": 50, "r": 10, "t": 36, "b": 40},
        "showlegend": False,
    }


def _figures(run: RunView, payload: dict[str, Any]) -> dict[str, Any]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    probs = run.probabilities
    labels = run.labels
    top = payload["initial_class"]
    steps = list(range(len(probs)))
    bars = go.Figure(go.Bar(x=labels, y=_round(probs[0]), marker_color="#1f77b4"))
    bars.update_layout(**_base_layout("class probabilities at this step"))
    bars.update_yaxes(range=[0, 1])
    pstar = go.Figure(go.Scatter(x=steps, y=_round(probs[:, top]), mode="lines", name="p"))
    shapes = [_cursor(0)]
    change = payload["first_change"]
    annotations = []
    if change is not None:
        shapes.append({**_cursor(change), "line": {"color": "#7f7f7f", "dash": "dash"}})
        annotations.append(
            {
                "x": change,
                "y": 0.02,
                "yref": "paper",
                "xanchor": "left",
                "showarrow": False,
                "text": f" first change: step {change}",
                "font": {"size": 10, "color": "#555"},
            }
        )
    pstar.update_layout(
        **_base_layout(f"p({labels[top]}) along the walk"), shapes=shapes, annotations=annotations
    )
    pstar.update_yaxes(range=[0, 1.05])
    pstar.update_xaxes(title_text="step")
    figures: dict[str, Any] = {"bars": fig_json(bars), "pstar": fig_json(pstar)}

    series = [
        (key, title)
        for key, title in (
            ("lambda_max", "λmax"),
            ("step_sizes", "step size"),
            ("drift", "drift ||y_k - y_0||"),
        )
        if key not in run.missing and run.summary.get(key)
    ]
    if series:
        metrics = make_subplots(
            rows=len(series), cols=1, shared_xaxes=True, subplot_titles=[t for _, t in series]
        )
        for row, (key, _) in enumerate(series, start=1):
            values = np.asarray(run.summary[key], dtype=np.float64)
            values = np.where(np.isfinite(values), values, np.nan)
            metrics.add_trace(
                go.Scatter(x=list(range(len(values))), y=_round(values, 8), mode="lines"),
                row=row,
                col=1,
            )
        metrics.update_layout(
            **_base_layout("", height=110 + 110 * len(series)), shapes=[_cursor(0)]
        )
        metrics.update_xaxes(title_text="step", row=len(series), col=1)
        figures["metrics"] = fig_json(metrics)
    imp = payload.get("importance")
    if imp is not None and imp["kind"] == "grid":
        heat = go.Figure(go.Heatmap(z=imp["z"], colorscale="Viridis", colorbar={"len": 0.8}))
        heat.update_layout(**_base_layout("importance of each patch (Algorithm 3)", 280))
        heat.update_yaxes(autorange="reversed", scaleanchor="x")
        figures["importance"] = fig_json(heat)
    elif imp is not None:
        heat = go.Figure(go.Bar(x=list(range(len(imp["names"]))), y=imp["scores"]))
        heat.update_layout(**_base_layout("importance of each token (Algorithm 3)", 260))
        heat.update_xaxes(tickvals=list(range(len(imp["names"]))), ticktext=imp["names"])
        figures["importance"] = fig_json(heat)
    return figures


def _vision_frames(
    run: RunView, adapter: Any, raw: Any, idx: list[int], payload: dict[str, Any]
) -> None:
    from ..interpret import ViTDecoder, classify_pictures, segment_importance
    from .plots import patch_grid

    assert run.trajectory is not None
    decoder = ViTDecoder(adapter)
    traj = run.trajectory
    explored = run.summary.get("explored_segments")
    if raw is not None:
        original = adapter.image(raw)
    else:  # not recorded: the picture of the first stored point
        original = decoder.to_image(traj[0].to(decoder.weight))
        payload["notes"].append("input picture reconstructed from the stored step 0")
    images = decoder.decode_trajectory(traj[idx], original=original, explored_segments=explored)
    probs = classify_pictures(adapter, images)  # the decoded pictures, in batches
    payload["frames"].update(
        kind="image",
        images=[png_data_uri(im) for im in images],
        decoded_class=probs.argmax(1).tolist(),
        decoded_prob=_round(probs.max(1).values, 4),
    )
    payload["input_image"] = png_data_uri(original)
    imp = segment_importance(adapter, original)
    if adapter.patch_size and imp.scores.numel() >= adapter.num_patches:
        payload["importance"] = {
            "kind": "grid",
            "z": _round(patch_grid(imp.scores, adapter.patch_grid), 8),
        }


def _text_frames(
    run: RunView,
    adapter: Any,
    raw: Any,
    idx: list[int],
    payload: dict[str, Any],
    models: ModelSource,
) -> None:
    from ..interpret import segment_importance
    from ..interpret.decode_text import NearestTokenDecoder

    assert run.trajectory is not None
    text = raw if isinstance(raw, str) and raw.strip() else str(run.summary.get("input") or "")
    prepared = adapter.prepare(text)
    traj = run.trajectory[idx]
    if tuple(traj.shape[1:]) != tuple(prepared.embeddings.shape):
        raise SimecError(
            f"the stored points {tuple(traj.shape[1:])} do not match the model's embedding of "
            f"the input {tuple(prepared.embeddings.shape)}"
        )
    # special tokens ([CLS], [SEP]) stay: the nearest-token decoder never proposes them
    special = set(adapter.tokenizer.all_special_tokens)
    explored = run.summary.get("explored_segments") or range(prepared.num_segments)
    segments = [int(s) for s in explored if prepared.segment_names[int(s)] not in special]
    if not segments:
        raise SimecError("the run explored only special tokens: nothing to decode")
    decoded = NearestTokenDecoder(adapter).decode(traj, prepared, segments=segments)
    ids = decoded.ids[:, 0]
    original = prepared.model_inputs["input_ids"][0].cpu()
    probs = adapter.classify_ids(ids).double()
    tok = adapter.tokenizer
    payload["frames"].update(
        kind="text",
        tokens=[tok.convert_ids_to_tokens(row.tolist()) for row in ids],
        changed=[(row != original).tolist() for row in ids],
        decoded_class=probs.argmax(1).tolist(),
        decoded_prob=_round(probs.max(1).values, 4),
    )
    mlm = models.mlm_adapter()
    if mlm is not None:
        from ..interpret.decode_text import MLMDecoder, alternative_prompts

        k = models.alternatives
        options = MLMDecoder(mlm).decode(traj, prepared, segments=segments, k=k)
        alt_probs = alternative_prompts(adapter, options).double()  # (m, k, q)
        payload["frames"]["alternatives"] = [
            [
                {"text": t, "class": int(p.argmax()), "p": round(float(p.max()), 4)}
                for t, p in zip(options.texts(tok, point=i), alt_probs[i])
            ]
            for i in range(len(traj))
        ]
    else:
        payload["missing"]["alternatives"] = (
            "no alternative prompts: give a masked LM (simec view --mlm DIR) to draw them"
        )
    imp = segment_importance(adapter, text)
    payload["importance"] = {
        "kind": "tokens",
        "names": list(imp.segment_names),
        "scores": _round(imp.scores, 8),
    }


def run_payload(
    run: RunView,
    models: ModelSource,
    *,
    max_frames: int,
    raw: Any = None,
    title: str | None = None,
) -> dict[str, Any]:
    """Everything the page shows for ``run``; a panel it cannot fill says why in ``missing``."""
    probs = run.probabilities
    predicted = probs.argmax(1).tolist()
    config = run.config
    payload: dict[str, Any] = {
        "name": run.name,
        "title": title or _title(run),
        "input": str(run.summary.get("input") or ""),
        "labels": run.labels,
        "probabilities": _round(probs),
        "predicted": predicted,
        "initial_class": predicted[0],
        "steps": len(probs) - 1,
        "first_change": first_change(predicted),
        "stop_reason": str(run.summary.get("stop_reason", "not recorded")),
        "config": config,
        "model": run.summary.get("model") or {},
        "missing": dict(run.missing),
        "notes": [],
        "frames": {"steps": [], "kind": None},
        "importance": None,
    }
    if run.trajectory is not None and run.trajectory_steps:
        stored = list(run.trajectory_steps)
        idx = frame_indices(len(stored), max_frames)
        payload["frames"]["steps"] = [int(stored[i]) for i in idx]
        if len(idx) < len(stored):
            payload["notes"].append(
                f"showing {len(idx)} of the {len(stored)} stored steps (evenly subsampled, "
                f"first and last kept); curves use all {len(probs)} steps"
            )
        adapter, why = models.for_run(run)
        if adapter is None:
            payload["missing"]["frames"] = f"decoded input not available: {why}"
        else:
            text = adapter.modality == "text"
            raw = raw if raw is not None else _recorded_input(run, text=text)
            try:
                _check_fit(run, adapter)
                if text:
                    _text_frames(run, adapter, raw, idx, payload, models)
                else:
                    _vision_frames(run, adapter, raw, idx, payload)
            except SimecError as exc:
                payload["missing"]["frames"] = f"decoded input not available: {exc}"
                payload["frames"] = {"steps": payload["frames"]["steps"], "kind": None}
            except (RuntimeError, ValueError, IndexError) as exc:  # shapes of another model
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                payload["missing"]["frames"] = (
                    f"decoded input not available: the model does not fit this run ({first}); "
                    "pass the run's model with --model DIR"
                )
                payload["frames"] = {"steps": payload["frames"]["steps"], "kind": None}
    else:
        payload["missing"].setdefault("frames", "this run has no stored points")
        payload["missing"]["frames"] = (
            "decoded input not available: " + payload["missing"]["frames"]
        )
    if payload["importance"] is None:
        payload["missing"]["importance"] = "importance not available (" + (
            payload["missing"].get("frames", "no model") + ")"
        )
    payload["figures"] = _figures(run, payload)
    return payload


#: model facts a run records that the decoding model must share
_FIT_KEYS = ("adapter", "model_type", "image_size", "patch_size", "num_channels")


def _check_fit(run: RunView, adapter: Any) -> None:
    recorded, mine = run.summary.get("model") or {}, adapter.describe()
    differ = [k for k in _FIT_KEYS if k in recorded and k in mine and recorded[k] != mine[k]]
    if differ:
        said = "; ".join(f"{k}: {recorded[k]} in the run, {mine[k]} here" for k in differ)
        raise SimecError(f"the model does not fit this run ({said}); pass its model with --model")


def _recorded_input(run: RunView, *, text: bool) -> Any:
    """The raw input a run recorded: the text itself, or an image file that still exists."""
    from pathlib import Path

    if text:
        return str(run.summary.get("input") or "") or None
    value = (run.config.get("extra") or {}).get("input")
    if isinstance(value, str) and Path(value).suffix.lower() in IMAGE_SUFFIXES:
        return value if Path(value).is_file() else None
    return None


def _title(run: RunView) -> str:
    config = run.config
    algorithm = str(config.get("algorithm") or "run")
    return f"{run.name}: {algorithm}, {run.space()} space"
