import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import load_file

from simec.cli import main


def test_help_reads_well(capsys):
    for argv in (["--help"], ["explore", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in (
        "SiMEC",
        "--algorithm",
        "--method",
        "--output-metric",
        "--segments",
        "--device",
        "summary.json",
        "examples:",
    ):
        assert word in out


def test_every_option_of_every_command_has_help():
    import argparse

    from simec.cli import build_parser

    missing = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif action.option_strings and not action.help:
                missing.append(" ".join([*path, action.option_strings[-1]]))
            elif action.help and "%(default)s" in action.help:
                action.help % {"default": action.default}  # the template formats

    walk(build_parser(), [])
    assert not missing, missing


def test_explore_an_image_writes_summary_and_trajectory(vit_dir, image, tmp_path, capsys):
    np.save(tmp_path / "digit.npy", image)
    out = tmp_path / "out"
    code = main(
        [
            "explore",
            "--model",
            str(vit_dir),
            "--input",
            str(tmp_path / "digit.npy"),
            "--algorithm",
            "simexp",
            "--steps",
            "4",
            "--seed",
            "3",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["algorithm"] == "simexp" and summary["config"]["seed"] == 3
    assert summary["config"]["extra"]["model_dir"].endswith("vit")
    assert np.array(summary["probabilities"]).shape == (5, 3)
    assert len(summary["predicted"]) == 5
    assert len(summary["lambda_max"]) == len(summary["step_sizes"]) == 4
    assert summary["stop_reason"] == "completed" and summary["elapsed_seconds"] > 0
    assert summary["environment"]["packages"]["torch"]
    tensors = load_file(str(out / "trajectory.safetensors"))
    assert tensors["trajectory"].shape == (5, 17, 16)
    assert "simexp: 4 steps" in capsys.readouterr().out


def test_explore_text_with_segments(bert_dir, tmp_path):
    out = tmp_path / "text"
    code = main(
        [
            "explore",
            "--model",
            str(bert_dir),
            "--input",
            "the dog is good",
            "--segments",
            "1-2",
            "--steps",
            "3",
            "--method",
            "exact",
            "--out",
            str(out),
            "--quiet",
            "--corrector",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["explored_segments"] == [1, 2]
    assert summary["segment_names"][:3] == ["[CLS]", "the", "dog"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "no/such/dir", "--input", "x"], "does not exist"),
        (["--input", "", "--segments", "all"], "empty"),
        (["--input", "the cat", "--segments", "1-x"], "cannot read segments"),
    ],
)
def test_bad_input_gives_a_message_not_a_traceback(bert_dir, tmp_path, capsys, args, message):
    argv = ["explore", "--model", str(bert_dir), "--out", str(tmp_path / "o"), "--quiet", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_image_and_unknown_option_values(vit_dir, tmp_path, capsys):
    np.save(tmp_path / "big.npy", np.full((9, 9), 0.5, dtype=np.float32))
    argv = [
        "explore",
        "--model",
        str(vit_dir),
        "--input",
        str(tmp_path / "big.npy"),
        "--out",
        str(tmp_path / "o"),
        "--quiet",
    ]
    assert main(argv) == 2
    assert "8x8" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--algorithm", "simex"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_console_script_runs_as_a_module():
    proc = subprocess.run(
        [sys.executable, "-m", "simec", "--version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.startswith("simec ")


def test_text_importance_writes_png_html_and_word_scores(bert_dir, tmp_path, capsys):
    out = tmp_path / "imp"
    argv = ["importance", "--model", str(bert_dir), "--input", "the cats sat", "--out", str(out)]
    assert main(argv) == 0
    for name in ("importance.json", "importance.png", "importance.html", "word_importance.json"):
        assert (out / name).is_file(), name
    tokens = json.loads((out / "importance.json").read_text())
    words = json.loads((out / "word_importance.json").read_text())
    assert words["words"] == ["the", "cats", "sat"]  # "cat ##s" joined, specials dropped
    pieces = dict(zip(tokens["segments"], tokens["scores"]))
    assert words["scores"][1] == max(pieces["cat"], pieces["##s"])
    assert "cat" in (out / "importance.html").read_text()
    assert "predicted" in capsys.readouterr().out


def test_masked_lm_importance_from_the_cli(tmp_path):
    from tests.conftest import make_tokenizer
    from tests.interpret.test_decode_text import tiny_mlm

    model_dir = tmp_path / "mlm"
    tiny_mlm().save_pretrained(model_dir)
    make_tokenizer(tmp_path).save_pretrained(model_dir)
    out = tmp_path / "imp"
    argv = ["importance", "--model", str(model_dir), "--input", "the cat sat on the [MASK] ."]
    assert main(argv + ["--out", str(out)]) == 0
    result = json.loads((out / "importance.json").read_text())
    assert "[MASK]" in result["segments"]
    assert (out / "importance.png").is_file()


def test_explore_interpretations_of_an_image(vit_dir, image, tmp_path, capsys):
    """--interpretations decodes the stored points and classifies the pictures: checked
    against an independent decoding of trajectory.safetensors and one-by-one classification."""
    import torch

    from simec.interpret import ViTDecoder
    from simec.interpret.walk_measures import InterpretationRecord
    from simec.models import load_adapter

    np.save(tmp_path / "digit.npy", image)
    out = tmp_path / "out"
    argv = ["explore", "--model", str(vit_dir), "--input", str(tmp_path / "digit.npy")]
    argv += ["--algorithm", "simexp", "--steps", "6", "--record-every", "2", "--seed", "1"]
    assert main([*argv, "--interpretations", "--out", str(out), "--quiet"]) == 0
    assert "interpretations: 4 stored points decoded" in capsys.readouterr().out
    rec = InterpretationRecord.load(out / "interpretations.json")
    summary = json.loads((out / "summary.json").read_text())
    assert rec.steps == [0, 2, 4, 6] and rec.iterations == 6
    # from embeddings: the model's outputs on the stored (projected, --projection end) points
    probs = np.array(summary["trajectory_probabilities"])
    np.testing.assert_allclose(rec.embedding_probabilities, probs, atol=1e-6)
    # from interpretations: decode each stored point, paste into the image, classify it alone
    adapter = load_adapter(str(vit_dir))
    decoder = ViTDecoder(adapter)
    points = load_file(str(out / "trajectory.safetensors"))["trajectory"]
    original = adapter.image(str(tmp_path / "digit.npy"))
    for k, point in enumerate(points):
        picture = decoder.to_image(
            point.to(adapter.dtype),
            original=original,
            explored_segments=summary["explored_segments"],
        )
        with torch.no_grad():
            p = torch.softmax(adapter.image_logits(picture[None]), -1)[0].double().numpy()
        np.testing.assert_allclose(rec.interpretation_probabilities[k], p, atol=1e-6)
    l1 = np.abs(np.array(rec.embedding_probabilities) - np.array(rec.interpretation_probabilities))
    np.testing.assert_allclose(rec.l1, l1.sum(1), atol=1e-9)


def test_explore_interpretations_of_a_text_give_the_text_back_at_step_0(bert_dir, tmp_path):
    from simec.interpret.walk_measures import InterpretationRecord

    out = tmp_path / "text"
    argv = ["explore", "--model", str(bert_dir), "--input", "the dog is good", "--steps", "4"]
    argv += ["--record-every", "2", "--interpretations", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    rec = InterpretationRecord.load(out / "interpretations.json")
    # the nearest real token of an unmodified embedding is the token itself: same prediction
    np.testing.assert_allclose(
        rec.interpretation_probabilities[0], rec.embedding_probabilities[0], atol=1e-5
    )
    assert rec.steps == [0, 2, 4] and len(rec.l1) == 3


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--text-decoder", "minilm-mlm-hatexplain"], "--text-decoder is for text models"),
        (["--data", "DATA"], "--interpretations is for one input"),
    ],
)
def test_explore_interpretations_refusals(
    vit_dir, image, idx_data, tmp_path, capsys, extra, message
):
    np.save(tmp_path / "digit.npy", image)
    source = ["--input", str(tmp_path / "digit.npy")]
    if extra[0] == "--data":
        source, extra = ["--data", str(idx_data)], []
    argv = ["explore", "--model", str(vit_dir), *source, "--steps", "2", "--interpretations"]
    assert main([*argv, *extra, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o" / "summary.json").exists()  # refused before any walk


def test_explore_interpretations_text_decoder_must_be_a_masked_lm(bert_dir, tmp_path, capsys):
    argv = ["explore", "--model", str(bert_dir), "--input", "the dog", "--steps", "2"]
    argv += ["--interpretations", "--text-decoder", str(bert_dir), "--out", str(tmp_path / "o")]
    assert main([*argv, "--quiet"]) == 2
    assert "is not a masked LM" in capsys.readouterr().err
    assert not (tmp_path / "o" / "summary.json").exists()
