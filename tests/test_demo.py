import json

import numpy as np

from simec.cli import main
from simec.demo import sample_digit, shipped_model


def test_demo_runs_end_to_end_on_the_shipped_model(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "12", "--quiet"]) == 0
    html = (out / "report.html").read_text()
    for png in (
        "input.png",
        "importance.png",
        "simec_decoded.png",
        "simexp_decoded.png",
        "simec-pixels_decoded.png",
        "probability.png",
    ):
        assert (out / png).stat().st_size > 1000
        assert png in html
    summary = json.loads((out / "simec" / "summary.json").read_text())
    assert summary["steps_completed"] == 12
    assert "report written to" in capsys.readouterr().out


def test_shipped_model_and_digit_are_usable():
    from simec import load_adapter

    adapter = load_adapter(shipped_model())
    digit = sample_digit()
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    prepared = adapter.prepare(digit)
    assert prepared.embeddings.shape == (197, 48)


def test_importance_command_writes_json_and_png(vit_dir, image, tmp_path):
    np.save(tmp_path / "img.npy", image)
    out = tmp_path / "imp"
    assert (
        main(
            [
                "importance",
                "--model",
                str(vit_dir),
                "--input",
                str(tmp_path / "img.npy"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads((out / "importance.json").read_text())
    assert len(data["scores"]) == len(data["segments"]) == 17
    assert (out / "importance.png").is_file()
