"""``simec evaluate plausibility --scores``: external explanations, no model."""

import json

import pytest

from simec.cli import main

from .test_hatexplain import POSTS, _write

# T1 and T5 of the issue as two posts: their aggregate is known from ERASER's reference code
T_POSTS = [
    {
        "id": "t1",
        "annotators": {"label": [0, 0, 0]},
        "post_tokens": ["w0", "w1", "w2", "w3", "w4", "w5"],
        "rationales": [[1, 1, 1, 0, 0, 0]] * 3,
    },
    {
        "id": "t5",
        "annotators": {"label": [2, 2, 0]},
        "post_tokens": [f"w{i}" for i in range(10)],
        "rationales": [[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]],
    },
    {"id": "n", "annotators": {"label": [1, 1, 2]}, "post_tokens": ["ok"], "rationales": []},
]
T1 = [0.9, 0.8, 0.1, 0.7, 0.05, 0.0]
T5 = [0.1, 0.2, 0.9, 0.3, 0.4, 0.5, 0.6, 0.0, 0.05, 0.15]


def _scores(path, lines):
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def _run(tmp_path, data, scores, *extra):
    argv = ["evaluate", "plausibility", "--data", str(data), "--scores", str(scores)]
    return main([*argv, "--out", str(tmp_path / "out"), "--unit", "words", *extra])


def test_external_word_scores_without_a_model(tmp_path, capsys):
    data = _write(tmp_path / "v.jsonl", T_POSTS)
    scores = _scores(
        tmp_path / "s.jsonl",
        [
            {"id": "t1", "explainer": "mine", "scores": T1},
            {"id": "t5", "explainer": "mine", "scores": T5},
            {"id": "n", "explainer": "mine", "scores": [1.0]},  # normal post: excluded
        ],
    )
    assert _run(tmp_path, data, scores) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["posts"] == 2 and results["unit"] == "words"
    mine = results["table"]["mine"]
    assert mine["token_f1"]["value"] == pytest.approx((0.75 + 1 / 3) / 2)
    assert mine["auprc"]["value"] == pytest.approx((0.90278 + 1.0) / 2, abs=1e-5)
    # IOU: P = (0 + 1/5) / 2, R = (0 + 1) / 2 -> F1 = 2 * .1 * .5 / .6
    assert mine["iou_f1"]["value"] == pytest.approx(1 / 6)
    assert all(mine[k]["n"] == 2 for k in ("cosine", "iou_f1", "token_f1", "auprc"))
    assert "seconds" not in mine and "comprehensiveness" not in mine
    assert "| mine |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            {"id": "t1", "explainer": "e", "scores": [0.1, 0.2]},
            "post 't1' (e): 2 scores for 6 words",
        ),
        ({"id": "zz", "explainer": "e", "scores": [0.1]}, "post 'zz' (e): no post with this id"),
        ({"id": "t1", "explainer": "e", "scores": [0.1, float("nan"), 0, 0, 0, 0]}, "post 't1'"),
        ({"id": "t1", "explainer": "e", "scores": [0.1, "x", 0, 0, 0, 0]}, "not a number"),
        ({"id": "t1", "scores": [0.1]}, 'needs "id", "explainer" and "scores"'),
    ],
)
def test_bad_score_files_give_one_line_errors_naming_the_post(tmp_path, capsys, line, message):
    data = _write(tmp_path / "v.jsonl", T_POSTS)
    good = {"id": "t5", "explainer": "e", "scores": T5}
    scores = _scores(tmp_path / "s.jsonl", [good, line])
    assert _run(tmp_path, data, scores) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert message in err and "s.jsonl:2" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_nan_is_named(tmp_path, capsys):
    data = _write(tmp_path / "v.jsonl", T_POSTS)
    (tmp_path / "s.jsonl").write_text(
        '{"id": "t1", "explainer": "e", "scores": [0.1, NaN, 0, 0, 0, 0]}\n'
    )
    assert _run(tmp_path, data, tmp_path / "s.jsonl") == 2
    assert "post 't1' (e): score 1 is nan" in capsys.readouterr().err


def test_repeated_lines_pieces_without_word_ids_and_missing_source(tmp_path, capsys):
    data = _write(tmp_path / "v.jsonl", POSTS)
    line = {"id": "a", "explainer": "e", "scores": [0.1, 0.2, 0.3]}
    scores = _scores(tmp_path / "s.jsonl", [line, line])
    assert _run(tmp_path, data, scores) == 2
    assert "post 'a' (e): repeated" in capsys.readouterr().err
    scores = _scores(tmp_path / "s.jsonl", [line])
    argv = ["evaluate", "plausibility", "--data", str(data), "--scores", str(scores)]
    assert main([*argv, "--out", str(tmp_path / "o"), "--unit", "pieces"]) == 2
    assert '--unit pieces needs "word_ids"' in capsys.readouterr().err
    assert main(["evaluate", "plausibility", "--data", str(data), "--out", str(tmp_path)]) == 2
    assert "exactly one of --model" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "o"), "--unit", "words", "--limit", "3"]) == 2
    assert "--limit only apply with --model" in capsys.readouterr().err


def test_piece_scores_with_word_ids_score_under_both_units(tmp_path):
    data = _write(tmp_path / "v.jsonl", POSTS)
    # post a: [CLS] i hate you [SEP] with "hate" split in two pieces
    line = {
        "id": "a",
        "explainer": "e",
        "scores": [0.0, 0.1, 0.9, 0.4, 0.2, 0.0],
        "word_ids": [None, 0, 1, 1, 2, None],
    }
    scores = _scores(tmp_path / "s.jsonl", [line])
    argv = ["evaluate", "plausibility", "--data", str(data), "--scores", str(scores)]
    for unit in ("pieces", "words"):
        out = tmp_path / unit
        assert main([*argv, "--unit", unit, "--out", str(out)]) == 0
        table = json.loads((out / "results.json").read_text())["table"]["e"]
        # gold = union {hate, you}: pieces 2, 3, 4 of 6; words 1, 2 of 3
        # top 5 of 6 pieces holds all 3 gold pieces: P 3/5, R 1 -> 0.75; of 3 words: P 2/3 -> 0.8
        assert table["token_f1"]["value"] == pytest.approx(0.75 if unit == "pieces" else 0.8)
        # both rankings put the gold first: AUPRC 1
        assert table["auprc"]["value"] == pytest.approx(1.0)
