import json

import numpy as np
import pytest

from simec import InputError
from simec.cli import main
from simec.evaluate.hatexplain import load_hatexplain, unit_marks, word_scores

POSTS = [
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


def _write(path, posts=POSTS):
    path.write_text("\n".join(json.dumps(p) for p in posts) + "\n")
    return path


def test_loader_keeps_rationale_posts_with_every_annotators_marks(tmp_path):
    posts = load_hatexplain(_write(tmp_path / "v.jsonl"))
    assert [p["id"] for p in posts] == ["a", "c"]  # the normal post has no rationale
    assert posts[0]["marks"] == [[0, 1, 0], [0, 1, 1]]
    assert posts[0]["rationale"] == [0.0, 1.0, 0.5]
    assert posts[0]["label"] == "hatespeech" and posts[1]["label"] == "offensive"
    with pytest.raises(InputError, match="does not exist"):
        load_hatexplain(tmp_path / "missing.jsonl")


def test_loader_drops_posts_without_a_hate_or_offensive_majority(tmp_path):
    undecided = {**POSTS[0], "id": "u", "annotators": {"label": [0, 1, 2]}}
    posts = load_hatexplain(_write(tmp_path / "v.jsonl", [undecided, POSTS[2]]))
    assert [p["id"] for p in posts] == ["c"]


def test_word_scores_take_the_max_over_pieces():
    import torch

    scores = torch.tensor([5.0, 0.2, 0.7, 0.1, 5.0])
    out = word_scores(scores, [None, 0, 0, 1, None], 3)
    np.testing.assert_allclose(out, [0.7, 0.1, 0.0])


def test_pieces_carry_their_words_marks_and_specials_are_unmarked():
    marks = [[0, 1, 0], [0, 1, 1]]
    got = unit_marks(marks, [None, 0, 1, 1, 2, None], "pieces")
    np.testing.assert_array_equal(got, [[0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 1, 0]])
    np.testing.assert_array_equal(unit_marks(marks, None, "words"), marks)


def _argv(bert_dir, data, out, *extra):
    return [
        "evaluate",
        "plausibility",
        "--model",
        str(bert_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_evaluate_plausibility_end_to_end_resume_and_rescore(bert_dir, tmp_path, capsys):
    data = _write(tmp_path / "v.jsonl")
    out = tmp_path / "eval"
    saved = tmp_path / "scores.jsonl"
    explainers = "simec,rollout,relevancy,grad_x_input,random"
    argv = _argv(bert_dir, data, out, "--explainers", explainers, "--save-scores", str(saved))
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"] == "hatexplain" and results["unit"] == "pieces"
    assert results["posts"] == 2
    assert set(results["metrics"]) >= {"iou_f1", "token_f1", "auprc", "cosine", "sufficiency"}
    assert results["metrics"]["sufficiency"]["higher_is_better"] is False
    assert "BERT [Attn]" in results["hatexplain_published"]
    for name in explainers.split(","):
        entry = results["table"][name]
        for metric in (
            "cosine",
            "iou_f1",
            "token_f1",
            "auprc",
            "comprehensiveness",
            "comprehensiveness_top5",
            "sufficiency_top5",
        ):
            assert set(entry[metric]) == {"value", "std", "n"}
            assert entry[metric]["n"] == 2
        for metric in ("cosine", "iou_f1", "token_f1", "auprc"):
            assert 0 <= entry[metric]["value"] <= 1
    table = (out / "table.md").read_text()
    assert "| simec |" in table and "Protocol hatexplain, unit pieces" in table
    assert "HateXplain paper" in table
    assert (out / "table.csv").is_file() and (out / "plausibility.png").is_file()
    row = out / "rows" / "00000.json"
    stamp = row.stat().st_mtime_ns
    assert main(argv) == 0  # resumed: finished posts are not recomputed
    assert row.stat().st_mtime_ns == stamp
    assert "Paper (cosine)" in capsys.readouterr().out

    # the saved scores re-score to the same plausibility numbers without the model
    lines = [json.loads(x) for x in saved.read_text().splitlines()]
    assert len(lines) == 2 * 5 and all(len(x["scores"]) == len(x["word_ids"]) for x in lines)
    again = tmp_path / "again"
    argv = ["evaluate", "plausibility", "--scores", str(saved), "--data", str(data)]
    assert main([*argv, "--out", str(again)]) == 0
    rescored = json.loads((again / "results.json").read_text())["table"]
    for name in explainers.split(","):
        for metric in ("cosine", "iou_f1", "token_f1", "auprc"):
            assert rescored[name][metric] == results["table"][name][metric]
    # and under another protocol and unit, also without the model
    other = tmp_path / "ferret"
    assert main([*argv, "--protocol", "ferret", "--unit", "words", "--out", str(other)]) == 0
    ferret = json.loads((other / "results.json").read_text())
    assert ferret["protocol"] == "ferret" and ferret["unit"] == "words"
    assert set(ferret["table"]["simec"]) == {"cosine", "token_f1", "token_iou", "auprc"}


def test_faithfulness_can_be_limited_to_the_first_posts(bert_dir, tmp_path):
    data = _write(tmp_path / "v.jsonl")
    out = tmp_path / "eval"
    argv = _argv(bert_dir, data, out, "--explainers", "simec,random", "--unit", "words")
    assert main([*argv, "--faithfulness-posts", "1"]) == 0
    table = json.loads((out / "results.json").read_text())["table"]
    assert table["simec"]["cosine"]["n"] == 2
    assert table["simec"]["comprehensiveness"]["n"] == 1
    assert table["random"]["sufficiency"]["n"] == 1
    assert "comprehensiveness n = 1" in (out / "table.md").read_text()


def test_rows_written_before_the_typed_rows_resume_and_other_posts_rows_are_made_again(
    bert_dir, tmp_path
):
    """Rows of the old dict form (no keys for faithfulness not computed) load as ``PostRow``
    and are kept; a row of another post (or lacking an explainer) is made again."""
    from simec.evaluate.rationales import PostRow
    from simec.experiments.rows import load_row

    data = _write(tmp_path / "v.jsonl")
    out = tmp_path / "eval"
    argv = _argv(bert_dir, data, out, "--explainers", "simec,random", "--faithfulness-posts", "1")
    assert main(argv) == 0
    before = json.loads((out / "results.json").read_text())["table"]
    rows = sorted((out / "rows").glob("*.json"))
    assert len(rows) == 2
    second = json.loads(rows[1].read_text())
    assert second["format"] == 2 and second["explainers"]["simec"]["comprehensiveness"] is None
    for path in rows:  # the old form: null faithfulness keys absent
        old = json.loads(path.read_text())
        for scores in old["explainers"].values():
            for key in [k for k, v in scores.items() if v is None]:
                del scores[key]
        path.write_text(json.dumps(old) + "\n")
    assert load_row(rows[1], PostRow).explainers["random"].sufficiency is None
    stamps = [p.stat().st_mtime_ns for p in rows]
    assert main(argv) == 0
    assert [p.stat().st_mtime_ns for p in rows] == stamps
    assert json.loads((out / "results.json").read_text())["table"] == before
    # another post's row, and a row without one of the explainers, are made again
    other = json.loads(rows[0].read_text())
    rows[0].write_text(json.dumps({**other, "id": "zzz"}) + "\n")
    del second["explainers"]["random"]
    rows[1].write_text(json.dumps(second) + "\n")
    assert main(argv) == 0
    assert load_row(rows[0], PostRow).id == "a"
    assert set(load_row(rows[1], PostRow).explainers) == {"simec", "random"}
    assert (
        json.loads((out / "results.json").read_text())["table"]["simec"]["cosine"]
        == (before["simec"]["cosine"])
    )


def test_piece_predictor_runs_the_model_on_the_kept_piece_ids(bert_dir):
    import torch

    from simec.evaluate.rationales import _piece_predictor
    from simec.models import load_adapter

    adapter = load_adapter(str(bert_dir))

    def probs(words):
        prepared = adapter.prepare(words)
        with torch.no_grad():
            return torch.softmax(adapter.logits(prepared.embeddings, prepared), -1).numpy()

    words = ["bad", "dogs", "sat", "here"]
    prepared = adapter.prepare(words)
    predict = _piece_predictor(adapter, prepared)
    ids = prepared.word_ids
    n = len(ids)
    np.testing.assert_allclose(predict(np.ones(n, bool)), probs(words), atol=1e-5)
    # keeping every non-special piece "alone" re-wraps them in [CLS] ... [SEP]: the same input
    inner = np.array([w is not None for w in ids])
    np.testing.assert_allclose(predict(inner, only=True), probs(words), atol=1e-5)
    # deleting the pieces of word 0 runs the post without it
    np.testing.assert_allclose(
        predict(np.array([w != 0 for w in ids])), probs(words[1:]), atol=1e-5
    )
    # the pieces of words 1 and 2 alone
    alone = np.array([w in (1, 2) for w in ids])
    np.testing.assert_allclose(predict(alone, only=True), probs(words[1:3]), atol=1e-5)
