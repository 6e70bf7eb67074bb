"""`simec equivalence`: files, verdicts, the guided walks' closest approach, clear errors."""

import json

import numpy as np
import pytest
from PIL import Image

from simec.cli import main

FAST = ["--segments", "4", "--energy-iterations", "5", "--max-segments", "16"]


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
def equivalence(vit_dir, tmp_path):
    """Run `simec equivalence --model vit_dir A B --out tmp/NAME ...`; (exit code, summary)."""

    def run(name, a, b, *options):
        out = tmp_path / name
        code = main(["equivalence", "--model", str(vit_dir), a, b, "--out", str(out), *options])
        path = out / "summary.json"
        return code, (json.loads(path.read_text()) if path.is_file() else None)

    return run


def test_two_images_are_not_equivalent_and_files_are_written(equivalence, images, tmp_path, capsys):
    code, summary = equivalence("eq", *images, "--guided-steps", "4", "--dtype", "float64", *FAST)
    assert code == 0
    assert summary["verdict"] == "not equivalent" and summary["lower_bound"] > 1e-3
    assert summary["upper_bound"] >= summary["lower_bound"] * (1 - 1e-9)
    for walk in ("guided A->B", "guided B->A"):
        assert 0 < summary[walk]["closest_approach"] <= 1.0
    assert set(summary["candidates"]) == {"straight line", "guided A->B", "guided B->A"}
    for name in ("equivalence.png", "curve.safetensors", "viewer.html", "curve/summary.json"):
        assert (tmp_path / "eq" / name).is_file(), name
    printed = json.loads(capsys.readouterr().out)
    assert printed["verdict"] == "not equivalent"


def test_the_decoded_pictures_of_the_curve_carry_their_own_class(
    equivalence, images, vit_dir, tmp_path
):
    """summary.json names, for each decoded picture in equivalence.png, the class of its curve
    point and the class the model gives the picture: the latter equals an independent decoding
    and one-at-a-time classification."""
    import torch
    from safetensors.torch import load_file

    from simec import load_adapter
    from simec.interpret import ViTDecoder
    from tests.report.test_viewer import _one_at_a_time

    code, summary = equivalence("pics", *images, "--guided-steps", "2", *FAST)
    assert code == 0
    shown = summary["decoded_pictures"]
    assert len(shown) >= 2 and shown[0]["point"] == 0
    adapter = load_adapter(vit_dir)
    tensors = load_file(str(tmp_path / "pics" / "curve.safetensors"))
    points = [frame["point"] for frame in shown]
    pictures = ViTDecoder(adapter).decode_trajectory(tensors["curve"][points])
    classes, _ = _one_at_a_time(adapter, pictures)
    labels = list(adapter.labels)
    assert [frame["picture"] for frame in shown] == [labels[c] for c in classes]
    outputs = tensors["outputs"][points].argmax(-1).tolist()
    assert [frame["embedding"] for frame in shown] == [labels[c] for c in outputs]
    assert torch.isfinite(tensors["curve"]).all()


def test_an_image_and_itself_are_equivalent(equivalence, images):
    code, summary = equivalence("same", images[0], images[0], *FAST)
    assert code == 0
    assert summary["verdict"] == "equivalent" and summary["upper_bound"] == 0.0


def test_reference_pairs_and_bad_input(equivalence, images, capsys, idx_data):
    reference = ["--guided-steps", "0", "--reference", "2", "--data", str(idx_data)]
    code, summary = equivalence("ref", *images, *reference, *FAST)
    assert code == 0 and len(summary["reference"]["pairs"]) == 2
    assert 0 <= summary["reference"]["upper_bound_quantile_of_this_pair"] <= 1
    capsys.readouterr()
    assert equivalence("x", images[0], "nope.png")[0] == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the weight-loading bar
    assert last == "simec equivalence: error: 'nope.png' is not an image file"
    assert equivalence("y", *images, "--reference", "2")[0] == 2
    assert "--data" in capsys.readouterr().err
