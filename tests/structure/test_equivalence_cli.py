"""`simec equivalence`: files, verdicts, the guided walks' closest approach, clear errors."""

import json

import numpy as np
import pytest
from PIL import Image

from simec.cli import main
from tests.conftest import write_idx


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for n in range(2):
        path = tmp_path / f"img{n}.png"
        Image.fromarray(rng.integers(20, 235, size=(8, 8), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def idx_digits(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "digits"
    root.mkdir()
    write_idx(root / "t10k-images-idx3-ubyte.gz", rng.integers(10, 245, size=(12, 8, 8)))
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.arange(12) % 3)
    return root


FAST = ["--segments", "4", "--energy-iterations", "5", "--max-segments", "16"]


def test_two_images_are_not_equivalent_and_files_are_written(vit_dir, images, tmp_path, capsys):
    out = tmp_path / "eq"
    code = main(
        [
            "equivalence",
            "--model",
            str(vit_dir),
            *images,
            "--out",
            str(out),
            "--guided-steps",
            "4",
            "--dtype",
            "float64",
            *FAST,
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "not equivalent" and summary["lower_bound"] > 1e-3
    assert summary["upper_bound"] >= summary["lower_bound"] * (1 - 1e-9)
    for walk in ("guided A->B", "guided B->A"):
        assert 0 < summary[walk]["closest_approach"] <= 1.0
    assert set(summary["candidates"]) == {"straight line", "guided A->B", "guided B->A"}
    for name in ("equivalence.png", "curve.safetensors", "viewer.html", "curve/summary.json"):
        assert (out / name).is_file(), name
    printed = json.loads(capsys.readouterr().out)
    assert printed["verdict"] == "not equivalent"


def test_an_image_and_itself_are_equivalent(vit_dir, images, tmp_path):
    out = tmp_path / "same"
    assert (
        main(
            ["equivalence", "--model", str(vit_dir), images[0], images[0], "--out", str(out), *FAST]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "equivalent" and summary["upper_bound"] == 0.0


def test_reference_pairs_and_bad_input(vit_dir, images, tmp_path, capsys, idx_digits):
    out = tmp_path / "ref"
    assert (
        main(
            [
                "equivalence",
                "--model",
                str(vit_dir),
                *images,
                "--out",
                str(out),
                "--guided-steps",
                "0",
                "--reference",
                "2",
                "--data",
                str(idx_digits),
                *FAST,
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["reference"]["pairs"]) == 2
    assert 0 <= summary["reference"]["upper_bound_quantile_of_this_pair"] <= 1
    capsys.readouterr()
    assert (
        main(
            [
                "equivalence",
                "--model",
                str(vit_dir),
                images[0],
                "nope.png",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the weight-loading bar
    assert last == "simec equivalence: error: 'nope.png' is not an image file"
    assert (
        main(
            [
                "equivalence",
                "--model",
                str(vit_dir),
                *images,
                "--out",
                str(tmp_path / "y"),
                "--reference",
                "2",
            ]
        )
        == 2
    )
    assert "--data" in capsys.readouterr().err
