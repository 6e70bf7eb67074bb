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
