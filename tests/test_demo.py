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
    assert 'href="viewer.html"' in html  # the viewer of the three walks, side by side
    from tests.report.test_viewer import _blocks

    (view,) = _blocks((out / "viewer.html").read_text())
    assert [r["name"] for r in view["runs"]] == ["simec", "simexp", "simec-pixels"]
    assert all(r["frames"]["kind"] == "image" for r in view["runs"])
    assert "report written to" in capsys.readouterr().out
    # the text describes the shipped model: 4 layers, MNIST, 197 tokens of 48, patch 2 x 2 x 1
    assert "A 4-layer ViT trained on MNIST (shipped with simec)" in html
    assert "197 x 48 input embeddings" in html and "4 of 48 dimensions per patch" in html


def test_demo_text_describes_the_model_it_runs(mnist_vit_dir, tmp_path):
    """--model elsewhere: no word of the shipped model's size or data in the report."""
    from simec.demo import run_demo

    out = tmp_path / "demo"
    run_demo(out, steps=2, model=mnist_vit_dir, frames=2, progress=False)
    html = (out / "report.html").read_text()
    config = json.loads((mnist_vit_dir / "config.json").read_text())
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    tokens = (28 // 7) ** 2 + 1
    assert f"A {layers}-layer ViT ({mnist_vit_dir}) looks at one MNIST digit" in html
    assert f"{tokens} x {hidden} input embeddings" in html
    assert f"{min(7 * 7, hidden)} of {hidden} dimensions per patch" in html
    assert "197 x 48" not in html and "trained on MNIST" not in html and "4 of 48" not in html


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


def test_shipped_mnist_model_reaches_its_recorded_validation_accuracy():
    import json
    from pathlib import Path

    import pytest
    import torch
    from transformers import ViTForImageClassification

    from simec.data import load_idx_dataset
    from simec.train.vit import to_pixels

    data_dir = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    if not data_dir.is_dir():
        pytest.skip(f"MNIST data not found at {data_dir} (the shared data folder)")
    model_dir = shipped_model()
    split = json.loads((model_dir / "split.json").read_text())
    data = load_idx_dataset(data_dir)
    val = np.array(split["validation_indices"])
    assert len(val) == 2000 and not set(val) & set(split["train_indices"])
    model = ViTForImageClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        pred = torch.cat(
            [
                model(pixel_values=to_pixels(data.images[val[i : i + 500]])).logits.argmax(-1)
                for i in range(0, len(val), 500)
            ]
        )
    accuracy = float((pred.numpy() == data.labels[val]).mean())
    assert accuracy >= 0.95
    assert f"{100 * accuracy:.2f}%" in (model_dir / "README.md").read_text()


def test_shipped_fashion_model_reaches_its_reported_test_accuracy():
    from pathlib import Path

    import pytest
    import torch
    from transformers import ViTForImageClassification

    from simec.data import load_idx_dataset
    from simec.train.vit import to_pixels

    data_dir = Path("/usr/share/datasets/fashion-mnist")
    if not data_dir.is_dir():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    model_dir = shipped_model("vit-fashion-mnist")
    data = load_idx_dataset(data_dir, split="test", kind="fashion-mnist")
    model = ViTForImageClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        pred = torch.cat(
            [
                model(pixel_values=to_pixels(data.images[i : i + 1000])).logits.argmax(-1)
                for i in range(0, len(data), 1000)
            ]
        )
    accuracy = float((pred.numpy() == data.labels).mean())
    assert f"{100 * accuracy:.2f}%" in (model_dir / "README.md").read_text()


def test_demo_shows_under_every_decoded_picture_the_class_the_model_gives_it(
    mnist_vit_dir, tmp_path, monkeypatch
):
    """demo.json and the figures' captions hold, for every decoded picture, the class of its
    explored point and the class of the picture itself; the latter equals an independent
    decoding and one-at-a-time classification of the picture."""
    from simec import load_adapter
    from simec.demo import run_demo
    from simec.explore import ExplorationResult
    from simec.interpret import ViTDecoder
    from simec.report import plots
    from tests.report.test_viewer import _one_at_a_time

    drawn = {}
    real = plots.plot_decoded_strip

    def spy(images, picture_labels, **options):
        fig, axes = real(images, picture_labels, **options)
        drawn[options["title"].split(":")[0]] = (
            [ax.get_title() for ax in axes],
            [ax.title.get_color() for ax in axes],
        )
        return fig, axes

    monkeypatch.setattr(plots, "plot_decoded_strip", spy)
    out = tmp_path / "demo"
    run_demo(out, steps=12, model=mnist_vit_dir, frames=3, progress=False)
    record = json.loads((out / "demo.json").read_text())["decoded_pictures"]
    assert "demo.json (decoded_pictures)" in (out / "report.html").read_text()
    assert set(record) == set(drawn) == {"simec", "simexp", "simec-pixels"}
    adapter = load_adapter(mnist_vit_dir)
    labels = adapter.labels
    original = adapter.image(sample_digit())
    for name, shown in record.items():
        result = ExplorationResult.load(out / name)
        walker = adapter.with_space("pixels") if name == "simec-pixels" else adapter
        pictures = ViTDecoder(walker).decode_trajectory(
            result.trajectory, original=original, explored_segments=result.explored_segments
        )
        classes, probs = _one_at_a_time(walker, pictures)
        assert shown["steps"] == result.trajectory_steps == [0, 4, 8, 12]
        assert shown["picture_class"] == classes
        np.testing.assert_allclose(shown["picture_probability"], probs, atol=1e-5)
        assert shown["embedding_class"] == result.trajectory_probabilities.argmax(1).tolist()
        titles, colours = drawn[name]
        for k, title, colour, emb, pic in zip(
            shown["steps"], titles, colours, shown["embedding_class"], classes
        ):
            assert title == f"k={k}\nembedding: {labels[emb]} · picture: {labels[pic]}"
            assert (colour == plots.DISAGREE_COLOUR) == (emb != pic)
