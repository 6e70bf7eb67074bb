import json

import numpy as np
import pytest

from simec import InputError
from simec.cli import main
from simec.evaluate.hatexplain import load_hatexplain, word_scores


def _write(path):
    posts = [
        {
            "id": "a",
            "annotators": {"label": [0, 0, 2]},
            "post_tokens": ["i", "hate", "you"],
            "rationales": [[0, 1, 0], [0, 1, 1]],
        },
        {
            "id": "b",
            "annotators": {"label": [1, 1, 1]},
            "post_tokens": ["the", "cat"],
            "rationales": [],
        },
        {
            "id": "c",
            "annotators": {"label": [2, 2, 1]},
            "post_tokens": ["bad", "dogs", "sat"],
            "rationales": [[1, 0, 0], [1, 1, 0], [1, 0, 0]],
        },
    ]
    path.write_text("\n".join(json.dumps(p) for p in posts) + "\n")
    return path


def test_loader_keeps_rationale_posts_and_averages_marks(tmp_path):
    posts = load_hatexplain(_write(tmp_path / "v.jsonl"))
    assert [p["id"] for p in posts] == ["a", "c"]  # the normal post has no rationale
    assert posts[0]["rationale"] == [0.0, 1.0, 0.5]
    assert posts[0]["label"] == "hatespeech" and posts[1]["label"] == "offensive"
    with pytest.raises(InputError, match="does not exist"):
        load_hatexplain(tmp_path / "missing.jsonl")


def test_word_scores_take_the_max_over_pieces():
    import torch

    scores = torch.tensor([5.0, 0.2, 0.7, 0.1, 5.0])
    out = word_scores(scores, [None, 0, 0, 1, None], 3)
    np.testing.assert_allclose(out, [0.7, 0.1, 0.0])


def test_evaluate_plausibility_end_to_end_and_resume(bert_dir, tmp_path, capsys):
    data = _write(tmp_path / "v.jsonl")
    out = tmp_path / "eval"
    argv = [
        "evaluate",
        "plausibility",
        "--model",
        str(bert_dir),
        "--data",
        str(data),
        "--explainers",
        "simec,rollout,relevancy,grad_x_input,random",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["posts"] == 2
    for name in ("simec", "rollout", "relevancy", "grad_x_input", "random"):
        entry = results["table"][name]
        assert entry["cosine"]["n"] == 2 and 0 <= entry["cosine"]["mean"] <= 1
        assert entry["comprehensiveness"]["n"] == 2
    assert "| simec |" in (out / "table.md").read_text()
    assert (out / "table.csv").is_file() and (out / "plausibility.png").is_file()
    row = out / "rows" / "00000.json"
    stamp = row.stat().st_mtime_ns
    assert main(argv) == 0  # resumed: finished posts are not recomputed
    assert row.stat().st_mtime_ns == stamp
    assert "Paper (cosine)" in capsys.readouterr().out


def test_faithfulness_can_be_limited_to_the_first_posts(bert_dir, tmp_path):
    data = _write(tmp_path / "v.jsonl")
    out = tmp_path / "eval"
    argv = ["evaluate", "plausibility", "--model", str(bert_dir), "--data", str(data)]
    argv += ["--explainers", "simec,random", "--faithfulness-posts", "1", "--out", str(out)]
    assert main(argv + ["--quiet"]) == 0
    table = json.loads((out / "results.json").read_text())["table"]
    assert table["simec"]["cosine"]["n"] == 2
    assert table["simec"]["comprehensiveness"]["n"] == 1
    assert table["random"]["sufficiency"]["n"] == 1
    assert "comprehensiveness n = 1" in (out / "table.md").read_text()
